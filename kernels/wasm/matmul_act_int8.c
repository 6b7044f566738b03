/*
 * matmul with per-token int8 activations (SmoothQuant W8A8, `actQuant: "int8"`, README "What
 * wasm/webgpu/cuda must implement"). Each live row r of x is quantized once per thread with the int8 KV
 * cache's rule, every step in f32 like ref: sx = amax / 127, inv = sx > 0 ? 1 / sx : 0,
 * q = clamp(round half away from zero(x * inv), -127, 127). Then out(r, j) = sx * sum_b d(j, b) * dot_b,
 * the 32-element integer dot exact in int32, the block sum in f32.
 *
 * q8 weights (q8x4): x rows are kept as int16 (k values, then one f32 scale per row after all rows); the
 * weight bytes are sign-extended by the load (v128.load8x8_s) and multiplied with i32x4.dot_i16x8_s, so
 * both operands are full int8 (the relaxed 7-bit dot of the weight-only kernel does not apply). Per block
 * the four weight rows' int32 dots are reduced into one vector (lane = row), converted and scaled by the
 * four block scales; the row scale multiplies once at the end.
 * q4 weights (q4x4): the weight-only q4 kernel already multiplies signed int8 activations (-127..127) with
 * the unsigned nibbles exactly, so x is written in its activation blocks (matmul.h Q4_ACT_BLOCK) with
 * the row's scale in every block's scale slot, and matmul_q4 runs unchanged.
 *
 * Tiles: 4 weight rows x TR (4, 2, 1) token rows; every output's arithmetic is the same in every tile and
 * thread split, so results do not depend on row or thread counts.
 */
#include "matmul.h"

/* int16 activations of row r and the row scales (after all rows). */
INLINE const int16_t* a8_row(const OpRec* o, const uint8_t* base, int32_t r) {
  return (const int16_t*)base + (size_t)r * o->a[2];
}
INLINE const float* a8_scales(const OpRec* o, const uint8_t* base) {
  return (const float*)(base + (size_t)o->a[11] * o->a[2] * 2);
}

/* Four f32 lanes of x * inv rounded half away from zero and clamped to +-127, as i32. */
INLINE v128_t quant4(v128_t x, v128_t inv) {
  v128_t v = wasm_f32x4_mul(x, inv), t = wasm_f32x4_trunc(v), f = wasm_f32x4_sub(v, t);
  v128_t up = wasm_f32x4_ge(f, wasm_f32x4_splat(0.5f)), down = wasm_f32x4_le(f, wasm_f32x4_splat(-0.5f));
  /* masks are -1 where true */
  v128_t q = wasm_i32x4_add(wasm_i32x4_sub(wasm_i32x4_trunc_sat_f32x4(t), up), down);
  return wasm_i32x4_max(wasm_i32x4_min(q, wasm_i32x4_splat(127)), wasm_i32x4_splat(-127));
}

