// Weight preparation at load: repack of ggml q8_0 / q4_0 blocks and int8 / int4 quantization of float
// weights into the layouts the GEMV and GEMM kernels read (separate quant and f16 scale arrays, every row
// 16-byte aligned). Contract: kernels.cuh.
#include "kernels.cuh"
#include "device_util.cuh"

namespace llama_ts {

namespace {

__device__ __forceinline__ uint32_t pack4(const uint8_t* b) {
  return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

// One thread per ggml block (byte loads: no alignment needed on src).
__global__ void repack_q8_0_kernel(const uint8_t* __restrict__ src, long long nb, int8_t* __restrict__ q,
                                   __half* __restrict__ scales) {
  const long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nb) return;
  const uint8_t* p = src + b * 34;
  uint8_t buf[34];
#pragma unroll
  for (int i = 0; i < 34; i++) buf[i] = __ldg(p + i);
  scales[b] = __ushort_as_half((unsigned short)(buf[0] | (buf[1] << 8)));
  uint4* dq = reinterpret_cast<uint4*>(q + b * 32);
  dq[0] = make_uint4(pack4(buf + 2), pack4(buf + 6), pack4(buf + 10), pack4(buf + 14));
  dq[1] = make_uint4(pack4(buf + 18), pack4(buf + 22), pack4(buf + 26), pack4(buf + 30));
}

__global__ void repack_q4_0_kernel(const uint8_t* __restrict__ src, long long nb, uint8_t* __restrict__ q,
                                   __half* __restrict__ scales) {
  const long long b = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= nb) return;
  const uint8_t* p = src + b * 18;
  uint8_t buf[18];
#pragma unroll
  for (int i = 0; i < 18; i++) buf[i] = __ldg(p + i);
  scales[b] = __ushort_as_half((unsigned short)(buf[0] | (buf[1] << 8)));
  *reinterpret_cast<uint4*>(q + b * 16) = make_uint4(pack4(buf + 2), pack4(buf + 6), pack4(buf + 10), pack4(buf + 14));
}

__device__ __forceinline__ float load_src(const void* q, int fmt, size_t i) {
  if (fmt == WF_F32) return __ldg(static_cast<const float*>(q) + i);
  unsigned short b = __ldg(static_cast<const unsigned short*>(q) + i);
  if (fmt == WF_F16) return __half2float(__ushort_as_half(b));
  return __uint_as_float((uint32_t)b << 16);  // bf16
}

// One warp per (row, group). I8: scale = absmax/127, q = clamp(roundf(x/scale), -127, 127).
// I4: scale = absmax/7, q = clamp(roundf(x/scale) + 8, 0, 15). scale rounded to half first and the
// quantization divides by the rounded scale. Zero group: scale 0, q 0 (I8) / 8 (I4).
__global__ void quantize_kernel(const void* __restrict__ src, int srcFmt, int m, int k, int group, int dstFmt,
                                uint8_t* __restrict__ q, __half* __restrict__ scales) {
  const int lane = threadIdx.x & 31;
  const long long gw = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int gpr = k / group;
  if (gw >= (long long)m * gpr) return;
  const int row = (int)(gw / gpr), g = (int)(gw - (long long)row * gpr);
  const size_t base = (size_t)row * k + (size_t)g * group;
  float amax = 0.f;
  for (int i = lane; i < group; i += 32) amax = fmaxf(amax, fabsf(load_src(src, srcFmt, base + i)));
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float qmax = dstFmt == WF_I8 ? 127.f : 7.f;
  const __half sh = __float2half_rn(__fdiv_rn(amax, qmax));
  const float sf = __half2float(sh);
  if (lane == 0) scales[gw] = sh;
  for (int i0 = 0; i0 < group; i0 += 32) {
    const float xv = load_src(src, srcFmt, base + i0 + lane);
    int qi;
    if (dstFmt == WF_I8) {
      qi = sf != 0.f ? (int)fminf(fmaxf(roundf(__fdiv_rn(xv, sf)), -127.f), 127.f) : 0;
      q[base + i0 + lane] = (uint8_t)(int8_t)qi;
    } else {
      qi = sf != 0.f ? (int)fminf(fmaxf(roundf(__fdiv_rn(xv, sf)) + 8.f, 0.f), 15.f) : 8;
      const int hi = __shfl_down_sync(0xffffffffu, qi, 16);
      if (lane < 16) q[(base + i0) / 2 + lane] = (uint8_t)(qi | (hi << 4));
    }
  }
}

}  // namespace

cudaError_t repack_q8_0(const uint8_t* src, int m, int k, int8_t* q, __half* scales, cudaStream_t s) {
  if (m < 0 || k < 0 || k % 32 != 0 || !aligned(q, 16)) return cudaErrorInvalidValue;
  const long long nb = (long long)m * (k / 32);
  if (nb == 0) return cudaGetLastError();
  const int threads = 256;
  repack_q8_0_kernel<<<(unsigned)((nb + threads - 1) / threads), threads, 0, s>>>(src, nb, q, scales);
  return cudaGetLastError();
}

cudaError_t repack_q4_0(const uint8_t* src, int m, int k, uint8_t* q, __half* scales, cudaStream_t s) {
  if (m < 0 || k < 0 || k % 32 != 0 || !aligned(q, 16)) return cudaErrorInvalidValue;
  const long long nb = (long long)m * (k / 32);
  if (nb == 0) return cudaGetLastError();
  const int threads = 256;
  repack_q4_0_kernel<<<(unsigned)((nb + threads - 1) / threads), threads, 0, s>>>(src, nb, q, scales);
  return cudaGetLastError();
}

cudaError_t quantize_weight(WeightRef src, int dstFmt, int group, void* q, __half* scales, cudaStream_t s) {
  if (src.fmt != WF_F32 && src.fmt != WF_F16 && src.fmt != WF_BF16) return cudaErrorInvalidValue;
  if (dstFmt != WF_I8 && dstFmt != WF_I4) return cudaErrorInvalidValue;
  const int k = src.k, m = src.m;
  if (group <= 0) group = dstFmt == WF_I8 ? k : 128;
  if (m < 0 || k <= 0 || k % 32 != 0 || group % 32 != 0 || k % group != 0) return cudaErrorInvalidValue;
  if (src.q == nullptr || q == nullptr || scales == nullptr) return cudaErrorInvalidValue;
  const long long warps = (long long)m * (k / group);
  if (warps == 0) return cudaGetLastError();
  const int threads = 256;
  const long long blocks = (warps * 32 + threads - 1) / threads;
  quantize_kernel<<<(unsigned)blocks, threads, 0, s>>>(src.q, src.fmt, m, k, group, dstFmt,
                                                        static_cast<uint8_t*>(q), scales);
  return cudaGetLastError();
}

}  // namespace llama_ts
