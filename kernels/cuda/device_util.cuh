// Device helpers shared by the kernel files (warp/block reductions, NaN, alignment tests, paged-cache
// slots, RoPE tables, weight streaming loads, f16 mma and int8 -> f16 conversion), the PDL helpers and the
// device properties the launchers size their grids by.
//
// PDL (sm_90): kernels launched with launch_pdl may start while the previous kernel of the stream is
// still running. Each such kernel calls pdl_wait() in every block before it reads or writes any memory
// an earlier kernel touches (weights excepted), and before any early return, so the chain of "previous
// kernel completed" stays transitive; then pdl_trigger() lets the next kernel launch early in turn.
#pragma once
#include "kernels.cuh"
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <utility>

namespace llama_ts {
namespace {
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float qnan() { return __int_as_float(0x7fc00000); }

template <class V>  // float, double, int, ...
__device__ __forceinline__ V warp_sum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
// Block-wide sum/max; every thread gets the result. sh: 33 floats of shared memory.
template <bool kMax>
__device__ float block_reduce(float v, float* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float x = lane < nw ? sh[lane] : (kMax ? -INFINITY : 0.f);
    x = kMax ? warp_max(x) : warp_sum(x);
    if (lane == 0) sh[32] = x;
  }
  __syncthreads();
  return sh[32];
}

inline bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; }

// Properties of the current device, asked once per device (per kernel file); a failed query is returned
// and asked again next time.
struct DeviceProps {
  int sms = 0, smemOptin = 0, ccMajor = 0;
};
inline cudaError_t device_props(DeviceProps& out) {
  static std::mutex mu;
  static DeviceProps cache[64];
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev < 0 || dev >= 64) return cudaErrorInvalidDevice;
  std::lock_guard<std::mutex> lock(mu);
  DeviceProps& d = cache[dev];
  if (!d.sms) {
    DeviceProps n;
    e = cudaDeviceGetAttribute(&n.sms, cudaDevAttrMultiProcessorCount, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&n.smemOptin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&n.ccMajor, cudaDevAttrComputeCapabilityMajor, dev);
    if (e != cudaSuccess) return e;
    d = n;
  }
  out = d;
  return cudaSuccess;
}

// ---- weight streaming and f16 tensor-core helpers (gemm.cu, gemm_rows.cu, w8a8.cu) ---------------------
// 16-byte streaming load of weights (read once: no L1 allocation).
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}
// D = A(16x16, row) * B(16x8, col) + D, f16 inputs, f32 accumulators.
__device__ __forceinline__ void mma_16816(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t h2_u32(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 u32_h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }
// Four unsigned bytes b0..b3 of u (each < 1024 - bias) -> f16 (b - bias), in order, as two half2 words, exact:
// 0x64XX is the f16 1024 + XX, so (0x6400 | b) - (1024 + off) = b - off.
__device__ __forceinline__ void biased_bytes_to_h2(uint32_t u, __half2 bias, uint32_t& lo, uint32_t& hi) {
  lo = h2_u32(__hsub2(u32_h2(__byte_perm(u, 0x64646464u, 0x4140)), bias));  // bytes 0, 1
  hi = h2_u32(__hsub2(u32_h2(__byte_perm(u, 0x64646464u, 0x4342)), bias));  // bytes 2, 3
}
// The four signed bytes of w (int8 values q, in order) -> exact floats: byte q ^ 0x80 goes into the mantissa
// of 2^23 by PRMT, so (2^23 + q + 128) - (2^23 + 128) = q.
__device__ __forceinline__ void i8x4_to_f32(uint32_t w, float* f) {
  const uint32_t u = w ^ 0x80808080u;  // byte = q + 128
#pragma unroll
  for (int i = 0; i < 4; i++) f[i] = __uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440u | i)) - 8388736.0f;
}
// The same times s (one rounding in the multiply).
__device__ __forceinline__ void bytes_to_h2(uint32_t u, __half2 bias, __half2 s, uint32_t& lo, uint32_t& hi) {
  biased_bytes_to_h2(u, bias, lo, hi);
  lo = h2_u32(__hmul2(u32_h2(lo), s));
  hi = h2_u32(__hmul2(u32_h2(hi), s));
}

