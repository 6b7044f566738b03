/*
 * matmul with int8 weights (GGUF q8_0 repacked, or int8 per output channel quantized at load), in the
 * q8x4 layout (llama_ts_wasm.h): a group of 4 rows is one linear stream of 160-byte blocks.
 * Activations are 7-bit, offset to 1..127 (quantize_act, offset) so they can be the unsigned operand of
 * the int8 dot; each row's block bias (-64 * sum(q)) removes the offset. Per block the four rows' int32
 * sums are reduced into one vector (lane = row), biased, converted once and scaled by the four weight
 * scales times the activation scale: the accumulator's lanes are the four outputs.
 *
 * Tiles: 4 weight rows x TR (4, 2, 1) token rows. Every output's arithmetic is the same in every tile, so results
 * do not depend on tiling or thread count. Groups of 4 output columns are split over threads.
 */
#include "matmul.h"

INLINE void q8_tile(const OpRec* o, const uint8_t* act, int32_t g, int32_t r0, const int TR) {
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], nb = k / 32;
  const uint8_t* w = (const uint8_t*)o->a[5] + (size_t)g * nb * Q8_BLOCK;
  float* out = (float*)o->a[1];
  ActRow a[4];
  v128_t acc[4];
  for (int rr = 0; rr < TR; rr++) {
    a[rr] = act_row(o, act, r0 + rr);
    acc[rr] = wasm_f32x4_splat(0);
  }
  for (int32_t b = 0; b < nb; b++, w += Q8_BLOCK) {
    v128_t sc = wasm_v128_load(w), bias = wasm_v128_load(w + 16);
    v128_t w0l = wasm_v128_load(w + 32), w0h = wasm_v128_load(w + 48);
    v128_t w1l = wasm_v128_load(w + 64), w1h = wasm_v128_load(w + 80);
    v128_t w2l = wasm_v128_load(w + 96), w2h = wasm_v128_load(w + 112);
    v128_t w3l = wasm_v128_load(w + 128), w3h = wasm_v128_load(w + 144);
    for (int rr = 0; rr < TR; rr++) {
      v128_t xl = wasm_v128_load(a[rr].q + b * 32), xh = wasm_v128_load(a[rr].q + b * 32 + 16);
      v128_t z = wasm_i32x4_splat(0);
      v128_t i0 = dot_i8_u7(w0h, xh, dot_i8_u7(w0l, xl, z));
      v128_t i1 = dot_i8_u7(w1h, xh, dot_i8_u7(w1l, xl, z));
      v128_t i2 = dot_i8_u7(w2h, xh, dot_i8_u7(w2l, xl, z));
      v128_t i3 = dot_i8_u7(w3h, xh, dot_i8_u7(w3l, xl, z));
      v128_t r = wasm_i32x4_add(reduce4(i0, i1, i2, i3), bias);
      acc[rr] = madd(wasm_f32x4_convert_i32x4(r), wasm_f32x4_mul(sc, wasm_f32x4_splat(a[rr].scale[b])), acc[rr]);
    }
  }
  int32_t n = m - g * 4 < 4 ? m - g * 4 : 4;
  for (int rr = 0; rr < TR; rr++) store_lanes(out + (size_t)(r0 + rr) * m + g * 4, acc[rr], n);
}

void matmul_q8(Ctx* c, const OpRec* o) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  const uint8_t* act = act_base(c, o);
  slice(c, m, 4, &lo, &hi);
  for (int32_t g = lo / 4; g * 4 < hi; g++) {
    int32_t r = 0;
    for (; r + 4 <= rows; r += 4) q8_tile(o, act, g, r, 4);
    for (; r + 2 <= rows; r += 2) q8_tile(o, act, g, r, 2);
    for (; r < rows; r++) q8_tile(o, act, g, r, 1);
  }
}
