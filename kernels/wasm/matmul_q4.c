/*
 * matmul with 4-bit weights (GGUF q4_0 repacked, or int4 groups of 128 quantized at load): per 32-block
 * 16 bytes, byte j holding element j (low nibble) and j + 16 (high nibble), value (nibble - 8) * scale.
 * Activations are int8 per 32-block (quantize_act, signed); the nibbles are the unsigned operand of the
 * int8 dot, and the activation bias (-2 * sum(q) per lane) removes the -8 offset. Each int32 block sum
 * becomes float once, times weight scale * activation scale.
 *
 * Tiles of WR weight rows x TR token rows reuse every load; each output's arithmetic is the same in every
 * tile, so results do not depend on tiling or thread count. Output columns are split over threads.
 */
#include "matmul.h"

INLINE void q4_tile(const OpRec* o, const uint8_t* act, int32_t j0, int32_t r0, const int WR, const int TR) {
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], nb = k / 32, bpg = (int32_t)o->a[8] / 32;
  const uint8_t* wq = (const uint8_t*)o->a[5];
  const float* wsc = (const float*)o->a[6];
  float* out = (float*)o->a[1];
  const uint8_t* w[4];
  const float* ws[4];
  ActRow a[4];
  v128_t acc[4][4];
  for (int jj = 0; jj < WR; jj++) {
    w[jj] = wq + (size_t)(j0 + jj) * (k / 2);
    ws[jj] = wsc + (size_t)(j0 + jj) * (k / (bpg * 32));
    for (int rr = 0; rr < TR; rr++) acc[jj][rr] = wasm_f32x4_splat(0);
  }
  for (int rr = 0; rr < TR; rr++) a[rr] = act_row(o, act, r0 + rr);
  const v128_t low = wasm_i8x16_splat(0x0f);
  int32_t g = 0, gc = 0;
  for (int32_t b = 0; b < nb; b++) {
    v128_t xl[4], xh[4], bias[4];
    float sx[4];
    for (int rr = 0; rr < TR; rr++) {
      xl[rr] = wasm_v128_load(a[rr].q + b * 32);
      xh[rr] = wasm_v128_load(a[rr].q + b * 32 + 16);
      bias[rr] = wasm_v128_load32_splat(a[rr].bias + b);
      sx[rr] = a[rr].scale[b];
    }
    for (int jj = 0; jj < WR; jj++) {
      v128_t wv = wasm_v128_load(w[jj] + b * 16);
      v128_t lo = wasm_v128_and(wv, low), hi = wasm_u8x16_shr(wv, 4);
      float s = ws[jj][g];
      for (int rr = 0; rr < TR; rr++) {
        v128_t isum = dot_i8_u7(xh[rr], hi, dot_i8_u7(xl[rr], lo, bias[rr]));
        acc[jj][rr] = madd(wasm_f32x4_convert_i32x4(isum), wasm_f32x4_splat(s * sx[rr]), acc[jj][rr]);
      }
    }
    if (++gc == bpg) {
      gc = 0;
      g++;
    }
  }
  for (int jj = 0; jj < WR; jj++) {
    for (int rr = 0; rr < TR; rr++) out[(size_t)(r0 + rr) * m + j0 + jj] = hsum(acc[jj][rr]);
  }
}

void matmul_q4(Ctx* c, const OpRec* o) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  const uint8_t* act = act_base(c, o);
  slice(c, m, 4, &lo, &hi);
  int32_t j = lo;
  for (; j + 4 <= hi; j += 4) {
    int32_t r = 0;
    for (; r + 2 <= rows; r += 2) q4_tile(o, act, j, r, 4, 2);
    for (; r < rows; r++) q4_tile(o, act, j, r, 4, 1);
  }
  for (; j < hi; j++) {
    for (int32_t r = 0; r < rows; r++) q4_tile(o, act, j, r, 1, 1);
  }
}
