// llama.ts CUDA backend: embedding, RMSNorm, elementwise ops, row gather, RoPE and paged KV-cache writes
// (attention is in attention.cu). Contract: kernels.cuh. Semantics: src/backends/ref/ref_ops.ts.
//
// Per-step data (tokens, positions, seqIndex, logitRows, blockTables, maxBlocksPerSeq) is only ever read
// inside the kernels, from StepDev, so every launch here can be captured once in a CUDA graph and replayed
// with new step data. Grids depend only on nTokens/nRows, shapes and maxCtx.
//
// In-kernel validation (values that would otherwise corrupt or read out of bounds):
//   embed        token id outside [0, table.m)                  -> that output row is NaN
//   gather_rows  logitRows[i] < 0                                -> that output row is NaN
//                (the source row count is not passed, so ids >= rows cannot be detected)
//   kv_write,    pos < 0, seq < 0, pos/blockSize >= maxBlocksPerSeq or block-table entry < 0
//   rope_kv_write                                                -> that row's cache write is skipped
//                (the cache size is not passed, so a block id >= nBlocks cannot be detected)
//   attention    pos < 0, pos >= maxCtx, seq < 0 or pos/blockSize >= maxBlocksPerSeq -> row output NaN
//                block-table entry < 0 for a position t <= pos   -> that row's output is NaN (no load done)
//   rope         none needed (any position is computable)
//
#include "device_util.cuh"
#include <algorithm>
#include <climits>
#include <cstddef>

namespace llama_ts {
namespace {

// =====================================================================================================
// embed
// =====================================================================================================
__global__ void embed_kernel(WeightRef t, float* __restrict__ out, StepDev st) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  const int r = blockIdx.x, k = t.k;
  float* o = out + (size_t)r * k;
  const int id = st.tokens[r];
  const int i0 = blockIdx.y * blockDim.x + threadIdx.x, step = gridDim.y * blockDim.x;
  if (id < 0 || id >= t.m) {
    for (int i = i0; i < k; i += step) o[i] = qnan();
    return;
  }
  const size_t base = (size_t)id * k;
  switch (t.fmt) {
    case WF_F32:
      for (int i = i0; i < k; i += step) o[i] = static_cast<const float*>(t.q)[base + i];
      break;
    case WF_F16:
      for (int i = i0; i < k; i += step) o[i] = __half2float(static_cast<const __half*>(t.q)[base + i]);
      break;
    case WF_BF16:
      for (int i = i0; i < k; i += step)
        o[i] = __bfloat162float(static_cast<const __nv_bfloat16*>(t.q)[base + i]);
      break;
    case WF_I8: {
      const __half* sc = t.scales + (size_t)id * (k / t.group);
      const int8_t* q = static_cast<const int8_t*>(t.q) + base;
      for (int i = i0; i < k; i += step) o[i] = __half2float(sc[i / t.group]) * (float)q[i];
      break;
    }
    default: {  // WF_I4: byte j of each 16-byte block holds element j (low nibble) and j+16 (high nibble)
      const __half* sc = t.scales + (size_t)id * (k / t.group);
      const uint8_t* q = static_cast<const uint8_t*>(t.q) + base / 2;
      for (int i = i0; i < k; i += step) {
        const unsigned b = q[(i >> 5) * 16 + (i & 15)];
        const int nib = (i & 16) ? (int)(b >> 4) : (int)(b & 15u);
        o[i] = __half2float(sc[i / t.group]) * (float)(nib - 8);
      }
      break;
    }
  }
}

// =====================================================================================================
// rms_norm: out = w * (x * 1/sqrt(mean(x^2) + eps)); out may alias x.
// =====================================================================================================
template <bool kVec4>
__global__ void __launch_bounds__(256) rms_norm_kernel(const float* x, const float* __restrict__ w, float* out,
                                                       int n, float eps) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  __shared__ float sh[33];
  const size_t r = blockIdx.x;
  const float* xr = x + r * n;
  float* orow = out + r * n;
  float ss = 0.f;
  if (kVec4) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      const float4 v = x4[i];
      ss = fmaf(v.x, v.x, ss); ss = fmaf(v.y, v.y, ss); ss = fmaf(v.z, v.z, ss); ss = fmaf(v.w, v.w, ss);
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
  }
  ss = block_reduce<false>(ss, sh);
  const float inv = 1.0f / sqrtf(ss / (float)n + eps);
  if (kVec4) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* o4 = reinterpret_cast<float4*>(orow);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      const float4 v = x4[i], g = w4[i];
      o4[i] = make_float4(g.x * (inv * v.x), g.y * (inv * v.y), g.z * (inv * v.z), g.w * (inv * v.w));
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = w[i] * (inv * xr[i]);
  }
}

