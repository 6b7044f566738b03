// W8A8 (SmoothQuant) matmuls of the llama.ts CUDA backend: per-token int8 activations times int8 (q8_0)
// or int4 (q4_0) block weights with exact int32 block dot products. Contract: kernels.cuh (matmul_a8).
//
//   1. a8_quantize_kernel, one block per activation row: xn = normW ? normW * (x / sqrt(mean(x^2) + eps))
//      : x (rms_norm's arithmetic), then amax = max |xn|, sx = f32(amax / 127), inv = sx > 0 ? f32(1 / sx)
//      : 0, qx = clamp(roundf(f32(xn * inv)), -127, 127) (roundf: halves away from zero). A row holding
//      NaN gets sx = NaN (so its outputs are NaN, as the reference's). qx (rows x k int8, row stride k)
//      and sx (rows f32) go to the workspace.
//   2. rows <= a8_gemv_max_rows(k): a8_gemv_kernel, 512 threads, persistent over "items" (a weight row, or
//      in gate/up mode row j of both weights), one warp per item. qx rows are staged once per block in
//      shared memory. Lane l reads 16-byte weight vectors v = l, l + 32, ... (U = 4 in flight per lane),
//      so a warp load covers 512 contiguous bytes of a row. int8: a vector is half a 32-block: 4 __dp4a
//      with the 16 matching qx bytes, times the block's f16 scale, f32 accumulation (the two halves of a
//      block are scaled separately: d*a + d*b, not d*(a+b): f32 rounding only). int4: a vector is one
//      q4_0 block (byte j: element j low nibble, j + 16 high nibble); nibbles become int8 (n - 8) by
//      mask + __vsub4, 8 __dp4a per block. Epilogue: warp sum, times sx[r], plus the residual, or
//      silu(a) * b in gate/up mode (ops.cu's formula).
//   3. more rows: a8_gemm_kernel on int8 tensor cores, mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32:
//      block tile 64 rows x 128 weight rows x 64 k (two 32-blocks), 8 warps (2 x 4, warp tile 32 x 32),
//      3-stage cp.async pipeline with zero-fill past the edges, 80-byte (int8) / 48-byte (int4) padded
//      shared rows (conflict-free 32-bit fragment loads). Each mma covers exactly one weight block, so
//      its int32 result is the exact block dot; it is scaled by the block's d (prefetched into registers
//      one stage ahead) into f32 accumulators. int4 tiles stay packed in shared memory: the fragment word
//      of lane (g, t) is byte word t of the block, low nibbles for k 4t..4t+3, high for 16+4t..
//      Fragment layouts (PTX ISA, m16n8k32 .s8): A a0 (row g, k 4t..), a1 (row g+8), a2 (row g, k 16+4t..),
//      a3 (row g+8, k 16+4t..); B b0 (k 4t.., col g), b1 (k 16+4t.., col g); C c0,c1 (row g, cols 2t, 2t+1),
//      c2,c3 (row g+8). Gate/up runs as two GEMMs and silu_mul.
// All launches use programmatic dependent launch (device_util.cuh): each kernel waits before its first
// memory access, then triggers.
#include "kernels.cuh"
#include "device_util.cuh"

#include <map>
#include <mutex>

namespace llama_ts {
namespace {

constexpr int kQThreads = 256;  // quantize kernel threads per row
constexpr int kGThreads = 512;  // GEMV threads per block
constexpr int kGWarps = kGThreads / 32;
constexpr int kMaxNR = 8;       // most activation rows of one GEMV
constexpr int kU = 4;           // 16-byte weight vectors in flight per lane and weight row

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

// ---- 1. per-row activation quantization ----------------------------------------------------------------

__global__ void __launch_bounds__(kQThreads) a8_quantize_kernel(const float* x, int ldx, int k,
                                                                const float* __restrict__ normW, float eps,
                                                                int8_t* qx, float* sx) {
  pdl_enter();  // see device_util.cuh: before any read
  __shared__ float sh[33];
  const int r = blockIdx.x;
  const float* xr = x + (size_t)r * ldx;
  float inv = 1.f;
  if (normW) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = block_reduce<false>(ss, sh);
    inv = 1.0f / sqrtf(ss / (float)k + eps);
  }
  float amax = 0.f, bad = 0.f;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const float v = normW ? normW[i] * (inv * xr[i]) : xr[i];
    amax = fmaxf(amax, fabsf(v));
    if (v != v) bad = 1.f;
  }
  amax = block_reduce<true>(amax, sh);
  bad = block_reduce<true>(bad, sh);
  const float s = bad != 0.f ? qnan() : __fdiv_rn(amax, 127.f);
  const float is = s > 0.f ? __fdiv_rn(1.f, s) : 0.f;
  int8_t* qr = qx + (size_t)r * k;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const float v = normW ? normW[i] * (inv * xr[i]) : xr[i];
    const float q = fminf(fmaxf(roundf(__fmul_rn(v, is)), -127.f), 127.f);
    qr[i] = (int8_t)(int)q;
  }
  if (threadIdx.x == 0) sx[r] = s;
}

