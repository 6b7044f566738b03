/*
 * attention: causal grouped-query attention of each row's q over its sequence's cache rows 0..pos,
 * (row, head) pairs split over threads. Scores go to a per-thread scratch row; softmax with e^x from
 * exp4; the output accumulates p * v in the output row and is divided by the sum at the end. KV rows are
 * f32, f16 or int8 with per (row, kv head) scales (dequantized in registers: dot(q, k_q) * scale).
 * Where headDim allows, scores take four positions at a time (one q load, one 4-way reduction) and p * v
 * keeps 32 (or 16) output dims in registers across all positions.
 * Args: 0 q, 1 out, 2 nHeads, 3 nKvHeads, 4 headDim, 5 scale (f32 bits), 6 cache k, 7 cache v, 8 k scales,
 * 9 v scales, 10 format (KV_*), 11 blockSize, 12 scratch, 13 scratch floats per thread.
 */
#include "llama_ts_wasm.h"

/* Four cache values starting at element i of a row, as floats. */
INLINE v128_t load4(const uint8_t* row, int32_t fmt, int32_t i) {
  switch (fmt) {
    case KV_F16: return half4_to_float(wasm_u32x4_load16x4((const uint16_t*)row + i));
    case KV_I8: return wasm_f32x4_convert_i32x4(wasm_i32x4_extend_low_i16x8(wasm_i16x8_load8x8((const int8_t*)row + i)));
    default: return wasm_v128_load((const float*)row + i);
  }
}

INLINE float load1(const uint8_t* row, int32_t fmt, int32_t i) {
  switch (fmt) {
    case KV_F16: return half_to_float(((const uint16_t*)row)[i]);
    case KV_I8: return (float)((const int8_t*)row)[i];
    default: return ((const float*)row)[i];
  }
}

