/*
 * rope: rotate each head's pairs in place by pos * invFreq. The host fills a per-step table of
 * (cos, sin) in double per (row, pair), computed with the same formula as the ref backend, and the
 * rotation is done in double, so results match ref exactly. Rows split over threads (like kv_write, which
 * reads them next).
 * Args: 0 x, 1 width, 2 nHeads, 3 headDim, 4 style (0 interleaved, 1 half), 5 table (f64, row-major
 * (rows, headDim/2, 2)).
 */
#include "llama_ts_wasm.h"

void op_rope(Ctx* c, const OpRec* o) {
  float* x = (float*)o->a[0];
  int32_t width = (int32_t)o->a[1], heads = (int32_t)o->a[2], hd = (int32_t)o->a[3], half_style = (int32_t)o->a[4];
  const double* table = (const double*)o->a[5];
  int32_t half = hd / 2, lo, hi;
  slice(c, c->step->n_tokens, 1, &lo, &hi);
  for (int32_t t = lo * heads; t < hi * heads; t++) {
    int32_t r = t / heads, h = t % heads;
    float* base = x + (size_t)r * width + (size_t)h * hd;
    const double* cs = table + (size_t)r * hd;
    for (int32_t j = 0; j < half; j++) {
      int32_t i0 = half_style ? j : 2 * j, i1 = half_style ? j + half : 2 * j + 1;
      double v0 = base[i0], v1 = base[i1], co = cs[2 * j], si = cs[2 * j + 1];
      base[i0] = (float)(v0 * co - v1 * si);
      base[i1] = (float)(v0 * si + v1 * co);
    }
  }
}
