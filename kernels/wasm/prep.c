/*
 * Weight preparation at upload (main thread): GGUF q8_0/q4_0 blocks repacked into separate quant and
 * scale arrays (every row's quants 16-byte aligned for vector loads), and float weights quantized to
 * int8 per output channel or int4 in groups of 128 with f16-rounded scales, exactly like the CUDA
 * backend's weight_prepare (host model: simulateQuant in tests/cuda_test.ts).
 * q8 layouts also get a bias per 32-block, -16 * sum(q), for the offset activations (matmul_q8.c).
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

static void block_bias(const int8_t* q, int32_t* bias, int32_t n) {
  for (int32_t b = 0; b < n / 32; b++) {
    int32_t s = 0;
    for (int32_t i = 0; i < 32; i++) s += q[b * 32 + i];
    bias[b] = -16 * s;
  }
}

/* q8_0: blocks of (f16 d, int8 q[32]) -> quants, f32 scales, biases. */
API void llama_ts_prep_q8_0(const uint8_t* src, int32_t nblocks, int8_t* q, float* scales, int32_t* bias) {
  for (int32_t b = 0; b < nblocks; b++) {
    const uint8_t* blk = src + (size_t)b * 34;
    scales[b] = half_to_float((uint16_t)(blk[0] | blk[1] << 8));
    for (int32_t i = 0; i < 32; i++) q[(size_t)b * 32 + i] = (int8_t)blk[2 + i];
    block_bias(q + (size_t)b * 32, bias + b, 32);
  }
}

/* q4_0: blocks of (f16 d, u8 qs[16]) -> nibbles (same order), f32 scales. */
API void llama_ts_prep_q4_0(const uint8_t* src, int32_t nblocks, uint8_t* q, float* scales) {
  for (int32_t b = 0; b < nblocks; b++) {
    const uint8_t* blk = src + (size_t)b * 18;
    scales[b] = half_to_float((uint16_t)(blk[0] | blk[1] << 8));
    for (int32_t i = 0; i < 16; i++) q[(size_t)b * 16 + i] = blk[2 + i];
  }
}

/* Float rows (fmt WF_F32/F16/BF16) -> int8 per row: scale = f16(max|w| / 127), q = round(w / scale). */
API void llama_ts_prep_int8(const uint8_t* src, int32_t fmt, int32_t m, int32_t k, int8_t* q, float* scales,
                            int32_t* bias) {
  for (int32_t j = 0; j < m; j++) {
    size_t base = (size_t)j * k;
    float amax = 0;
    for (int32_t i = 0; i < k; i++) {
      float a = __builtin_fabsf(load_float(src, fmt, base + i));
      amax = a > amax ? a : amax;
    }
    float s = round_to_half((double)amax / 127.0);
    for (int32_t i = 0; i < k; i++) {
      float v = s == 0 ? 0 : round_away((float)((double)load_float(src, fmt, base + i) / s));
      q[base + i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    scales[j] = s;
    block_bias(q + base, bias + (size_t)j * (k / 32), k);
  }
}

/* Float rows -> int4 in groups of 128: scale = f16(max|w| / 7), nibble = clamp(round(w / scale) + 8, 0, 15). */
API void llama_ts_prep_int4(const uint8_t* src, int32_t fmt, int32_t m, int32_t k, uint8_t* q, float* scales) {
  size_t n = (size_t)m * k;
  for (size_t g = 0; g < n; g += 128) {
    float amax = 0;
    for (int32_t i = 0; i < 128; i++) {
      float a = __builtin_fabsf(load_float(src, fmt, g + i));
      amax = a > amax ? a : amax;
    }
    float s = round_to_half((double)amax / 7.0);
    scales[g / 128] = s;
    for (int32_t i = 0; i < 128; i++) {
      float v = (s == 0 ? 0 : round_away((float)((double)load_float(src, fmt, g + i) / s))) + 8;
      uint8_t nib = (uint8_t)(v > 15 ? 15 : v < 0 ? 0 : v);
      size_t e = g + i, at = (e / 32) * 16 + (e % 16);
      q[at] = (e % 32) < 16 ? (uint8_t)((q[at] & 0xf0) | nib) : (uint8_t)((q[at] & 0x0f) | nib << 4);
    }
  }
}
