/*
 * argmax: out[r] (i32) = index of the largest value of x's row r, over the step's logit rows; ties go to
 * the lowest index and a row holding NaN gives -1 (like the ref backend). Every thread computes it (dup):
 * one pass over the logits, cheaper than a barrier.
 * Args: 0 x (f32, rows x n), 1 out (i32), 2 n.
 */
#include "llama_ts_wasm.h"

void op_argmax(Ctx* c, const OpRec* o) {
  const float* x = (const float*)o->a[0];
  int32_t* out = (int32_t*)o->a[1];
  int32_t n = (int32_t)o->a[2];
  for (int32_t r = 0; r < c->step->n_logits; r++) {
    const float* row = x + (size_t)r * n;
    /* lane-wise maxima with their first indices, then the lowest index among lanes holding the max */
    v128_t best = wasm_f32x4_splat(-__builtin_inff()), idx = wasm_i32x4_splat(0x7fffffff);
    v128_t at = wasm_i32x4_make(0, 1, 2, 3), nan = wasm_i32x4_splat(0);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
      v128_t v = wasm_v128_load(row + i);
      nan = wasm_v128_or(nan, wasm_f32x4_ne(v, v));
      v128_t gt = wasm_f32x4_gt(v, best);
      best = wasm_v128_bitselect(v, best, gt);
      idx = wasm_v128_bitselect(at, idx, gt);
      at = wasm_i32x4_add(at, wasm_i32x4_splat(4));
    }
    float bv = -__builtin_inff();
    int32_t bi = 0x7fffffff, has_nan = wasm_v128_any_true(nan);
    float bl[4];
    int32_t il[4];
    wasm_v128_store(bl, best);
    wasm_v128_store(il, idx);
    for (int32_t l = 0; l < 4; l++) {
      if (il[l] != 0x7fffffff && (bl[l] > bv || (bl[l] == bv && il[l] < bi))) {
        bv = bl[l];
        bi = il[l];
      }
    }
    for (; i < n; i++) {
      if (row[i] != row[i]) has_nan = 1;
      if (row[i] > bv) {
        bv = row[i];
        bi = i;
      }
    }
    /* all -inf: index 0, as the ref backend's scan gives */
    out[r] = has_nan ? -1 : bi == 0x7fffffff ? 0 : bi;
  }
}
