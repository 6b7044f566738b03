/*
 * matmul shared parts: argument indices, the quantized-activation buffer, the tiling helpers.
 * Args: 0 x (f32, rows x k), 1 out (f32, rows x m), 2 k, 3 m, 4 weight format (WF_*), 5 weight data,
 * 6-8 unused, 9 activation buffers, 10 reuse (1: the buffer already
 * holds x in this format), 11 activation buffer rows, 12 activation buffer bytes per thread,
 * 13 activation quantization (0: int8 per 32-block, as llama.cpp's q8_0 activations; 1: int8 per row,
 * SmoothQuant W8A8 `actQuant: "int8"`, README "What wasm/webgpu/cuda must implement").
 *
 * Every thread quantizes the whole x into its own buffer (k values per row, cheap next to the m x k
 * products), so no barrier separates quantization from the products.
 */
#pragma once
#include "llama_ts_wasm.h"

/* This thread's activation buffer. */
INLINE const uint8_t* act_base(const Ctx* c, const OpRec* o) {
  return (const uint8_t*)o->a[9] + (size_t)c->tid * o->a[12];
}

/*
 * The q8 kernel's activations: each row as k int16 values (int8 codes, widened once so the kernel's
 * dot is one i32x4.dot_i16x8_s per 8 weights), then the f32 scales: per 32-block (rows x k/32) or per row.
 */
INLINE const int16_t* q8_act_row(const OpRec* o, const uint8_t* base, int32_t r) {
  return (const int16_t*)base + (size_t)r * o->a[2];
}
INLINE const float* q8_act_scales(const OpRec* o, const uint8_t* base) {
  return (const float*)(base + (size_t)o->a[11] * o->a[2] * 2);
}

/*
 * The q4 kernel's activation blocks (signed quantization): per row and 32-block, Q4_ACT_BLOCK bytes = the
 * 8 chunks of 4 int8 values each splat to 16 bytes (elements 4c..4c+3 at 16c), f32 scale at 128, i32 bias
 * at 132, so one pointer walks a row and the kernel needs no shuffles.
 */
#define Q4_ACT_BLOCK 144

INLINE const uint8_t* q4_act_row(const OpRec* o, const uint8_t* base, int32_t r) {
  return base + (size_t)r * (o->a[2] / 32) * Q4_ACT_BLOCK;
}

/* Four f32 lanes of x * inv rounded half away from zero (C roundf) and clamped to +-127, as i32. */
INLINE v128_t quant4(v128_t x, v128_t inv) {
  v128_t v = wasm_f32x4_mul(x, inv), t = wasm_f32x4_trunc(v), f = wasm_f32x4_sub(v, t);
  v128_t up = wasm_f32x4_ge(f, wasm_f32x4_splat(0.5f)), down = wasm_f32x4_le(f, wasm_f32x4_splat(-0.5f));
  /* masks are -1 where true */
  v128_t q = wasm_i32x4_add(wasm_i32x4_sub(wasm_i32x4_trunc_sat_f32x4(t), up), down);
  return wasm_i32x4_max(wasm_i32x4_min(q, wasm_i32x4_splat(127)), wasm_i32x4_splat(-127));
}

/* max |x_i| over n floats (n a multiple of 4). */
INLINE float amax_of(const float* x, int32_t n) {
  v128_t m = wasm_f32x4_splat(0);
  for (int32_t i = 0; i < n; i += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + i)));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
  m = wasm_f32x4_max(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2));
  return wasm_f32x4_extract_lane(m, 0);
}

/*
 * Quantize the live rows of x into q4 activation blocks: q in -127..127, bias = -8 * sum(q) (the nibble
 * offset). per_row 0: s = max|block| / 127 and round to nearest even; per_row 1 (W8A8): s = max|row| / 127
 * in every block's scale slot, rounding half away from zero (quant4), every step in f32 like ref.
 */
void quantize_act_q4(Ctx* c, const OpRec* o, int32_t per_row);
/* Quantize the live rows of x into q8 activations: s = max|block or row| / 127, quant4. */
void quantize_act_q8(Ctx* c, const OpRec* o, int32_t per_row);

/* Store the first `n` (<= 4) lanes of v at y. */
INLINE void store_lanes(float* y, v128_t v, int32_t n) {
  if (n == 4) {
    wasm_v128_store(y, v);
    return;
  }
  float t[4];
  wasm_v128_store(t, v);
  for (int32_t i = 0; i < n; i++) y[i] = t[i];
}

void matmul_float(Ctx* c, const OpRec* o);
void matmul_q8(Ctx* c, const OpRec* o, int32_t per_row);
void matmul_q4(Ctx* c, const OpRec* o);