// =====================================================================================================
// add, silu_mul (out may alias an input)
// =====================================================================================================
__device__ __forceinline__ float silu_mul1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

template <int kOp>  // 0 add, 1 silu_mul
__global__ void ew_vec4_kernel(const float4* a, const float4* b, float4* o, int64_t n4) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
    const float4 x = a[i], y = b[i];
    float4 z;
    if (kOp == 0) {
      z = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    } else {
      z = make_float4(silu_mul1(x.x, y.x), silu_mul1(x.y, y.y), silu_mul1(x.z, y.z), silu_mul1(x.w, y.w));
    }
    o[i] = z;
  }
}
template <int kOp>
__global__ void ew_kernel(const float* a, const float* b, float* o, int64_t n) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    o[i] = kOp == 0 ? a[i] + b[i] : silu_mul1(a[i], b[i]);
  }
}

template <int kOp>
cudaError_t launch_ew(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  if (n % 4 == 0 && aligned(a, 16) && aligned(b, 16) && aligned(out, 16)) {
    const int64_t n4 = n / 4;
    const int blocks = (int)std::min<int64_t>((n4 + threads - 1) / threads, 132 * 16);
    LAUNCH_PDL(ew_vec4_kernel<kOp>, blocks, threads, 0, s, reinterpret_cast<const float4*>(a),
                                                   reinterpret_cast<const float4*>(b),
                                                   reinterpret_cast<float4*>(out), n4);
  } else {
    const int blocks = (int)std::min<int64_t>((n + threads - 1) / threads, 132 * 16);
    LAUNCH_PDL(ew_kernel<kOp>, blocks, threads, 0, s, a, b, out, n);
  }
  return cudaGetLastError();
}

// =====================================================================================================
// gather_rows
// =====================================================================================================
__global__ void gather_rows_kernel(const float* __restrict__ x, float* __restrict__ out, int n, StepDev st) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  const int i = blockIdx.x;
  const int row = st.logitRows[i];
  float* o = out + (size_t)i * n;
  const int j0 = blockIdx.y * blockDim.x + threadIdx.x, step = gridDim.y * blockDim.x;
  if (row < 0) {
    for (int j = j0; j < n; j += step) o[j] = qnan();
    return;
  }
  const float* src = x + (size_t)row * n;
  for (int j = j0; j < n; j += step) o[j] = src[j];
}

// =====================================================================================================
// RoPE and KV-cache writes
// =====================================================================================================
// grid (nTokens, ceil(nHeads / hpb)); dynamic smem: headDim doubles.
__global__ void rope_kernel(float* x, int ldx, int nHeads, int headDim, int style, const float* __restrict__ invFreq,
                            StepDev st, int hpb) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  extern __shared__ double tab[];
  const int r = blockIdx.x, half = headDim / 2;
  rope_table(tab, half, st.positions[r], invFreq);
  __syncthreads();
  const int h0 = blockIdx.y * hpb, nh = min(hpb, nHeads - h0);
  float* xr = x + (size_t)r * ldx + (size_t)h0 * headDim;
  for (int idx = threadIdx.x; idx < nh * half; idx += blockDim.x) {
    const int hh = idx / half, j = idx - hh * half;
    int i0, i1;
    rope_index(style, j, half, i0, i1);
    float o0, o1;
    rope_pair(xr + (size_t)hh * headDim, i0, i1, tab[j], tab[half + j], o0, o1);
  }
}

// grid (nTokens, ceil(kvDim / (blockDim * 4)))
template <typename T>
__global__ void kv_write_kernel(const float* __restrict__ k, const float* __restrict__ v, int kvDim, T* cacheK,
                                T* cacheV, int blockSize, StepDev st) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  const int r = blockIdx.x;
  const long long slot = kv_slot(st, r, blockSize);
  if (slot < 0) return;
  const float* kr = k + (size_t)r * kvDim;
  const float* vr = v + (size_t)r * kvDim;
  T* ck = cacheK + slot * kvDim;
  T* cv = cacheV + slot * kvDim;
  for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < kvDim; i += gridDim.y * blockDim.x) {
    ck[i] = to_cache<T>(kr[i]);
    cv[i] = to_cache<T>(vr[i]);
  }
}

