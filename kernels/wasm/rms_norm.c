/*
 * rms_norm: out = x / sqrt(mean(x^2) + eps) * weight per row, computed by every thread (dup): it is
 * tiny, and the matmuls that read it then need no barrier.
 * Args: 0 x, 1 weight (f32), 2 out, 3 n (width), 4 eps (f32 bits).
 */
#include "llama_ts_wasm.h"

void op_rms_norm(Ctx* c, const OpRec* o) {
  const float* x = (const float*)o->a[0];
  const float* w = (const float*)o->a[1];
  float* out = (float*)o->a[2];
  int32_t n = (int32_t)o->a[3], rows = live_rows(o, c->step);
  float eps = f32_of(o->a[4]);
  (void)c;
  for (int32_t r = 0; r < rows; r++) {
    const float* xr = x + (size_t)r * n;
    float* yr = out + (size_t)r * n;
    v128_t acc = wasm_f32x4_splat(0);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
      v128_t v = wasm_v128_load(xr + i);
      acc = madd(v, v, acc);
    }
    float ss = hsum(acc);
    for (; i < n; i++) ss += xr[i] * xr[i];
    float inv = 1.0f / __builtin_sqrtf(ss / (float)n + eps);
    v128_t vi = wasm_f32x4_splat(inv);
    for (i = 0; i + 4 <= n; i += 4) {
      wasm_v128_store(yr + i, wasm_f32x4_mul(wasm_v128_load(w + i), wasm_f32x4_mul(vi, wasm_v128_load(xr + i))));
    }
    for (; i < n; i++) yr[i] = w[i] * (inv * xr[i]);
  }
}