// ---- 2. GEMV (few rows) ----------------------------------------------------------------------------------

struct A8GemvParams {
  const int8_t* qx;   // nRows x k
  const float* sx;    // nRows
  int k;
  const uint8_t* q[3];
  const unsigned short* sc[3];  // f16 scale bits, m x (k / 32)
  int begin[3];       // first item of weight i (mode 0)
  float* y[3];
  int ldy[3];
  const float* res[3];
  int nW;
  int items;
};

__device__ __forceinline__ int nib_lo(uint32_t w) { return (int)__vsub4(w & 0x0F0F0F0Fu, 0x08080808u); }
__device__ __forceinline__ int nib_hi(uint32_t w) { return (int)__vsub4((w >> 4) & 0x0F0F0F0Fu, 0x08080808u); }

// Integer dot of one weight vector with row r's matching qx bytes (sq: staged rows, row stride k).
template <int FMT>
__device__ __forceinline__ int vec_dot(const uint4& w, const int8_t* sq, int k, int r, int v) {
  if constexpr (FMT == WF_I8) {
    const uint4 a = *reinterpret_cast<const uint4*>(sq + (size_t)r * k + (size_t)v * 16);
    int d = __dp4a((int)w.x, (int)a.x, 0);
    d = __dp4a((int)w.y, (int)a.y, d);
    d = __dp4a((int)w.z, (int)a.z, d);
    return __dp4a((int)w.w, (int)a.w, d);
  } else {
    const int8_t* b = sq + (size_t)r * k + (size_t)v * 32;
    const uint4 lo = *reinterpret_cast<const uint4*>(b);       // elements 0..15 of the block
    const uint4 hi = *reinterpret_cast<const uint4*>(b + 16);  // elements 16..31
    int d = __dp4a(nib_lo(w.x), (int)lo.x, 0);
    d = __dp4a(nib_lo(w.y), (int)lo.y, d);
    d = __dp4a(nib_lo(w.z), (int)lo.z, d);
    d = __dp4a(nib_lo(w.w), (int)lo.w, d);
    d = __dp4a(nib_hi(w.x), (int)hi.x, d);
    d = __dp4a(nib_hi(w.y), (int)hi.y, d);
    d = __dp4a(nib_hi(w.z), (int)hi.z, d);
    return __dp4a(nib_hi(w.w), (int)hi.w, d);
  }
}