// Fused rope(q) + rope(k) + kv_write(k, v). Units: nHeads q heads, nKvHeads k heads, nKvHeads v heads;
// grid (nTokens, ceil(units / upb)); dynamic smem: headDim doubles.
template <typename T>
__global__ void rope_kv_kernel(float* q, float* k, const float* __restrict__ v, int nHeads, int nKvHeads,
                               int headDim, int style, const float* __restrict__ invFreq, T* cacheK, T* cacheV,
                               int blockSize, StepDev st, int upb) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  extern __shared__ double tab[];
  const int r = blockIdx.x, half = headDim / 2, kvDim = nKvHeads * headDim;
  const int units = nHeads + 2 * nKvHeads;
  const int u0 = blockIdx.y * upb, nu = min(upb, units - u0);
  const long long slot = (u0 + nu > nHeads) ? kv_slot(st, r, blockSize) : -1;
  if (u0 < nHeads + nKvHeads) {
    rope_table(tab, half, st.positions[r], invFreq);
    __syncthreads();
  }
  float* qr = q + (size_t)r * nHeads * headDim;
  float* kr = k + (size_t)r * kvDim;
  const float* vr = v + (size_t)r * kvDim;
  for (int idx = threadIdx.x; idx < nu * half; idx += blockDim.x) {
    const int uu = idx / half, j = idx - uu * half, u = u0 + uu;
    if (u < nHeads) {
      int i0, i1;
      rope_index(style, j, half, i0, i1);
      float o0, o1;
      rope_pair(qr + (size_t)u * headDim, i0, i1, tab[j], tab[half + j], o0, o1);
    } else if (u < nHeads + nKvHeads) {
      const int kh = u - nHeads;
      int i0, i1;
      rope_index(style, j, half, i0, i1);
      float o0, o1;
      rope_pair(kr + (size_t)kh * headDim, i0, i1, tab[j], tab[half + j], o0, o1);
      if (slot >= 0) {
        T* c = cacheK + slot * kvDim + (size_t)kh * headDim;
        c[i0] = to_cache<T>(o0);
        c[i1] = to_cache<T>(o1);
      }
    } else if (slot >= 0) {
      const int vh = u - nHeads - nKvHeads;
      const size_t e = (size_t)vh * headDim + 2 * j;
      T* c = cacheV + slot * kvDim + e;
      c[0] = to_cache<T>(vr[e]);
      c[1] = to_cache<T>(vr[e + 1]);
    }
  }
}

}  // namespace

// =====================================================================================================
// launchers
// =====================================================================================================
cudaError_t embed(WeightRef t, float* out, int nTokens, StepDev st, cudaStream_t s) {
  if (nTokens < 0 || t.k <= 0 || t.m <= 0 || !t.q || !out) return cudaErrorInvalidValue;
  if (t.fmt < WF_F32 || t.fmt > WF_I4) return cudaErrorInvalidValue;
  if (t.fmt == WF_I8 || t.fmt == WF_I4) {
    if (!t.scales || t.group <= 0 || t.k % t.group != 0) return cudaErrorInvalidValue;
    if (t.fmt == WF_I4 && (t.k % 32 != 0 || t.group % 32 != 0)) return cudaErrorInvalidValue;
  }
  if (nTokens == 0) return cudaSuccess;
  const int threads = 256;
  const int gy = std::max(1, std::min(16, t.k / 1024));
  LAUNCH_PDL(embed_kernel, dim3(nTokens, gy), threads, 0, s, t, out, st);
  return cudaGetLastError();
}

cudaError_t rms_norm(const float* x, const float* w, float* out, int nRows, int n, float eps, cudaStream_t s) {
  if (nRows < 0 || n <= 0 || !x || !w || !out) return cudaErrorInvalidValue;
  if (nRows == 0) return cudaSuccess;
  if (n % 4 == 0 && aligned(x, 16) && aligned(w, 16) && aligned(out, 16))
    LAUNCH_PDL(rms_norm_kernel<true>, nRows, 256, 0, s, x, w, out, n, eps);
  else
    LAUNCH_PDL(rms_norm_kernel<false>, nRows, 256, 0, s, x, w, out, n, eps);
  return cudaGetLastError();
}

cudaError_t add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  return launch_ew<0>(a, b, out, n, s);
}

cudaError_t silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s) {
  return launch_ew<1>(gate, up, out, n, s);
}

