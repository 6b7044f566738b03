/*
 * matmul: out(r, j) = sum_i x(r, i) * w(j, i). Dispatches on the weight format; quantized formats first
 * quantize the activations into the thread's own buffer (unless the previous matmul already did for the
 * same x), then every thread takes a slice of the output columns. Activation quantization is int8 per
 * 32-block (as llama.cpp's q8_0 activations) or, for W8A8 models (arg 13), int8 per row.
 */
#include "matmul.h"

void quantize_act_q4(Ctx* c, const OpRec* o, int32_t per_row) {
  const float* x = (const float*)o->a[0];
  int32_t k = (int32_t)o->a[2], nb = k / 32;
  uint8_t* base = (uint8_t*)act_base(c, o);
  float s = 0, inv = 0;
  for (int32_t t = 0; t < live_rows(o, c->step) * nb; t++) {
    const float* xb = x + (size_t)t * 32; /* rows are k wide, so block t of the flattened rows */
    if (!per_row || t % nb == 0) {
      float amax = amax_of(xb, per_row ? k : 32);
      s = amax / 127.0f;
      inv = s > 0 ? 1.0f / s : 0.0f;
    }
    v128_t vinv = wasm_f32x4_splat(inv), sum = wasm_i32x4_splat(0);
    for (int32_t i = 0; i < 32; i += 16) {
      v128_t a, b, cc, d;
      if (per_row) {
        a = quant4(wasm_v128_load(xb + i), vinv), b = quant4(wasm_v128_load(xb + i + 4), vinv);
        cc = quant4(wasm_v128_load(xb + i + 8), vinv), d = quant4(wasm_v128_load(xb + i + 12), vinv);
      } else {
        a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i), vinv)));
        b = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 4), vinv)));
        cc = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 8), vinv)));
        d = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 12), vinv)));
      }
      sum = wasm_i32x4_add(sum, wasm_i32x4_add(wasm_i32x4_add(a, b), wasm_i32x4_add(cc, d)));
      v128_t q16 = wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(a, b), wasm_i16x8_narrow_i32x4(cc, d));
      uint8_t* blk = base + (size_t)t * Q4_ACT_BLOCK + i * 4;
      wasm_v128_store(blk, wasm_i32x4_shuffle(q16, q16, 0, 0, 0, 0));
      wasm_v128_store(blk + 16, wasm_i32x4_shuffle(q16, q16, 1, 1, 1, 1));
      wasm_v128_store(blk + 32, wasm_i32x4_shuffle(q16, q16, 2, 2, 2, 2));
      wasm_v128_store(blk + 48, wasm_i32x4_shuffle(q16, q16, 3, 3, 3, 3));
    }
    int32_t sq = wasm_i32x4_extract_lane(sum, 0) + wasm_i32x4_extract_lane(sum, 1) +
                 wasm_i32x4_extract_lane(sum, 2) + wasm_i32x4_extract_lane(sum, 3);
    *(float*)(base + (size_t)t * Q4_ACT_BLOCK + 128) = s;
    *(int32_t*)(base + (size_t)t * Q4_ACT_BLOCK + 132) = -8 * sq;
  }
}

void op_matmul(Ctx* c, const OpRec* o) {
  int32_t per_row = (int32_t)o->a[13]; /* W8A8 (program.ts admits q8/q4 weights only) */
  switch (o->a[4]) {
    case WF_Q8:
      if (!o->a[10]) quantize_act_q8(c, o, per_row);
      matmul_q8(c, o, per_row);
      break;
    case WF_Q4:
      if (!o->a[10]) quantize_act_q4(c, o, per_row);
      matmul_q4(c, o);
      break;
    default: matmul_float(c, o);
  }
}