#ifndef LLAMA_TS_PDL_EARLY_TRIGGER
// 1: kernels let the next kernel launch (pdl_enter, and the GEMVs at their start) before they wait for the
// previous one, so that the GEMV after a chain of short kernels could be resident and streaming weights while
// they run. Measured on the H100 (bench/cuda_ab.sh, 7B shape, batch-1 decode): fp16 184.1 vs 183.9, int8 306.7
// vs 305.4, int4 419.2 vs 432.9 tok/s, i.e. no gain (int4 3% slower), so 0 stays.
#define LLAMA_TS_PDL_EARLY_TRIGGER 0
#endif
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Start of a PDL kernel (every block, before any memory access or early return): wait for the previous
// kernel of the stream, and let the next one launch. Triggering first is as safe (a dependent still waits
// for this grid to complete, which implies this grid's own wait) and launches the next kernel sooner.
__device__ __forceinline__ void pdl_enter() {
#if LLAMA_TS_PDL_EARLY_TRIGGER
  pdl_trigger();
  pdl_wait();
#else
  pdl_wait();
  pdl_trigger();
#endif
}

// Whether to launch with PDL: the current device has it (compute capability 9.0+), and the benchmarking
// switch LLAMA_TS_CUDA_NO_PDL (the A/B baseline for these launches; the GEMVs keep theirs) is unset.
// Asked once per process.
inline bool pdl_supported() {
  static const bool ok = [] {
    if (std::getenv("LLAMA_TS_CUDA_NO_PDL") != nullptr) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return ok;
}

// Launch `kernel` with programmatic stream serialization where the device has it (see the header note).
template <typename... P, typename... A>
cudaError_t launch_pdl(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_supported() ? 1 : 0;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
  const cudaError_t g = cudaGetLastError();
  return e != cudaSuccess ? e : g;
}

// Statement form for launchers: launch with PDL, return the error from the enclosing launcher on failure.
#define LAUNCH_PDL(kernel, grid, block, smem, stream, ...)                                                   \
  do {                                                                                                     \
    const cudaError_t e_pdl_ = launch_pdl(kernel, dim3(grid), dim3(block), (size_t)(smem), stream, __VA_ARGS__); \
    if (e_pdl_ != cudaSuccess) return e_pdl_;                                                              \
  } while (0)

// ---- paged KV cache and RoPE (ops.cu, kv_int8.cu) ------------------------------------------------------
// Cache row of row r, or -1 when the position/sequence/block-table entry is unusable.
__device__ __forceinline__ long long kv_slot(const StepDev& st, int r, int blockSize) {
  const int pos = st.positions[r], seq = st.seqIndex[r];
  if (pos < 0 || seq < 0) return -1;
  const int lb = pos / blockSize;
  if (lb >= st.maxBlocksPerSeq) return -1;
  const int phys = st.blockTables[(size_t)seq * st.maxBlocksPerSeq + lb];
  if (phys < 0) return -1;
  return (long long)phys * blockSize + (pos - lb * blockSize);
}

// cos/sin of pos*invFreq[j] for j < half, in double (as the reference): tab[j] = cos, tab[half + j] = sin.
__device__ __forceinline__ void rope_table(double* tab, int half, int pos, const float* __restrict__ invFreq) {
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    const double a = (double)pos * (double)invFreq[j];  // exact (24-bit x 31-bit < 53 bits)
    double sn, cs;
    sincospi(a * 0.31830988618379067154, &sn, &cs);     // a / pi: no large-argument reduction path
    tab[j] = cs;
    tab[half + j] = sn;
  }
}

__device__ __forceinline__ void rope_index(int style, int j, int half, int& i0, int& i1) {
  if (style == ROPE_INTERLEAVED) { i0 = 2 * j; i1 = 2 * j + 1; }
  else { i0 = j; i1 = j + half; }
}

// The rotated pair (o0, o1) of (v0, v1) exactly as the reference computes it (double products, one rounding
// to f32).
__device__ __forceinline__ void rope_rot(float v0, float v1, double cs, double sn, float& o0, float& o1) {
  o0 = (float)__dadd_rn(__dmul_rn((double)v0, cs), -__dmul_rn((double)v1, sn));
  o1 = (float)__dadd_rn(__dmul_rn((double)v0, sn), __dmul_rn((double)v1, cs));
}

// Rotates (b[i0], b[i1]) in place (rope_rot).
__device__ __forceinline__ void rope_pair(float* b, int i0, int i1, double cs, double sn, float& o0, float& o1) {
  rope_rot(b[i0], b[i1], cs, sn, o0, o1);
  b[i0] = o0;
  b[i1] = o1;
}

// A value as an f32 or f16 KV-cache element.
template <typename T> __device__ __forceinline__ T to_cache(float x);
template <> __device__ __forceinline__ float to_cache<float>(float x) { return x; }
template <> __device__ __forceinline__ __half to_cache<__half>(float x) { return __float2half_rn(x); }


}  // namespace
}  // namespace llama_ts
