/*
 * matmul with float weights: f32, f16 (converted in registers) or bf16 (a shift), in the interleaved
 * float layout (llama_ts_wasm.h): a group of 4 rows is one linear stream of chunks, each holding 4
 * elements of each row. Four f32 lane accumulators per row, one per row of the group; at the end the
 * four rows' lanes are reduced into one vector whose lanes are the four outputs. k % 4 tail elements sit
 * in a zero-padded last chunk, multiplied by x values loaded one at a time (so nothing past x's row is
 * read). Tiles of 4 weight rows x TR (2, 1) token rows; each output's arithmetic is the same in every
 * tile, so results do not depend on tiling or thread count.
 */
#include "matmul.h"

INLINE v128_t wload4(const uint8_t* w, int32_t fmt) {
  switch (fmt) {
    case WF_F16: return half4_to_float(wasm_u32x4_load16x4(w));
    case WF_BF16: return wasm_i32x4_shl(wasm_u32x4_load16x4(w), 16);
    default: return wasm_v128_load(w);
  }
}

INLINE void float_tile(const OpRec* o, int32_t fmt, int32_t g, int32_t r0, const int TR) {
  const float* x = (const float*)o->a[0];
  float* out = (float*)o->a[1];
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], es = fmt == WF_F32 ? 4 : 2, nc = (k + 3) / 4;
  const uint8_t* w = (const uint8_t*)o->a[5] + (size_t)g * nc * 16 * es;
  const float* xr[2];
  v128_t acc[2][4];
  for (int rr = 0; rr < TR; rr++) {
    xr[rr] = x + (size_t)(r0 + rr) * k;
    for (int l = 0; l < 4; l++) acc[rr][l] = wasm_f32x4_splat(0);
  }
  int32_t c = 0;
  for (; c < k / 4; c++, w += 16 * es) {
    v128_t w0 = wload4(w, fmt), w1 = wload4(w + 4 * es, fmt), w2 = wload4(w + 8 * es, fmt),
           w3 = wload4(w + 12 * es, fmt);
    for (int rr = 0; rr < TR; rr++) {
      v128_t xv = wasm_v128_load(xr[rr] + 4 * c);
      acc[rr][0] = madd(w0, xv, acc[rr][0]);
      acc[rr][1] = madd(w1, xv, acc[rr][1]);
      acc[rr][2] = madd(w2, xv, acc[rr][2]);
      acc[rr][3] = madd(w3, xv, acc[rr][3]);
    }
  }
  if (c < nc) {
    v128_t w0 = wload4(w, fmt), w1 = wload4(w + 4 * es, fmt), w2 = wload4(w + 8 * es, fmt),
           w3 = wload4(w + 12 * es, fmt);
    for (int rr = 0; rr < TR; rr++) {
      float t[4] = {0, 0, 0, 0};
      for (int32_t i = 4 * c; i < k; i++) t[i - 4 * c] = xr[rr][i];
      v128_t xv = wasm_v128_load(t);
      acc[rr][0] = madd(w0, xv, acc[rr][0]);
      acc[rr][1] = madd(w1, xv, acc[rr][1]);
      acc[rr][2] = madd(w2, xv, acc[rr][2]);
      acc[rr][3] = madd(w3, xv, acc[rr][3]);
    }
  }
  int32_t n = m - g * 4 < 4 ? m - g * 4 : 4;
  for (int rr = 0; rr < TR; rr++) {
    store_lanes(out + (size_t)(r0 + rr) * m + g * 4, reduce4f(acc[rr][0], acc[rr][1], acc[rr][2], acc[rr][3]), n);
  }
}

INLINE void float_all(Ctx* c, const OpRec* o, const int32_t fmt) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  slice(c, m, 4, &lo, &hi);
  for (int32_t g = lo / 4; g * 4 < hi; g++) {
    int32_t r = 0;
    for (; r + 2 <= rows; r += 2) float_tile(o, fmt, g, r, 2);
    for (; r < rows; r++) float_tile(o, fmt, g, r, 1);
  }
}

void matmul_float(Ctx* c, const OpRec* o) {
  switch (o->a[4]) {
    case WF_F16: float_all(c, o, WF_F16); break;
    case WF_BF16: float_all(c, o, WF_BF16); break;
    default: float_all(c, o, WF_F32);
  }
}
