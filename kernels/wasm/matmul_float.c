/*
 * matmul with float weights: f32, f16 (converted in registers) or bf16 (a shift). f32 accumulation in
 * four lanes over k, the k % 4 tail added after the lane sum. Tiles of 4 weight rows x 2 token rows;
 * each output's arithmetic is the same in every tile, so results do not depend on tiling or thread count.
 */
#include "matmul.h"

INLINE v128_t wload4(const uint8_t* w, int32_t fmt, int32_t i) {
  switch (fmt) {
    case WF_F16: return half4_to_float(wasm_u32x4_load16x4((const uint16_t*)w + i));
    case WF_BF16: return wasm_i32x4_shl(wasm_u32x4_load16x4((const uint16_t*)w + i), 16);
    default: return wasm_v128_load((const float*)w + i);
  }
}

INLINE float wload1(const uint8_t* w, int32_t fmt, int32_t i) {
  switch (fmt) {
    case WF_F16: return half_to_float(((const uint16_t*)w)[i]);
    case WF_BF16: return f32_of((uint32_t)((const uint16_t*)w)[i] << 16);
    default: return ((const float*)w)[i];
  }
}

INLINE void float_tile(const OpRec* o, int32_t fmt, int32_t j0, int32_t r0, const int WR, const int TR) {
  const float* x = (const float*)o->a[0];
  float* out = (float*)o->a[1];
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], esize = fmt == WF_F32 ? 4 : 2;
  const uint8_t* w[4];
  const float* xr[4];
  v128_t acc[4][4];
  for (int jj = 0; jj < WR; jj++) {
    w[jj] = (const uint8_t*)o->a[5] + (size_t)(j0 + jj) * k * esize;
    for (int rr = 0; rr < TR; rr++) acc[jj][rr] = wasm_f32x4_splat(0);
  }
  for (int rr = 0; rr < TR; rr++) xr[rr] = x + (size_t)(r0 + rr) * k;
  int32_t i = 0;
  for (; i + 4 <= k; i += 4) {
    v128_t xv[4];
    for (int rr = 0; rr < TR; rr++) xv[rr] = wasm_v128_load(xr[rr] + i);
    for (int jj = 0; jj < WR; jj++) {
      v128_t wv = wload4(w[jj], fmt, i);
      for (int rr = 0; rr < TR; rr++) acc[jj][rr] = madd(wv, xv[rr], acc[jj][rr]);
    }
  }
  for (int jj = 0; jj < WR; jj++) {
    for (int rr = 0; rr < TR; rr++) {
      float s = hsum(acc[jj][rr]);
      for (int32_t t = i; t < k; t++) s += wload1(w[jj], fmt, t) * xr[rr][t];
      out[(size_t)(r0 + rr) * m + j0 + jj] = s;
    }
  }
}

INLINE void float_all(Ctx* c, const OpRec* o, const int32_t fmt) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  slice(c, m, 4, &lo, &hi);
  int32_t j = lo;
  for (; j + 4 <= hi; j += 4) {
    int32_t r = 0;
    for (; r + 2 <= rows; r += 2) float_tile(o, fmt, j, r, 4, 2);
    for (; r < rows; r++) float_tile(o, fmt, j, r, 4, 1);
  }
  for (; j < hi; j++) {
    for (int32_t r = 0; r < rows; r++) float_tile(o, fmt, j, r, 1, 1);
  }
}

void matmul_float(Ctx* c, const OpRec* o) {
  switch (o->a[4]) {
    case WF_F16: float_all(c, o, WF_F16); break;
    case WF_BF16: float_all(c, o, WF_BF16); break;
    default: float_all(c, o, WF_F32);
  }
}
