/*
 * The elementwise ops. add (out = a + b) and silu_mul (out = gate / (1 + e^-gate) * up) split columns
 * over threads exactly like matmul (slice(width, 4) in every row), so following a matmul they need no
 * barrier. gather_rows (out[i] = x[logitRows[i]]) runs on every thread (dup).
 * Args add/silu_mul: 0 a|gate, 1 b|up, 2 out, 3 width. gather: 0 x, 1 out, 2 width.
 */
#include "llama_ts_wasm.h"

void op_add(Ctx* c, const OpRec* o) {
  const float *a = (const float*)o->a[0], *b = (const float*)o->a[1];
  float* out = (float*)o->a[2];
  int32_t n = (int32_t)o->a[3], rows = live_rows(o, c->step), lo, hi;
  slice(c, n, 4, &lo, &hi);
  for (int32_t r = 0; r < rows; r++) {
    size_t base = (size_t)r * n;
    int32_t i = lo;
    for (; i + 4 <= hi; i += 4) {
      wasm_v128_store(out + base + i, wasm_f32x4_add(wasm_v128_load(a + base + i), wasm_v128_load(b + base + i)));
    }
    for (; i < hi; i++) out[base + i] = a[base + i] + b[base + i];
  }
}

void op_silu_mul(Ctx* c, const OpRec* o) {
  const float *g = (const float*)o->a[0], *u = (const float*)o->a[1];
  float* out = (float*)o->a[2];
  int32_t n = (int32_t)o->a[3], lo, hi;
  slice(c, n, 4, &lo, &hi);
  v128_t one = wasm_f32x4_splat(1.0f);
  for (int32_t r = 0; r < c->step->n_tokens; r++) {
    size_t base = (size_t)r * n;
    int32_t i = lo;
    for (; i + 4 <= hi; i += 4) {
      v128_t gv = wasm_v128_load(g + base + i);
      v128_t s = wasm_f32x4_div(gv, wasm_f32x4_add(one, exp4(wasm_f32x4_neg(gv))));
      wasm_v128_store(out + base + i, wasm_f32x4_mul(s, wasm_v128_load(u + base + i)));
    }
    for (; i < hi; i++) out[base + i] = g[base + i] / (1.0f + expf_(-g[base + i])) * u[base + i];
  }
}

void op_gather(Ctx* c, const OpRec* o) {
  const float* x = (const float*)o->a[0];
  float* out = (float*)o->a[1];
  int32_t n = (int32_t)o->a[2];
  for (int32_t i = 0; i < c->step->n_logits; i++) {
    const float* src = x + (size_t)c->step->logit_rows[i] * n;
    for (int32_t j = 0; j < n; j++) out[(size_t)i * n + j] = src[j];
  }
}
