/*
 * embed: out[r] = dequant(table[tokens[r]]), computed by every thread (dup). Token ids are checked by the
 * host before the run. Dequantization matches src/dtype.ts bit for bit (scale * q in float).
 * Args: 0 table quants, 1 table scales, 2 format (WF_*), 3 scale group, 4 dim, 5 out.
 */
#include "llama_ts_wasm.h"

void op_embed(Ctx* c, const OpRec* o) {
  const uint8_t* q = (const uint8_t*)o->a[0];
  const float* scales = (const float*)o->a[1];
  int32_t fmt = (int32_t)o->a[2], group = (int32_t)o->a[3], dim = (int32_t)o->a[4];
  float* out = (float*)o->a[5];
  /* dup: every thread gathers every row (one row in decode), so readers need no barrier */
  for (int32_t r = 0; r < c->step->n_tokens; r++) {
    int32_t id = c->step->tokens[r];
    float* y = out + (size_t)r * dim;
    size_t base = (size_t)id * dim;
    switch (fmt) {
      case WF_F32:
        for (int32_t i = 0; i < dim; i++) y[i] = ((const float*)q)[base + i];
        break;
      case WF_F16:
        for (int32_t i = 0; i < dim; i++) y[i] = half_to_float(((const uint16_t*)q)[base + i]);
        break;
      case WF_BF16:
        for (int32_t i = 0; i < dim; i++) y[i] = f32_of((uint32_t)((const uint16_t*)q)[base + i] << 16);
        break;
      case WF_Q8:
        for (int32_t i = 0; i < dim; i++) y[i] = scales[(base + i) / group] * (float)((const int8_t*)q)[base + i];
        break;
      case WF_Q4:
        /* blocks of 32: byte j holds element j (low nibble) and j + 16 (high nibble) */
        for (int32_t i = 0; i < dim; i++) {
          size_t e = base + i, blk = e / 32, j = e % 32;
          uint8_t b = q[blk * 16 + (j & 15)];
          int32_t v = (j < 16 ? (b & 15) : (b >> 4)) - 8;
          y[i] = scales[e / group] * (float)v;
        }
        break;
    }
  }
}