/* Quantize the live rows of x per row; q4: into Q4_ACT_BLOCK blocks, else int16 rows + scales. */
void quantize_act_rows(Ctx* c, const OpRec* o, int32_t q4) {
  const float* x = (const float*)o->a[0];
  int32_t k = (int32_t)o->a[2], nb = k / 32, rows = live_rows(o, c->step);
  uint8_t* base = (uint8_t*)act_base(c, o);
  float* scales = (float*)a8_scales(o, base);
  for (int32_t r = 0; r < rows; r++) {
    const float* xr = x + (size_t)r * k;
    v128_t m = wasm_f32x4_splat(0);
    for (int32_t i = 0; i < k; i += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(xr + i)));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
    float amax = wasm_f32x4_extract_lane(m, 0);
    float s = amax / 127.0f, inv = s > 0 ? 1.0f / s : 0.0f;
    v128_t vinv = wasm_f32x4_splat(inv);
    for (int32_t b = 0; b < nb; b++) {
      const float* xb = xr + b * 32;
      v128_t sum = wasm_i32x4_splat(0);
      for (int32_t i = 0; i < 32; i += 16) {
        v128_t q0 = quant4(wasm_v128_load(xb + i), vinv), q1 = quant4(wasm_v128_load(xb + i + 4), vinv);
        v128_t q2 = quant4(wasm_v128_load(xb + i + 8), vinv), q3 = quant4(wasm_v128_load(xb + i + 12), vinv);
        v128_t h0 = wasm_i16x8_narrow_i32x4(q0, q1), h1 = wasm_i16x8_narrow_i32x4(q2, q3);
        if (q4) {
          sum = wasm_i32x4_add(sum, wasm_i32x4_add(wasm_i32x4_add(q0, q1), wasm_i32x4_add(q2, q3)));
          v128_t q16 = wasm_i8x16_narrow_i16x8(h0, h1);
          uint8_t* blk = base + ((size_t)r * nb + b) * Q4_ACT_BLOCK + i * 4;
          wasm_v128_store(blk, wasm_i32x4_shuffle(q16, q16, 0, 0, 0, 0));
          wasm_v128_store(blk + 16, wasm_i32x4_shuffle(q16, q16, 1, 1, 1, 1));
          wasm_v128_store(blk + 32, wasm_i32x4_shuffle(q16, q16, 2, 2, 2, 2));
          wasm_v128_store(blk + 48, wasm_i32x4_shuffle(q16, q16, 3, 3, 3, 3));
        } else {
          int16_t* d = (int16_t*)base + (size_t)r * k + b * 32 + i;
          wasm_v128_store(d, h0);
          wasm_v128_store(d + 8, h1);
        }
      }
      if (q4) {
        uint8_t* blk = base + ((size_t)r * nb + b) * Q4_ACT_BLOCK;
        int32_t sq = wasm_i32x4_extract_lane(sum, 0) + wasm_i32x4_extract_lane(sum, 1) +
                     wasm_i32x4_extract_lane(sum, 2) + wasm_i32x4_extract_lane(sum, 3);
        *(float*)(blk + 128) = s;
        *(int32_t*)(blk + 132) = -8 * sq;
      }
    }
    if (!q4) scales[r] = s;
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

INLINE void a8_tile(const OpRec* o, const uint8_t* act, int32_t g, int32_t r0, const int TR) {
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], nb = k / 32;
  const uint8_t* w = (const uint8_t*)o->a[5] + (size_t)g * nb * Q8_BLOCK;
  float* out = (float*)o->a[1];
  const int16_t* x[4];
  v128_t acc[4];
  for (int rr = 0; rr < TR; rr++) {
    x[rr] = a8_row(o, act, r0 + rr);
    acc[rr] = wasm_f32x4_splat(0);
  }
  for (int32_t b = 0; b < nb; b++, w += Q8_BLOCK) {
    v128_t sc = wasm_v128_load(w);
    for (int rr = 0; rr < TR; rr++) {
      const int16_t* q = x[rr] + b * 32;
      v128_t a0 = wasm_v128_load(q), a1 = wasm_v128_load(q + 8);
      v128_t a2 = wasm_v128_load(q + 16), a3 = wasm_v128_load(q + 24);
      v128_t r = reduce4(dot32(w + 32, a0, a1, a2, a3), dot32(w + 64, a0, a1, a2, a3),
                         dot32(w + 96, a0, a1, a2, a3), dot32(w + 128, a0, a1, a2, a3));
      acc[rr] = madd(wasm_f32x4_convert_i32x4(r), sc, acc[rr]);
    }
  }
  const float* sx = a8_scales(o, act);
  int32_t n = m - g * 4 < 4 ? m - g * 4 : 4;
  for (int rr = 0; rr < TR; rr++) {
    store_lanes(out + (size_t)(r0 + rr) * m + g * 4, wasm_f32x4_mul(acc[rr], wasm_f32x4_splat(sx[r0 + rr])), n);
  }
}

void matmul_act_int8_q8(Ctx* c, const OpRec* o) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  const uint8_t* act = act_base(c, o);
  slice(c, m, 4, &lo, &hi);
  for (int32_t g = lo / 4; g * 4 < hi; g++) {
    int32_t r = 0;
    for (; r + 4 <= rows; r += 4) a8_tile(o, act, g, r, 4);
    for (; r + 2 <= rows; r += 2) a8_tile(o, act, g, r, 2);
    for (; r < rows; r++) a8_tile(o, act, g, r, 1);
  }
}
