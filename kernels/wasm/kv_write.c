/*
 * kv_write: store each row's k and v in its sequence's cache row (block table lookup), as f32, f16
 * (round to nearest even) or int8 with one f32 scale per (row, kv head): scale = max|x| / 127,
 * q = round half away from zero of x * (1 / scale), every step in f32 like the ref backend, so the bytes
 * match.
 * Rows split over threads.
 * Args: 0 k, 1 v, 2 width (kvDim), 3 cache k, 4 cache v, 5 k scales, 6 v scales, 7 format (KV_*),
 * 8 blockSize, 9 nKvHeads.
 */
#include "llama_ts_wasm.h"

/* Round half away from zero (C roundf) without libm: truncf is exact, so is v - truncf(v). */
static float round_away(float v) {
  float t = __builtin_truncf(v), f = v - t;
  return f >= 0.5f ? t + 1 : f <= -0.5f ? t - 1 : t;
}

static void store_row(const float* src, uint8_t* cache, float* scales, int32_t fmt, int32_t row, int32_t n,
                      int32_t heads) {
  switch (fmt) {
    case KV_F32: {
      float* d = (float*)cache + (size_t)row * n;
      for (int32_t i = 0; i < n; i++) d[i] = src[i];
      break;
    }
    case KV_F16: {
      uint16_t* d = (uint16_t*)cache + (size_t)row * n;
      for (int32_t i = 0; i < n; i++) d[i] = float_to_half(src[i]);
      break;
    }
    case KV_I8: {
      int32_t hd = n / heads;
      int8_t* d = (int8_t*)cache + (size_t)row * n;
      for (int32_t h = 0; h < heads; h++) {
        const float* x = src + h * hd;
        float amax = 0;
        for (int32_t i = 0; i < hd; i++) {
          float a = __builtin_fabsf(x[i]);
          amax = a > amax ? a : amax;
        }
        float scale = amax / 127.0f, inv = scale > 0 ? 1.0f / scale : 0.0f;
        for (int32_t i = 0; i < hd; i++) {
          float r = round_away(x[i] * inv);
          d[h * hd + i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        }
        scales[(size_t)row * heads + h] = scale;
      }
      break;
    }
  }
}

void op_kv_write(Ctx* c, const OpRec* o) {
  const float *k = (const float*)o->a[0], *v = (const float*)o->a[1];
  int32_t n = (int32_t)o->a[2], fmt = (int32_t)o->a[7], bs = (int32_t)o->a[8], heads = (int32_t)o->a[9];
  int32_t lo, hi;
  slice(c, c->step->n_tokens, 1, &lo, &hi);
  for (int32_t r = lo; r < hi; r++) {
    int32_t row = cache_row(c->step, c->step->seq_index[r], c->step->positions[r], bs);
    store_row(k + (size_t)r * n, (uint8_t*)o->a[3], (float*)o->a[5], fmt, row, n, heads);
    store_row(v + (size_t)r * n, (uint8_t*)o->a[4], (float*)o->a[6], fmt, row, n, heads);
  }
}
