/*
 * matmul shared parts: argument indices, the quantized-activation buffer, the tiling helpers.
 * Args: 0 x (f32, rows x k), 1 out (f32, rows x m), 2 k, 3 m, 4 weight format (WF_*), 5 weight data,
 * 6-8 unused, 9 activation buffers, 10 reuse (1: the buffer already
 * holds x in this format), 11 activation buffer rows, 12 activation buffer bytes per thread,
 * 13 activation quantization (0: per 32-block, weight-only kernels; 1: int8 per row, W8A8,
 * matmul_act_int8.c).
 *
 * Every thread quantizes the whole x into its own buffer (k values per row, cheap next to the m x k
 * products), so no barrier separates quantization from the products.
 */
#pragma once
#include "llama_ts_wasm.h"

/* Offset-quantized activations of one row (q8 kernel): k bytes, then (in a separate array) per 32-block scales. */
typedef struct {
  const uint8_t* q;
  const float* scale;
} ActRow;

/* This thread's activation buffer. */
INLINE const uint8_t* act_base(const Ctx* c, const OpRec* o) {
  return (const uint8_t*)o->a[9] + (size_t)c->tid * o->a[12];
}

INLINE ActRow act_row(const OpRec* o, const uint8_t* base, int32_t r) {
  int32_t k = (int32_t)o->a[2], rows = (int32_t)o->a[11], nb = k / 32;
  ActRow a = {base + (size_t)r * k, (const float*)(base + (size_t)rows * k) + (size_t)r * nb};
  return a;
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

/*
 * Quantize the live rows of x per 32-block, into ActRow layout (offset) or q4 blocks (signed). Signed (for
 * q4 weights, whose nibbles are the unsigned operand): q = round(x / s) in -127..127, s = max|x| / 127,
 * bias = -8 * sum(q) (the nibble offset). Offset (for q8 weights, the signed operand): q = round(x / s) + 64
 * in 1..127, s = max|x| / 63; the weights carry the matching bias.
 */
void quantize_act(Ctx* c, const OpRec* o, int32_t offset);

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
void matmul_q8(Ctx* c, const OpRec* o);
void matmul_q4(Ctx* c, const OpRec* o);
void quantize_act_rows(Ctx* c, const OpRec* o, int32_t q4);
void matmul_act_int8_q8(Ctx* c, const OpRec* o);
