/*
 * Weight preparation at upload (main thread): GGUF q8_0/q4_0 blocks repacked into separate quant and
 * scale arrays (every row's quants 16-byte aligned for vector loads), and float weights quantized to
 * int8 per output channel or int4 in groups of 128 with f16-rounded scales, exactly like the CUDA
 * backend's weight_prepare (host model: simulateQuant in tests/cuda_test.ts).
 */
#include "llama_ts_wasm.h"

#define LLAMA_TS_WASM_ABI 1
API int32_t llama_ts_abi(void) { return LLAMA_TS_WASM_ABI; }

INLINE float load_float(const uint8_t* src, int32_t fmt, size_t i) {
  switch (fmt) {
    case WF_F16: return half_to_float(((const uint16_t*)src)[i]);
    case WF_BF16: return f32_of((uint32_t)((const uint16_t*)src)[i] << 16);
    default: return ((const float*)src)[i];
  }
}

/* C roundf without libm: halves away from zero. */
INLINE float round_away(float v) {
  float t = __builtin_truncf(v), f = v - t;
  return f >= 0.5f ? t + 1 : f <= -0.5f ? t - 1 : t;
}

/* A positive double rounded to the nearest f16 value (ties to even), returned as a float. */
static float round_to_half(double x) {
  if (!(x > 0)) return 0;
  if (x >= 65520.0) return __builtin_inff();
  union { double d; uint64_t u; } v = {x};
  int32_t e = (int32_t)((v.u >> 52) & 0x7ff) - 1023;
  if (e < -14) e = -14; /* f16 subnormals: quantum 2^-24 */
  union { uint64_t u; double d; } q = {(uint64_t)(e - 10 + 1023) << 52};
  return (float)(__builtin_rint(x / q.d) * q.d);
}

/*
 * Interleaved layouts (llama_ts_wasm.h): rows in groups of 4; per group and 32-block, the four rows'
 * f32 scales, then the four rows' quants. A tile of 4 rows is read
 * as one linear stream. Rows past m in the last group are zero.
 */
static void put_q8(uint8_t* dst, int32_t nb, int32_t j, int32_t b, float scale, const int8_t* q) {
  uint8_t* blk = dst + ((size_t)(j / 4) * nb + b) * Q8_BLOCK;
  int32_t l = j % 4;
  for (int32_t i = 0; i < 32; i++) blk[16 + l * 32 + i] = (uint8_t)q[i];
  ((float*)blk)[l] = scale;
}

/*
 * `nib[i]` holds element i (low nibble) and i + 16 (high nibble), as in ggml's q4_0. Stored in chunks of
 * 4: byte i goes to vector i / 4 (16 bytes), at row l's 4 bytes, so a vector holds the four rows' chunk.
 */
static void put_q4(uint8_t* dst, int32_t nb, int32_t j, int32_t b, float scale, const uint8_t* nib) {
  uint8_t* blk = dst + ((size_t)(j / 4) * nb + b) * Q4_BLOCK;
  int32_t l = j % 4;
  for (int32_t i = 0; i < 16; i++) blk[16 + (i / 4) * 16 + l * 4 + i % 4] = nib[i];
  ((float*)blk)[l] = scale;
}

/* Float rows of `es`-byte elements (f32, f16, bf16 bits) -> groups of 4 rows x chunks of 4 elements. */
API void llama_ts_prep_float(const uint8_t* src, int32_t es, int32_t m, int32_t k, uint8_t* dst) {
  int32_t nc = (k + 3) / 4;
  for (int32_t j = 0; j < m; j++) {
    for (int32_t i = 0; i < k; i++) {
      uint8_t* d = dst + (((size_t)(j / 4) * nc + i / 4) * 16 + (j % 4) * 4 + i % 4) * es;
      const uint8_t* s = src + ((size_t)j * k + i) * es;
      for (int32_t b = 0; b < es; b++) d[b] = s[b];
    }
  }
}

/* q8_0 rows (f16 d, int8 q[32] per block) -> q8x4. */
API void llama_ts_prep_q8_0(const uint8_t* src, int32_t m, int32_t k, uint8_t* dst) {
  int32_t nb = k / 32;
  for (int32_t j = 0; j < m; j++) {
    for (int32_t b = 0; b < nb; b++) {
      const uint8_t* blk = src + ((size_t)j * nb + b) * 34;
      put_q8(dst, nb, j, b, half_to_float((uint16_t)(blk[0] | blk[1] << 8)), (const int8_t*)blk + 2);
    }
  }
}

/* q4_0 rows (f16 d, u8 qs[16] per block) -> q4x4. */
API void llama_ts_prep_q4_0(const uint8_t* src, int32_t m, int32_t k, uint8_t* dst) {
  int32_t nb = k / 32;
  for (int32_t j = 0; j < m; j++) {
    for (int32_t b = 0; b < nb; b++) {
      const uint8_t* blk = src + ((size_t)j * nb + b) * 18;
      put_q4(dst, nb, j, b, half_to_float((uint16_t)(blk[0] | blk[1] << 8)), blk + 2);
    }
  }
}

/* Float rows (fmt WF_F32/F16/BF16) -> int8 per row: scale = f16(max|w| / 127), q = round(w / scale). */
API void llama_ts_prep_int8(const uint8_t* src, int32_t fmt, int32_t m, int32_t k, uint8_t* dst) {
  int32_t nb = k / 32;
  int8_t q[32];
  for (int32_t j = 0; j < m; j++) {
    size_t base = (size_t)j * k;
    float amax = 0;
    for (int32_t i = 0; i < k; i++) {
      float a = __builtin_fabsf(load_float(src, fmt, base + i));
      amax = a > amax ? a : amax;
    }
    float s = round_to_half((double)amax / 127.0);
    for (int32_t b = 0; b < nb; b++) {
      for (int32_t i = 0; i < 32; i++) {
        float v = s == 0 ? 0 : round_away((float)((double)load_float(src, fmt, base + b * 32 + i) / s));
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
      }
      put_q8(dst, nb, j, b, s, q);
    }
  }
}

/* Float rows -> int4 in groups of 128: scale = f16(max|w| / 7), nibble = clamp(round(w / scale) + 8, 0, 15). */
API void llama_ts_prep_int4(const uint8_t* src, int32_t fmt, int32_t m, int32_t k, uint8_t* dst) {
  int32_t nb = k / 32;
  uint8_t nib[16];
  for (int32_t j = 0; j < m; j++) {
    for (int32_t g = 0; g < k; g += 128) {
      size_t base = (size_t)j * k + g;
      float amax = 0;
      for (int32_t i = 0; i < 128; i++) {
        float a = __builtin_fabsf(load_float(src, fmt, base + i));
        amax = a > amax ? a : amax;
      }
      float s = round_to_half((double)amax / 7.0);
      for (int32_t b = 0; b < 4; b++) {
        for (int32_t i = 0; i < 32; i++) {
          float v = (s == 0 ? 0 : round_away((float)((double)load_float(src, fmt, base + b * 32 + i) / s))) + 8;
          uint8_t n = (uint8_t)(v > 15 ? 15 : v < 0 ? 0 : v);
          nib[i % 16] = i < 16 ? n : (uint8_t)(nib[i % 16] | n << 4);
        }
        put_q4(dst, nb, j, g / 32 + b, s, nib);
      }
    }
  }
}