cudaError_t gather_rows(const float* x, float* out, int nOut, int n, StepDev st, cudaStream_t s) {
  if (nOut < 0 || n <= 0 || !x || !out) return cudaErrorInvalidValue;
  if (nOut == 0) return cudaSuccess;
  const int gy = std::max(1, std::min(64, n / 2048));
  LAUNCH_PDL(gather_rows_kernel, dim3(nOut, gy), 256, 0, s, x, out, n, st);
  return cudaGetLastError();
}

cudaError_t rope(float* x, int ldx, int nTokens, int nHeads, int headDim, int style, const float* invFreq,
                 StepDev st, cudaStream_t s) {
  if (nTokens < 0 || nHeads <= 0 || headDim <= 0 || headDim % 2 || ldx < nHeads * headDim || !x || !invFreq)
    return cudaErrorInvalidValue;
  if (style != ROPE_INTERLEAVED && style != ROPE_HALF) return cudaErrorInvalidValue;
  if (headDim * sizeof(double) > 48 * 1024) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  const int half = headDim / 2;
  const int hpb = std::max(1, 512 / half);  // ~512 pairs per block
  const int gy = (nHeads + hpb - 1) / hpb;
  LAUNCH_PDL(rope_kernel, dim3(nTokens, gy), 256, headDim * sizeof(double), s, x, ldx, nHeads, headDim, style, invFreq,
                                                                        st, hpb);
  return cudaGetLastError();
}

cudaError_t kv_write(const float* k, const float* v, int nTokens, int kvDim, void* cacheK, void* cacheV, int kvFmt,
                     int blockSize, StepDev st, cudaStream_t s) {
  if (nTokens < 0 || kvDim <= 0 || blockSize <= 0 || !k || !v || !cacheK || !cacheV) return cudaErrorInvalidValue;
  if (kvFmt != KV_F32 && kvFmt != KV_F16) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  const int threads = 256;
  const int gy = std::max(1, std::min(16, kvDim / (threads * 4)));
  if (kvFmt == KV_F32)
    LAUNCH_PDL(kv_write_kernel<float>, dim3(nTokens, gy), threads, 0, s, k, v, kvDim, static_cast<float*>(cacheK),
                                                                 static_cast<float*>(cacheV), blockSize, st);
  else
    LAUNCH_PDL(kv_write_kernel<__half>, dim3(nTokens, gy), threads, 0, s, k, v, kvDim, static_cast<__half*>(cacheK),
                                                                  static_cast<__half*>(cacheV), blockSize, st);
  return cudaGetLastError();
}

cudaError_t rope_kv_write(float* q, float* k, const float* v, int nTokens, int nHeads, int nKvHeads, int headDim,
                          int style, const float* invFreq, void* cacheK, void* cacheV, int kvFmt, int blockSize,
                          StepDev st, cudaStream_t s) {
  if (nTokens < 0 || nHeads <= 0 || nKvHeads <= 0 || headDim <= 0 || headDim % 2 || blockSize <= 0)
    return cudaErrorInvalidValue;
  if (!q || !k || !v || !invFreq || !cacheK || !cacheV) return cudaErrorInvalidValue;
  if (style != ROPE_INTERLEAVED && style != ROPE_HALF) return cudaErrorInvalidValue;
  if (kvFmt != KV_F32 && kvFmt != KV_F16) return cudaErrorInvalidValue;
  if (headDim * sizeof(double) > 48 * 1024) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  const int half = headDim / 2;
  const int upb = std::max(1, 256 / half);  // ~256 pairs per block: one or two per thread
  const int units = nHeads + 2 * nKvHeads;
  const dim3 grid(nTokens, (units + upb - 1) / upb);
  const size_t smem = headDim * sizeof(double);
  if (kvFmt == KV_F32)
    LAUNCH_PDL(rope_kv_kernel<float>, grid, 128, smem, s, q, k, v, nHeads, nKvHeads, headDim, style, invFreq,
                                                  static_cast<float*>(cacheK), static_cast<float*>(cacheV),
                                                  blockSize, st, upb);
  else
    LAUNCH_PDL(rope_kv_kernel<__half>, grid, 128, smem, s, q, k, v, nHeads, nKvHeads, headDim, style, invFreq,
                                                   static_cast<__half*>(cacheK), static_cast<__half*>(cacheV),
                                                   blockSize, st, upb);
  return cudaGetLastError();
}

}  // namespace llama_ts
