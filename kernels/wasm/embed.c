/*
 * embed: out[r] = dequant(table[tokens[r]]), computed by every thread (dup). Token ids are checked by the
 * host before the run. Dequantization matches src/dtype.ts bit for bit (scale * q in float).
 * Args: 0 table data, 1 unused, 2 format (WF_*), 3 unused, 4 dim, 5 out.
 */
#include "llama_ts_wasm.h"

void op_embed(Ctx* c, const OpRec* o) {
  const uint8_t* q = (const uint8_t*)o->a[0];
  int32_t fmt = (int32_t)o->a[2], dim = (int32_t)o->a[4], nb = dim / 32;
  float* out = (float*)o->a[5];
  /* dup: every thread gathers every row (one row in decode), so readers need no barrier */
  for (int32_t r = 0; r < c->step->n_tokens; r++) {
    int32_t id = c->step->tokens[r];
    float* y = out + (size_t)r * dim;
    /* float layouts: element (id, i) of groups of 4 rows x chunks of 4 */
    size_t fbase = (size_t)(id / 4) * ((dim + 3) / 4) * 16 + (id % 4) * 4;
#define FAT(i) (fbase + (size_t)((i) / 4) * 16 + (i) % 4)
    switch (fmt) {
      case WF_F32:
        for (int32_t i = 0; i < dim; i++) y[i] = ((const float*)q)[FAT(i)];
        break;
      case WF_F16:
        for (int32_t i = 0; i < dim; i++) y[i] = half_to_float(((const uint16_t*)q)[FAT(i)]);
        break;
      case WF_BF16:
        for (int32_t i = 0; i < dim; i++) y[i] = f32_of((uint32_t)((const uint16_t*)q)[FAT(i)] << 16);
        break;
      case WF_Q8:
        for (int32_t i = 0; i < dim; i++) {
          const uint8_t* blk = q + ((size_t)(id / 4) * nb + i / 32) * Q8_BLOCK;
          y[i] = ((const float*)blk)[id % 4] * (float)(int8_t)blk[16 + (id % 4) * 32 + i % 32];
        }
        break;
      case WF_Q4:
        for (int32_t i = 0; i < dim; i++) {
          const uint8_t* blk = q + ((size_t)(id / 4) * nb + i / 32) * Q4_BLOCK;
          uint8_t b = blk[16 + (i % 16 / 4) * 16 + (id % 4) * 4 + i % 4];
          int32_t v = (i % 32 < 16 ? (b & 15) : (b >> 4)) - 8;
          y[i] = ((const float*)blk)[id % 4] * (float)v;
        }
        break;
    }
#undef FAT
  }
}
