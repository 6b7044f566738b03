/*
 * matmul: out(r, j) = sum_i x(r, i) * w(j, i). Dispatches on the weight format; quantized formats first
 * quantize the activations into the thread's own buffer (unless the previous matmul already did for the
 * same x), then every thread takes a slice of the output columns.
 */
#include "matmul.h"

void quantize_act(Ctx* c, const OpRec* o, int32_t offset) {
  const float* x = (const float*)o->a[0];
  int32_t k = (int32_t)o->a[2], nb = k / 32;
  uint8_t* base = (uint8_t*)act_base(c, o);
  int32_t rows = (int32_t)o->a[11];
  float* scales = (float*)(base + (size_t)rows * k);
  float qmax = offset ? 63.0f : 127.0f;
  for (int32_t t = 0; t < live_rows(o, c->step) * nb; t++) {
    const float* xb = x + (size_t)t * 32; /* rows are k wide, so block t of the flattened rows */
    v128_t m = wasm_f32x4_splat(0);
    for (int32_t i = 0; i < 32; i += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(xb + i)));
    float amax = wasm_f32x4_extract_lane(m, 0);
    for (int32_t l = 1; l < 4; l++) {
      float v = l == 1 ? wasm_f32x4_extract_lane(m, 1) : l == 2 ? wasm_f32x4_extract_lane(m, 2) : wasm_f32x4_extract_lane(m, 3);
      amax = v > amax ? v : amax;
    }
    float s = amax / qmax, inv = s > 0 ? 1.0f / s : 0.0f;
    v128_t vinv = wasm_f32x4_splat(inv), sum = wasm_i32x4_splat(0);
    int8_t* q = (int8_t*)base + (size_t)t * 32;
    for (int32_t i = 0; i < 32; i += 16) {
      v128_t a = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i), vinv)));
      v128_t b = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 4), vinv)));
      v128_t cc = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 8), vinv)));
      v128_t d = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xb + i + 12), vinv)));
      sum = wasm_i32x4_add(sum, wasm_i32x4_add(wasm_i32x4_add(a, b), wasm_i32x4_add(cc, d)));
      v128_t q16 = wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(a, b), wasm_i16x8_narrow_i32x4(cc, d));
      if (offset) {
        wasm_v128_store(q + i, wasm_i8x16_add(q16, wasm_i8x16_splat(64)));
      } else {
        uint8_t* blk = base + (size_t)t * Q4_ACT_BLOCK + i * 4;
        wasm_v128_store(blk, wasm_i32x4_shuffle(q16, q16, 0, 0, 0, 0));
        wasm_v128_store(blk + 16, wasm_i32x4_shuffle(q16, q16, 1, 1, 1, 1));
        wasm_v128_store(blk + 32, wasm_i32x4_shuffle(q16, q16, 2, 2, 2, 2));
        wasm_v128_store(blk + 48, wasm_i32x4_shuffle(q16, q16, 3, 3, 3, 3));
      }
    }
    int32_t sq = wasm_i32x4_extract_lane(sum, 0) + wasm_i32x4_extract_lane(sum, 1) +
                 wasm_i32x4_extract_lane(sum, 2) + wasm_i32x4_extract_lane(sum, 3);
    if (offset) {
      scales[t] = s;
    } else {
      *(float*)(base + (size_t)t * Q4_ACT_BLOCK + 128) = s;
      *(int32_t*)(base + (size_t)t * Q4_ACT_BLOCK + 132) = -8 * sq;
    }
  }
}

void op_matmul(Ctx* c, const OpRec* o) {
  if (o->a[13]) { /* W8A8: int8 per row (program.ts admits q8/q4 weights only) */
    int32_t q4 = o->a[4] == WF_Q4;
    if (!o->a[10]) quantize_act_rows(c, o, q4);
    if (q4) matmul_q4(c, o);
    else matmul_act_int8_q8(c, o);
    return;
  }
  switch (o->a[4]) {
    case WF_Q8:
      if (!o->a[10]) quantize_act(c, o, 1);
      matmul_q8(c, o);
      break;
    case WF_Q4:
      if (!o->a[10]) quantize_act(c, o, 0);
      matmul_q4(c, o);
      break;
    default: matmul_float(c, o);
  }
}
