/*
 * matmul with int8 weights (GGUF q8_0 repacked, or int8 per output channel quantized at load), in the
 * q8x4 layout (llama_ts_wasm.h): a group of 4 rows is one linear stream of 144-byte blocks. Activations
 * are int8 (-127..127, quantize_act_q8) stored widened to int16, with an f32 scale per 32-block (weight-only
 * models, as llama.cpp's q8_0 activations) or per row (SmoothQuant W8A8). The weight bytes are
 * sign-extended by the load (v128.load8x8_s) and multiplied with i32x4.dot_i16x8_s: both operands are full
 * int8 and the 32-element dot is exact in int32. Per block the four weight rows' dots are reduced into one
 * vector (lane = row), converted and scaled by the four weight scales (times the block's activation scale;
 * a row scale multiplies once at the end): out = sx * sum_b d_b * dot_b for W8A8, as the README specifies.
 *
 * Tiles: 4 weight rows x TR (4, 2, 1) token rows. Every output's arithmetic is the same in every tile, so
 * results do not depend on tiling or thread count. Groups of 4 output columns are split over threads.
 */
#include "matmul.h"

void quantize_act_q8(Ctx* c, const OpRec* o, int32_t per_row) {
  const float* x = (const float*)o->a[0];
  int32_t k = (int32_t)o->a[2], nb = k / 32, rows = live_rows(o, c->step);
  uint8_t* base = (uint8_t*)act_base(c, o);
  float* scales = (float*)q8_act_scales(o, base);
  for (int32_t r = 0; r < rows; r++) {
    const float* xr = x + (size_t)r * k;
    float s = 0, inv = 0;
    for (int32_t b = 0; b < nb; b++) {
      const float* xb = xr + b * 32;
      if (!per_row || b == 0) {
        s = amax_of(per_row ? xr : xb, per_row ? k : 32) / 127.0f;
        inv = s > 0 ? 1.0f / s : 0.0f;
        scales[per_row ? r : r * nb + b] = s;
      }
      v128_t vinv = wasm_f32x4_splat(inv);
      int16_t* d = (int16_t*)base + (size_t)r * k + b * 32;
      for (int32_t i = 0; i < 32; i += 8) {
        v128_t q0 = quant4(wasm_v128_load(xb + i), vinv), q1 = quant4(wasm_v128_load(xb + i + 4), vinv);
        wasm_v128_store(d + i, wasm_i16x8_narrow_i32x4(q0, q1));
      }
    }
  }
}

/* Row l's 32 weights of a q8x4 block dotted with 32 int16 activations (four lanes of partial sums). */
INLINE v128_t dot32(const uint8_t* w, v128_t a0, v128_t a1, v128_t a2, v128_t a3) {
  v128_t s0 = wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w), a0);
  v128_t s1 = wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w + 8), a1);
  v128_t s2 = wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w + 16), a2);
  v128_t s3 = wasm_i32x4_dot_i16x8(wasm_i16x8_load8x8(w + 24), a3);
  return wasm_i32x4_add(wasm_i32x4_add(s0, s1), wasm_i32x4_add(s2, s3));
}

/* PR: per-row activation scale (W8A8) instead of per block. */
INLINE void q8_tile(const OpRec* o, const uint8_t* act, int32_t g, int32_t r0, const int TR, const int PR) {
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], nb = k / 32;
  const uint8_t* w = (const uint8_t*)o->a[5] + (size_t)g * nb * Q8_BLOCK;
  const float* sx = q8_act_scales(o, act);
  float* out = (float*)o->a[1];
  const int16_t* x[4];
  v128_t acc[4];
  for (int rr = 0; rr < TR; rr++) {
    x[rr] = q8_act_row(o, act, r0 + rr);
    acc[rr] = wasm_f32x4_splat(0);
  }
  for (int32_t b = 0; b < nb; b++, w += Q8_BLOCK) {
    v128_t sc = wasm_v128_load(w);
    for (int rr = 0; rr < TR; rr++) {
      const int16_t* q = x[rr] + b * 32;
      v128_t a0 = wasm_v128_load(q), a1 = wasm_v128_load(q + 8);
      v128_t a2 = wasm_v128_load(q + 16), a3 = wasm_v128_load(q + 24);
      v128_t r = reduce4(dot32(w + 16, a0, a1, a2, a3), dot32(w + 48, a0, a1, a2, a3),
                         dot32(w + 80, a0, a1, a2, a3), dot32(w + 112, a0, a1, a2, a3));
      v128_t s = PR ? sc : wasm_f32x4_mul(sc, wasm_v128_load32_splat(sx + (size_t)(r0 + rr) * nb + b));
      acc[rr] = madd(wasm_f32x4_convert_i32x4(r), s, acc[rr]);
    }
  }
  int32_t n = m - g * 4 < 4 ? m - g * 4 : 4;
  for (int rr = 0; rr < TR; rr++) {
    v128_t y = PR ? wasm_f32x4_mul(acc[rr], wasm_f32x4_splat(sx[r0 + rr])) : acc[rr];
    store_lanes(out + (size_t)(r0 + rr) * m + g * 4, y, n);
  }
}

INLINE void q8_all(Ctx* c, const OpRec* o, const int PR) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  const uint8_t* act = act_base(c, o);
  slice(c, m, 4, &lo, &hi);
  for (int32_t g = lo / 4; g * 4 < hi; g++) {
    int32_t r = 0;
    for (; r + 4 <= rows; r += 4) q8_tile(o, act, g, r, 4, PR);
    for (; r + 2 <= rows; r += 2) q8_tile(o, act, g, r, 2, PR);
    for (; r < rows; r++) q8_tile(o, act, g, r, 1, PR);
  }
}

void matmul_q8(Ctx* c, const OpRec* o, int32_t per_row) {
  if (per_row) q8_all(c, o, 1);
  else q8_all(c, o, 0);
}
