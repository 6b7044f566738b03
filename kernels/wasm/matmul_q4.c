/*
 * matmul with 4-bit weights (GGUF q4_0 repacked, or int4 groups of 128 quantized at load), in the
 * q4x4 layout (llama_ts_wasm.h): a group of 4 rows is one linear stream of 80-byte blocks, each 16-byte
 * nibble vector holding a chunk of 4 elements of each of the four rows (low nibbles) and the chunk 16
 * elements later (high nibbles). Activations are int8 per 32-block (quantize_act, signed), stored with
 * each chunk of 4 already splat to 16 bytes (matmul.h Q4_ACT_BLOCK), so a chunk is the signed operand of
 * the int8 pair dot against the four rows' nibbles (the unsigned one) and i16 lanes 2r, 2r + 1 are row
 * r's part: no per-block horizontal reduction. The eight chunk products add in i16 (a pair sum is at most
 * 2 * 15 * 127 = 3810, eight of them 30480 < 32767) and widen once (lane = row); the activation bias
 * (-8 * sum(q)) removes the -8 offset, and the int32 sums are converted once and scaled by the four
 * weight scales times the activation scale: the accumulator's lanes are the four outputs.
 *
 * Tiles: 4 weight rows x TR (4, 2) token rows, and single rows (decode) two blocks per iteration (q4_row;
 * 4 per iteration makes V8 spill and runs 2x slower). Every output's arithmetic is the same in every tile
 * and in q4_row, so results do not depend on tiling or thread count. Groups of 4 output columns are
 * split over threads.
 */
#include "matmul.h"

INLINE void q4_tile(const OpRec* o, const uint8_t* act, int32_t g, int32_t r0, const int TR) {
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], nb = k / 32;
  const uint8_t* w = (const uint8_t*)o->a[5] + (size_t)g * nb * Q4_BLOCK;
  float* out = (float*)o->a[1];
  const uint8_t* x[4];
  v128_t acc[4];
  for (int rr = 0; rr < TR; rr++) {
    x[rr] = q4_act_row(o, act, r0 + rr);
    acc[rr] = wasm_f32x4_splat(0);
  }
  /* high nibbles: a 16-bit shift then the mask (x86 has no byte shift) */
  const v128_t low = wasm_i8x16_splat(0x0f);
  for (int32_t b = 0; b < nb; b++, w += Q4_BLOCK) {
    v128_t sc = wasm_v128_load(w);
    v128_t p0 = wasm_v128_load(w + 16), p1 = wasm_v128_load(w + 32);
    v128_t p2 = wasm_v128_load(w + 48), p3 = wasm_v128_load(w + 64);
    v128_t w0l = wasm_v128_and(p0, low), w0h = wasm_v128_and(wasm_u16x8_shr(p0, 4), low);
    v128_t w1l = wasm_v128_and(p1, low), w1h = wasm_v128_and(wasm_u16x8_shr(p1, 4), low);
    v128_t w2l = wasm_v128_and(p2, low), w2h = wasm_v128_and(wasm_u16x8_shr(p2, 4), low);
    v128_t w3l = wasm_v128_and(p3, low), w3h = wasm_v128_and(wasm_u16x8_shr(p3, 4), low);
    for (int rr = 0; rr < TR; rr++) {
      const uint8_t* q = x[rr];
#define CHUNK(c, w) dot16_i8_u7(wasm_v128_load(q + 16 * (c)), (w))
      v128_t sl = wasm_i16x8_add(wasm_i16x8_add(CHUNK(0, w0l), CHUNK(1, w1l)),
                                 wasm_i16x8_add(CHUNK(2, w2l), CHUNK(3, w3l)));
      v128_t sh = wasm_i16x8_add(wasm_i16x8_add(CHUNK(4, w0h), CHUNK(5, w1h)),
                                 wasm_i16x8_add(CHUNK(6, w2h), CHUNK(7, w3h)));
#undef CHUNK
      v128_t r = wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(sl, sh)),
                                wasm_v128_load32_splat(q + 132));
      acc[rr] = madd(wasm_f32x4_convert_i32x4(r), wasm_f32x4_mul(sc, wasm_v128_load32_splat(q + 128)), acc[rr]);
      x[rr] = q + Q4_ACT_BLOCK;
    }
  }
  int32_t n = m - g * 4 < 4 ? m - g * 4 : 4;
  for (int rr = 0; rr < TR; rr++) store_lanes(out + (size_t)(r0 + rr) * m + g * 4, acc[rr], n);
}