// NWR = 1: item = one row of one of nW weights; NWR = 2: item j = row j of weights 0 and 1 (gate/up).
template <int FMT, int NR, int NWR>
__global__ void __launch_bounds__(kGThreads, 1) a8_gemv_kernel(const A8GemvParams p) {
  extern __shared__ __align__(16) int8_t sq[];  // NR x k
  pdl_enter();  // see device_util.cuh: before any read
  {
    const uint4* src = reinterpret_cast<const uint4*>(p.qx);
    uint4* dst = reinterpret_cast<uint4*>(sq);
    const int n16 = NR * (p.k / 16);
    for (int i = threadIdx.x; i < n16; i += blockDim.x) dst[i] = src[i];
  }
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int k = p.k, nb = k / 32;
  const int nv = FMT == WF_I8 ? k / 16 : k / 32;  // 16-byte vectors per weight row
  const size_t rowBytes = FMT == WF_I8 ? (size_t)k : (size_t)k / 2;
  for (int item = blockIdx.x * kGWarps + warp; item < p.items; item += gridDim.x * kGWarps) {
    int wi = 0;
    if (NWR == 1) {
      if (p.nW > 1 && item >= p.begin[1]) wi = 1;
      if (p.nW > 2 && item >= p.begin[2]) wi = 2;
    }
    const int row = item - p.begin[wi];
    const uint8_t* wr[NWR];
    const unsigned short* sr[NWR];
#pragma unroll
    for (int t = 0; t < NWR; t++) {
      const int w = NWR == 2 ? t : wi;
      wr[t] = p.q[w] + (size_t)row * rowBytes;
      sr[t] = p.sc[w] + (size_t)row * nb;
    }
    float acc[NWR][NR];
#pragma unroll
    for (int t = 0; t < NWR; t++)
#pragma unroll
      for (int r = 0; r < NR; r++) acc[t][r] = 0.f;
    for (int v0 = 0; v0 < nv; v0 += 32 * kU) {
      uint4 wv[kU][NWR];
      float d[kU][NWR];
#pragma unroll
      for (int u = 0; u < kU; u++) {
        const int v = v0 + 32 * u + lane;
#pragma unroll
        for (int t = 0; t < NWR; t++) {
          if (v < nv) {
            wv[u][t] = ld_stream16(wr[t] + (size_t)v * 16);
            d[u][t] = __half2float(__ushort_as_half(__ldg(sr[t] + (FMT == WF_I8 ? (v >> 1) : v))));
          } else {
            wv[u][t] = make_uint4(0, 0, 0, 0);
            d[u][t] = 0.f;
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kU; u++) {
        const int v = v0 + 32 * u + lane;
        if (v < nv) {
#pragma unroll
          for (int r = 0; r < NR; r++)
#pragma unroll
            for (int t = 0; t < NWR; t++)
              acc[t][r] = fmaf(d[u][t], (float)vec_dot<FMT>(wv[u][t], sq, k, r, v), acc[t][r]);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < NWR; t++)
#pragma unroll
      for (int r = 0; r < NR; r++) acc[t][r] = warp_sum(acc[t][r]);
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < NR; r++) {
        const float s = p.sx[r];
        if (NWR == 1) {
          float* yp = p.y[wi] + (size_t)r * p.ldy[wi] + row;
          const float v = s * acc[0][r];
          *yp = p.res[wi] ? p.res[wi][(size_t)r * p.ldy[wi] + row] + v : v;
        } else {
          const float a = s * acc[0][r], b = s * acc[NWR - 1][r];
          p.y[0][(size_t)r * p.ldy[0] + row] = a / (1.0f + expf(-a)) * b;
        }
      }
    }
  }
}

using GemvFn = void (*)(A8GemvParams);

template <int FMT, int NWR>
GemvFn gemv_for_nr(int nr) {
  switch (nr) {
    case 1: return a8_gemv_kernel<FMT, 1, NWR>;
    case 2: return a8_gemv_kernel<FMT, 2, NWR>;
    case 3: return a8_gemv_kernel<FMT, 3, NWR>;
    case 4: return a8_gemv_kernel<FMT, 4, NWR>;
    case 5: return a8_gemv_kernel<FMT, 5, NWR>;
    case 6: return a8_gemv_kernel<FMT, 6, NWR>;
    case 7: return a8_gemv_kernel<FMT, 7, NWR>;
    case 8: return a8_gemv_kernel<FMT, 8, NWR>;
    default: return nullptr;
  }
}

GemvFn gemv_kernel(int fmt, int nr, int nwr) {
  if (fmt == WF_I8) return nwr == 2 ? gemv_for_nr<WF_I8, 2>(nr) : gemv_for_nr<WF_I8, 1>(nr);
  return nwr == 2 ? gemv_for_nr<WF_I4, 2>(nr) : gemv_for_nr<WF_I4, 1>(nr);
}

// Allows `smem` bytes of dynamic shared memory for fn (set once per kernel and size; the first run of a
// shape happens outside graph capture, see runtime.cu).
cudaError_t allow_smem(const void* fn, size_t smem) {
  if (smem <= 48 * 1024) return cudaSuccess;
  static std::mutex mu;
  static std::map<const void*, size_t> done;
  std::lock_guard<std::mutex> lock(mu);
  auto it = done.find(fn);
  if (it != done.end() && it->second >= smem) return cudaSuccess;
  cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  done[fn] = smem;
  return cudaSuccess;
}

// ---- 3. GEMM (many rows, int8 tensor cores) --------------------------------------------------------------

constexpr int GM = 64, GN = 128, GK = 64, GS = 3, GT = 256;
constexpr int LDA = GK + 16;                  // bytes per shared A row (80)
template <int FMT> __host__ __device__ constexpr int ldb() { return FMT == WF_I8 ? GK + 16 : GK / 2 + 16; }  // 80 / 48

struct A8GemmParams {
  const int8_t* qx;
  const float* sx;
  int nRows, k;
  const uint8_t* q;
  const unsigned short* sc;
  int m;
  float* y;
  int ldy;
  const float* res;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(sa), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

__device__ __forceinline__ void mma_s8(int (&c)[4], const int (&a)[4], int b0, int b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
      : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0), "r"(0), "r"(0), "r"(0));
}

template <int FMT>
__global__ void __launch_bounds__(GT) a8_gemm_kernel(const A8GemmParams p) {
  constexpr int LDB = ldb<FMT>();
  __shared__ __align__(16) int8_t sA[GS][GM * LDA];  // 3 x 5120 bytes
  __shared__ __align__(16) int8_t sB[GS][GN * LDB];  // 3 x 10240 (int8) or 3 x 6144 (int4) bytes
  pdl_enter();  // see device_util.cuh: before any read
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int r0 = blockIdx.y * GM, n0 = blockIdx.x * GN;
  const int wm = (warp >> 2) * 32, wn = (warp & 3) * 32;
  const int k = p.k, nb = k / 32, nk = (k + GK - 1) / GK;
  const size_t rowBytes = FMT == WF_I8 ? (size_t)k : (size_t)k / 2;

  auto load_stage = [&](int buf, int kt) {
    const int kk = kt * GK;
    {  // A: 64 rows x 4 chunks of 16 bytes, one per thread
      const int row = tid >> 2, c = tid & 3;
      const bool ok = r0 + row < p.nRows && kk + 16 * c < k;
      const int8_t* src = ok ? p.qx + (size_t)(r0 + row) * k + kk + 16 * c : p.qx;
      cp_async16(&sA[buf][row * LDA + 16 * c], src, ok);
    }
    if constexpr (FMT == WF_I8) {  // B: 128 rows x 4 chunks, two per thread
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int idx = tid + i * GT, row = idx >> 2, c = idx & 3;
        const bool ok = n0 + row < p.m && kk + 16 * c < k;
        const uint8_t* src = ok ? p.q + (size_t)(n0 + row) * rowBytes + kk + 16 * c : p.q;
        cp_async16(&sB[buf][row * LDB + 16 * c], src, ok);
      }
    } else {  // B: 128 rows x 2 packed blocks of 16 bytes, one per thread
      const int row = tid >> 1, c = tid & 1;
      const bool ok = n0 + row < p.m && kk + 32 * c < k;
      const uint8_t* src = ok ? p.q + (size_t)(n0 + row) * rowBytes + kk / 2 + 16 * c : p.q;
      cp_async16(&sB[buf][row * LDB + 16 * c], src, ok);
    }
  };
  // scale bits of this thread's columns (n-tile j, column 2t + e) for the two blocks (h) of stage kt
  auto load_scales = [&](int kt, unsigned short (&ds)[4][2][2]) {
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const int col = n0 + wn + 8 * j + 2 * t + e;
#pragma unroll
        for (int h = 0; h < 2; h++) {
          const int kb = 2 * kt + h;
          ds[j][e][h] = (col < p.m && kb < nb) ? __ldg(p.sc + (size_t)col * nb + kb) : (unsigned short)0;
        }
      }
  };

  float acc[2][4][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

#pragma unroll
  for (int s = 0; s < GS - 1; s++) {
    if (s < nk) load_stage(s, s);
    cp_async_commit();
  }
  unsigned short dcur[4][2][2], dnext[4][2][2];
  load_scales(0, dcur);

  for (int kt = 0; kt < nk; kt++) {
    cp_async_wait<GS - 2>();  // stage kt has landed (this thread's copies)
    __syncthreads();          // ... everyone's; and every warp is done with the buffer reloaded next
    if (kt + GS - 1 < nk) load_stage((kt + GS - 1) % GS, kt + GS - 1);
    cp_async_commit();
    if (kt + 1 < nk) load_scales(kt + 1, dnext);
    const int buf = kt % GS;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      int a[2][4];
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int8_t* base = &sA[buf][(wm + 16 * i + g) * LDA + 32 * h + 4 * t];
        a[i][0] = *reinterpret_cast<const int*>(base);
        a[i][1] = *reinterpret_cast<const int*>(base + 8 * LDA);
        a[i][2] = *reinterpret_cast<const int*>(base + 16);
        a[i][3] = *reinterpret_cast<const int*>(base + 8 * LDA + 16);
      }
      int b[4][2];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        if constexpr (FMT == WF_I8) {
          const int8_t* base = &sB[buf][(wn + 8 * j + g) * LDB + 32 * h + 4 * t];
          b[j][0] = *reinterpret_cast<const int*>(base);
          b[j][1] = *reinterpret_cast<const int*>(base + 16);
        } else {
          const uint32_t w = *reinterpret_cast<const uint32_t*>(&sB[buf][(wn + 8 * j + g) * LDB + 16 * h + 4 * t]);
          b[j][0] = nib_lo(w);
          b[j][1] = nib_hi(w);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float d0 = __half2float(__ushort_as_half(dcur[j][0][h]));
        const float d1 = __half2float(__ushort_as_half(dcur[j][1][h]));
#pragma unroll
        for (int i = 0; i < 2; i++) {
          int c[4];
          mma_s8(c, a[i], b[j][0], b[j][1]);
          acc[i][j][0] = fmaf(d0, (float)c[0], acc[i][j][0]);
          acc[i][j][1] = fmaf(d1, (float)c[1], acc[i][j][1]);
          acc[i][j][2] = fmaf(d0, (float)c[2], acc[i][j][2]);
          acc[i][j][3] = fmaf(d1, (float)c[3], acc[i][j][3]);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int e = 0; e < 2; e++)
#pragma unroll
        for (int h = 0; h < 2; h++) dcur[j][e][h] = dnext[j][e][h];
  }
  cp_async_wait<0>();

#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const int row = r0 + wm + 16 * i + g + 8 * (e >> 1);
      if (row >= p.nRows) continue;
      const float s = p.sx[row];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int col = n0 + wn + 8 * j + 2 * t + (e & 1);
        if (col >= p.m) continue;
        const size_t o = (size_t)row * p.ldy + col;
        const float v = s * acc[i][j][e];
        p.y[o] = p.res ? p.res[o] + v : v;
      }
    }
}

}  // namespace