/* The kernel for one cache format (a constant, so each format gets its own loops without branches). */
INLINE void attend(Ctx* c, const OpRec* o, const int32_t fmt) {
  const float* q = (const float*)o->a[0];
  float* out = (float*)o->a[1];
  int32_t heads = (int32_t)o->a[2], kv_heads = (int32_t)o->a[3], hd = (int32_t)o->a[4];
  float scale = f32_of(o->a[5]);
  const uint8_t *ck = (const uint8_t*)o->a[6], *cv = (const uint8_t*)o->a[7];
  const float *ks = (const float*)o->a[8], *vs = (const float*)o->a[9];
  int32_t bs = (int32_t)o->a[11];
  float* scores = (float*)o->a[12] + (size_t)c->tid * o->a[13];
  int32_t esize = fmt == KV_F32 ? 4 : fmt == KV_F16 ? 2 : 1, kd = kv_heads * hd, group = heads / kv_heads;
  const Step* s = c->step;
  int32_t lo, hi;
  slice(c, s->n_tokens * heads, 1, &lo, &hi);
  for (int32_t t = lo; t < hi; t++) {
    int32_t r = t / heads, h = t % heads, kvh = h / group, seq = s->seq_index[r], pos = s->positions[r];
    const float* qv = q + (size_t)r * heads * hd + (size_t)h * hd;
    float* y = out + (size_t)r * heads * hd + (size_t)h * hd;
    size_t koff = (size_t)kvh * hd;
    /* positions walk the block table a block at a time: one lookup per block, not per position */
    const int32_t* bt = s->block_tables + (size_t)seq * s->max_blocks;
    int32_t n = pos + 1;
    float max = -__builtin_inff();
    v128_t vmax4 = wasm_f32x4_splat(-__builtin_inff());
    for (int32_t p0 = 0; p0 < n; p0 += bs) {
      int32_t row0 = bt[p0 / bs] * bs, cnt = n - p0 < bs ? n - p0 : bs, j = 0;
      /* four positions at a time (rows of one block are consecutive): q loaded once, one reduction */
      if ((hd & 3) == 0) {
        for (; j + 4 <= cnt; j += 4) {
          const uint8_t* kr = ck + ((size_t)(row0 + j) * kd + koff) * esize;
          size_t stride = (size_t)kd * esize;
          v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
          for (int32_t i = 0; i < hd; i += 4) {
            v128_t qq = wasm_v128_load(qv + i);
            a0 = madd(qq, load4(kr, fmt, i), a0);
            a1 = madd(qq, load4(kr + stride, fmt, i), a1);
            a2 = madd(qq, load4(kr + 2 * stride, fmt, i), a2);
            a3 = madd(qq, load4(kr + 3 * stride, fmt, i), a3);
          }
          v128_t d = reduce4f(a0, a1, a2, a3);
          if (fmt == KV_I8) {
            const float* sc = ks + (size_t)(row0 + j) * kv_heads + kvh;
            v128_t s4 = wasm_f32x4_make(sc[0], sc[kv_heads], sc[2 * kv_heads], sc[3 * kv_heads]);
            d = wasm_f32x4_mul(d, s4);
          }
          d = wasm_f32x4_mul(d, wasm_f32x4_splat(scale));
          wasm_v128_store(scores + p0 + j, d);
          vmax4 = wasm_f32x4_max(vmax4, d);
        }
      }
      for (; j < cnt; j++) {
        int32_t row = row0 + j;
        const uint8_t* kr = ck + ((size_t)row * kd + koff) * esize;
        v128_t acc0 = wasm_f32x4_splat(0), acc1 = wasm_f32x4_splat(0);
        int32_t i = 0;
        for (; i + 8 <= hd; i += 8) {
          acc0 = madd(wasm_v128_load(qv + i), load4(kr, fmt, i), acc0);
          acc1 = madd(wasm_v128_load(qv + i + 4), load4(kr, fmt, i + 4), acc1);
        }
        if (i + 4 <= hd) {
          acc0 = madd(wasm_v128_load(qv + i), load4(kr, fmt, i), acc0);
          i += 4;
        }
        float d = hsum(wasm_f32x4_add(acc0, acc1));
        for (; i < hd; i++) d += qv[i] * load1(kr, fmt, i);
        if (fmt == KV_I8) d *= ks[(size_t)row * kv_heads + kvh];
        d *= scale;
        scores[p0 + j] = d;
        max = d > max ? d : max;
      }
    }
    for (int32_t l = 0; l < 4; l++) {
      float m4 = l == 0 ? wasm_f32x4_extract_lane(vmax4, 0) : l == 1 ? wasm_f32x4_extract_lane(vmax4, 1)
               : l == 2 ? wasm_f32x4_extract_lane(vmax4, 2) : wasm_f32x4_extract_lane(vmax4, 3);
      max = m4 > max ? m4 : max;
    }
    int32_t p = 0;
    v128_t vsum = wasm_f32x4_splat(0), vmax = wasm_f32x4_splat(max);
    for (; p + 4 <= n; p += 4) {
      v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(scores + p), vmax));
      wasm_v128_store(scores + p, e);
      vsum = wasm_f32x4_add(vsum, e);
    }
    float sum = hsum(vsum);
    for (; p < n; p++) sum += scores[p] = expf_(scores[p] - max);
    if ((hd & 15) == 0) {
      /* 32 (or 16) output dims at a time held in registers over all positions: no y load/store per
       * position, and the v rows are read in at most hd / 32 passes */
      int32_t i = 0;
      for (; i + 32 <= hd; i += 32) {
        v128_t y0 = wasm_f32x4_splat(0), y1 = y0, y2 = y0, y3 = y0, y4 = y0, y5 = y0, y6 = y0, y7 = y0;
        for (int32_t p0 = 0; p0 < n; p0 += bs) {
          int32_t row0 = bt[p0 / bs] * bs, cnt = n - p0 < bs ? n - p0 : bs;
          for (int32_t j = 0; j < cnt; j++) {
            int32_t row = row0 + j;
            const uint8_t* vr = cv + ((size_t)row * kd + koff) * esize;
            float w = scores[p0 + j];
            if (fmt == KV_I8) w *= vs[(size_t)row * kv_heads + kvh];
            v128_t wv = wasm_f32x4_splat(w);
            y0 = madd(wv, load4(vr, fmt, i), y0);
            y1 = madd(wv, load4(vr, fmt, i + 4), y1);
            y2 = madd(wv, load4(vr, fmt, i + 8), y2);
            y3 = madd(wv, load4(vr, fmt, i + 12), y3);
            y4 = madd(wv, load4(vr, fmt, i + 16), y4);
            y5 = madd(wv, load4(vr, fmt, i + 20), y5);
            y6 = madd(wv, load4(vr, fmt, i + 24), y6);
            y7 = madd(wv, load4(vr, fmt, i + 28), y7);
          }
        }
        wasm_v128_store(y + i, y0);
        wasm_v128_store(y + i + 4, y1);
        wasm_v128_store(y + i + 8, y2);
        wasm_v128_store(y + i + 12, y3);
        wasm_v128_store(y + i + 16, y4);
        wasm_v128_store(y + i + 20, y5);
        wasm_v128_store(y + i + 24, y6);
        wasm_v128_store(y + i + 28, y7);
      }
      for (; i < hd; i += 16) {
        v128_t y0 = wasm_f32x4_splat(0), y1 = y0, y2 = y0, y3 = y0;
        for (int32_t p0 = 0; p0 < n; p0 += bs) {
          int32_t row0 = bt[p0 / bs] * bs, cnt = n - p0 < bs ? n - p0 : bs;
          for (int32_t j = 0; j < cnt; j++) {
            int32_t row = row0 + j;
            const uint8_t* vr = cv + ((size_t)row * kd + koff) * esize;
            float w = scores[p0 + j];
            if (fmt == KV_I8) w *= vs[(size_t)row * kv_heads + kvh];
            v128_t wv = wasm_f32x4_splat(w);
            y0 = madd(wv, load4(vr, fmt, i), y0);
            y1 = madd(wv, load4(vr, fmt, i + 4), y1);
            y2 = madd(wv, load4(vr, fmt, i + 8), y2);
            y3 = madd(wv, load4(vr, fmt, i + 12), y3);
          }
        }
        wasm_v128_store(y + i, y0);
        wasm_v128_store(y + i + 4, y1);
        wasm_v128_store(y + i + 8, y2);
        wasm_v128_store(y + i + 12, y3);
      }
    } else {
      for (int32_t i = 0; i < hd; i++) y[i] = 0;
      for (int32_t p0 = 0; p0 < n; p0 += bs) {
        int32_t row0 = bt[p0 / bs] * bs, cnt = n - p0 < bs ? n - p0 : bs;
        for (int32_t j = 0; j < cnt; j++) {
          int32_t row = row0 + j;
          const uint8_t* vr = cv + ((size_t)row * kd + koff) * esize;
          float w = scores[p0 + j];
          if (fmt == KV_I8) w *= vs[(size_t)row * kv_heads + kvh];
          v128_t wv = wasm_f32x4_splat(w);
          int32_t i = 0;
          for (; i + 4 <= hd; i += 4) wasm_v128_store(y + i, madd(wv, load4(vr, fmt, i), wasm_v128_load(y + i)));
          for (; i < hd; i++) y[i] += w * load1(vr, fmt, i);
        }
      }
    }
    float inv = 1.0f / sum;
    for (int32_t i = 0; i < hd; i++) y[i] *= inv;
  }
}

void op_attention(Ctx* c, const OpRec* o) {
  switch (o->a[10]) {
    case KV_F16: attend(c, o, KV_F16); break;
    case KV_I8: attend(c, o, KV_I8); break;
    default: attend(c, o, KV_F32);
  }
}