/* One 32-block of one token row against 4 weight rows: int32 sums (bias included), lane = weight row. */
INLINE v128_t q4_block(const uint8_t* w, const uint8_t* q) {
  const v128_t low = wasm_i8x16_splat(0x0f);
  v128_t p0 = wasm_v128_load(w + 16), p1 = wasm_v128_load(w + 32);
  v128_t p2 = wasm_v128_load(w + 48), p3 = wasm_v128_load(w + 64);
#define CHUNK(c, v) dot16_i8_u7(wasm_v128_load(q + 16 * (c)), (v))
  v128_t sl = wasm_i16x8_add(wasm_i16x8_add(CHUNK(0, wasm_v128_and(p0, low)), CHUNK(1, wasm_v128_and(p1, low))),
                             wasm_i16x8_add(CHUNK(2, wasm_v128_and(p2, low)), CHUNK(3, wasm_v128_and(p3, low))));
  v128_t sh = wasm_i16x8_add(
      wasm_i16x8_add(CHUNK(4, wasm_v128_and(wasm_u16x8_shr(p0, 4), low)), CHUNK(5, wasm_v128_and(wasm_u16x8_shr(p1, 4), low))),
      wasm_i16x8_add(CHUNK(6, wasm_v128_and(wasm_u16x8_shr(p2, 4), low)), CHUNK(7, wasm_v128_and(wasm_u16x8_shr(p3, 4), low))));
#undef CHUNK
  return wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(wasm_i16x8_add(sl, sh)), wasm_v128_load32_splat(q + 132));
}

/* Decode (one token row): two blocks per iteration, the same arithmetic in the same order as q4_tile. */
static void q4_row(const OpRec* o, const uint8_t* act, int32_t g, int32_t r) {
  int32_t k = (int32_t)o->a[2], m = (int32_t)o->a[3], nb = k / 32, b = 0;
  const uint8_t* w = (const uint8_t*)o->a[5] + (size_t)g * nb * Q4_BLOCK;
  const uint8_t* q = q4_act_row(o, act, r);
  v128_t acc = wasm_f32x4_splat(0);
  for (; b + 2 <= nb; b += 2, w += 2 * Q4_BLOCK, q += 2 * Q4_ACT_BLOCK) {
    v128_t r0 = q4_block(w, q), r1 = q4_block(w + Q4_BLOCK, q + Q4_ACT_BLOCK);
    acc = madd(wasm_f32x4_convert_i32x4(r0), wasm_f32x4_mul(wasm_v128_load(w), wasm_v128_load32_splat(q + 128)), acc);
    acc = madd(wasm_f32x4_convert_i32x4(r1),
               wasm_f32x4_mul(wasm_v128_load(w + Q4_BLOCK), wasm_v128_load32_splat(q + Q4_ACT_BLOCK + 128)), acc);
  }
  if (b < nb) {
    v128_t r0 = q4_block(w, q);
    acc = madd(wasm_f32x4_convert_i32x4(r0), wasm_f32x4_mul(wasm_v128_load(w), wasm_v128_load32_splat(q + 128)), acc);
  }
  int32_t n = m - g * 4 < 4 ? m - g * 4 : 4;
  store_lanes((float*)o->a[1] + (size_t)r * m + g * 4, acc, n);
}

void matmul_q4(Ctx* c, const OpRec* o) {
  int32_t m = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  const uint8_t* act = act_base(c, o);
  slice(c, m, 4, &lo, &hi);
  for (int32_t g = lo / 4; g * 4 < hi; g++) {
    int32_t r = 0;
    for (; r + 4 <= rows; r += 4) q4_tile(o, act, g, r, 4);
    for (; r + 2 <= rows; r += 2) q4_tile(o, act, g, r, 2);
    for (; r < rows; r++) q4_row(o, act, g, r);
  }
}