int a8_gemv_max_rows(int k) {
  if (k < 32) return 0;
  DeviceProps d;
  if (device_props(d) != cudaSuccess) return 0;
  const int budget = d.smemOptin - 2048;  // room for the kernel's static shared memory
  int n = budget > 0 ? budget / k : 0;
  return n > kMaxNR ? kMaxNR : n;
}

size_t matmul_a8_workspace_bytes(int maxRows, int k) {
  if (maxRows < 1 || k < 1) return 0;
  return align256((size_t)maxRows * k) + align256((size_t)maxRows * 4);
}

cudaError_t matmul_a8(const A8Args& a, void* workspace, cudaStream_t s) {
  const int k = a.k, n = a.nW;
  if (a.nRows < 1 || k < 32 || k % 32 != 0 || a.x == nullptr || workspace == nullptr || !aligned(workspace, 16))
    return cudaErrorInvalidValue;
  if (a.nRows > 1 && a.ldx < k) return cudaErrorInvalidValue;
  if (a.mode != 0 && a.mode != 1) return cudaErrorInvalidValue;
  if (n < 1 || n > 3 || (a.mode == 1 && n != 2)) return cudaErrorInvalidValue;
  for (int i = 0; i < n; i++) {
    const WeightRef& w = a.w[i];
    if ((w.fmt != WF_I8 && w.fmt != WF_I4) || w.group != 32 || w.k != k || w.m < 1) return cudaErrorInvalidValue;
    if (w.q == nullptr || w.scales == nullptr || !aligned(w.q, 16) || a.y[i] == nullptr) return cudaErrorInvalidValue;
    if (a.nRows > 1 && a.ldy[i] < w.m) return cudaErrorInvalidValue;
  }
  if (a.mode == 1 && (a.w[1].m != a.w[0].m || a.w[1].fmt != a.w[0].fmt)) return cudaErrorInvalidValue;

  int8_t* qx = static_cast<int8_t*>(workspace);
  float* sx = reinterpret_cast<float*>(static_cast<char*>(workspace) + align256((size_t)a.nRows * k));
  LAUNCH_PDL(a8_quantize_kernel, a.nRows, kQThreads, 0, s, a.x, a.ldx, k, a.normW, a.eps, qx, sx);

  if (a.nRows <= a8_gemv_max_rows(k)) {
    DeviceProps d;
    cudaError_t e = device_props(d);
    if (e != cudaSuccess) return e;
    // one launch for weights of one format; mixed formats (not met in practice) one launch each
    bool same = true;
    for (int i = 1; i < n; i++) same = same && a.w[i].fmt == a.w[0].fmt;
    const int nwr = a.mode == 1 ? 2 : 1;
    for (int first = 0; first < n; first += same ? n : 1) {
      const int cnt = a.mode == 1 ? 2 : same ? n : 1;
      A8GemvParams p{};
      p.qx = qx;
      p.sx = sx;
      p.k = k;
      int items = 0;
      for (int i = 0; i < 3; i++) {
        if (i < cnt) {
          const int wi = first + i;
          p.q[i] = static_cast<const uint8_t*>(a.w[wi].q);
          p.sc[i] = reinterpret_cast<const unsigned short*>(a.w[wi].scales);
          p.begin[i] = a.mode == 1 ? 0 : items;
          p.y[i] = a.y[wi];
          p.ldy[i] = a.ldy[wi];
          p.res[i] = a.res[wi];
          if (a.mode == 0) items += a.w[wi].m;
        } else {
          p.begin[i] = 1 << 30;
        }
      }
      if (a.mode == 1) items = a.w[0].m;
      p.nW = a.mode == 1 ? 1 : cnt;
      p.items = items;
      GemvFn fn = gemv_kernel(a.w[first].fmt, a.nRows, nwr);
      if (fn == nullptr) return cudaErrorInvalidValue;
      const size_t smem = (size_t)a.nRows * k;
      e = allow_smem(reinterpret_cast<const void*>(fn), smem);
      if (e != cudaSuccess) return e;
      const int need = (items + kGWarps - 1) / kGWarps;
      const int grid = need < 2 * d.sms ? need : 2 * d.sms;
      LAUNCH_PDL(fn, grid, kGThreads, smem, s, p);
    }
    return cudaGetLastError();
  }

  if (a.mode == 1 && (a.ldy[0] != a.w[0].m || a.ldy[1] != a.w[0].m)) return cudaErrorInvalidValue;
  for (int i = 0; i < n; i++) {
    const WeightRef& w = a.w[i];
    A8GemmParams p{qx, sx, a.nRows, k, static_cast<const uint8_t*>(w.q),
                   reinterpret_cast<const unsigned short*>(w.scales), w.m, a.y[i], a.ldy[i],
                   a.mode == 1 ? nullptr : a.res[i]};
    const dim3 grid((unsigned)((w.m + GN - 1) / GN), (unsigned)((a.nRows + GM - 1) / GM));
    if (grid.y > 65535) return cudaErrorInvalidValue;
    if (w.fmt == WF_I8) LAUNCH_PDL(a8_gemm_kernel<WF_I8>, grid, GT, 0, s, p);
    else LAUNCH_PDL(a8_gemm_kernel<WF_I4>, grid, GT, 0, s, p);
  }
  if (a.mode == 1) {
    return silu_mul(a.y[0], a.y[1], a.y[0], (int64_t)a.nRows * a.w[0].m, s);
  }
  return cudaGetLastError();
}

}  // namespace llama_ts
