// Prefill GEMM of the llama.ts CUDA backend (contract: kernels.cuh).
//   y[r*ldy + j] = (res ? res[r*ldy + j] : 0) + sum_i x[r*ldx + i] * W[j, i]
//
// Kernels:
//  * gemm_tc_kernel (gemm_tc.cu, with its design notes and requirements): tensor cores (mma.sync m16n8k16,
//    f16 x f16 -> f32 accumulate) for WF_F16 / WF_BF16 / WF_I8 / WF_I4; A from f32 x ("x32") or from the
//    f16 copy of x that x_to_f16_kernel (here) writes into the workspace ("xh"); split-K partial sums are
//    added by splitk_reduce_kernel (here).
//  * gemm_simple_kernel: plain f32 SIMT tiled kernel (64 x 64 tile, 4 x 4 per thread), every format, any
//    k / ldx / alignment. Runs WF_F32 weights (keeps f32 precision: f32 x, f32 weights, f32 FMA
//    accumulation) and is the fallback / reference path.
//
// Workspace: gemm_workspace_bytes(w, maxRows) = maxRows * round_up(k, 8) * 2 bytes (the f16 copy of x)
// for non-f32 formats, 0 for WF_F32. gemm() must then be called with nRows <= maxRows. A null workspace
// is allowed (mode x32, ~0-15% slower).
//
// Test hooks (not part of kernels.cuh; declared by checks/gemm_check.cuh):
//   gemm_set_path(p): 0 = auto (default), 1 = force SIMT kernel; tensor-core variants (used when usable,
//     else auto): 2 = x32 3-stage (2 blocks/SM), 3 = x32 4-stage (1 block/SM), 4 = xh 3-stage,
//     5 = xh 4-stage (2 blocks/SM). Auto: 5 with a workspace, else 3 when the grid is at most one block
//     per SM, else 2. Env LLAMA_TS_GEMM_SIMPLE=1 forces 1 at start.
//   gemm_path_for(x, ldx, nRows, w, workspace): the path gemm() would take now.
//   gemm_set_skip_dead(on): warps of the tensor-core kernel whose 16-row fragments lie past nRows skip
//     their ldmatrix/mma (default on; env LLAMA_TS_GEMM_NO_SKIP=1 turns it off at start, for A/B runs).
//   gemm_set_max_splits(n) / env LLAMA_TS_GEMM_MAX_SPLITS: most split-K ways (1..8, default 8);
//   gemm_splits_for(nRows, w): the ways a tensor-core GEMM with a workspace would split k now.
#include "kernels.cuh"
#include "gemm_tc.cuh"
#include "device_util.cuh"

#include <algorithm>
#include <cstdlib>

namespace llama_ts {
namespace {

// ---------------------------------------------------------------------------------------------------------
// SIMT f32 kernel (any format, any shape / alignment)
// ---------------------------------------------------------------------------------------------------------
constexpr int SB_M = 64, SB_N = 64, SB_K = 16;

template <int FMT>
__device__ __forceinline__ float load_w(const void* __restrict__ wq, const __half* __restrict__ wsc, int group, int k,
                                        int j, int i) {
  const size_t o = (size_t)j * k + i;
  if constexpr (FMT == WF_F32) {
    return static_cast<const float*>(wq)[o];
  } else if constexpr (FMT == WF_F16) {
    return __half2float(static_cast<const __half*>(wq)[o]);
  } else if constexpr (FMT == WF_BF16) {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(wq)[o]);
  } else {
    const float s = __half2float(wsc[(size_t)j * (k / group) + i / group]);
    if constexpr (FMT == WF_I8) {
      return s * (float)static_cast<const int8_t*>(wq)[o];
    } else {
      const uint8_t* row = static_cast<const uint8_t*>(wq) + (size_t)j * (k / 2);
      const int e = i & 31;
      const int b = row[(i >> 5) * 16 + (e & 15)];
      const int nib = e < 16 ? (b & 15) : (b >> 4);
      return s * (float)(nib - 8);
    }
  }
}

template <int FMT>
__global__ void __launch_bounds__(256) gemm_simple_kernel(const float* __restrict__ x, int ldx, int nRows,
                                                          const void* __restrict__ wq, const __half* __restrict__ wsc,
                                                          int group, int m, int k, float* y, int ldy,
                                                          const float* res) {
  __shared__ float As[SB_K][SB_M + 4];
  __shared__ float Bs[SB_K][SB_N + 4];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int r0 = blockIdx.x * SB_M, n0 = blockIdx.y * SB_N;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.f;
  for (int k0 = 0; k0 < k; k0 += SB_K) {
    for (int e = tid; e < SB_M * SB_K; e += 256) {
      const int rr = e / SB_K, kk = e % SB_K;
      const int gk = k0 + kk;
      const int gr = r0 + rr, gn = n0 + rr;
      As[kk][rr] = (gr < nRows && gk < k) ? x[(size_t)gr * ldx + gk] : 0.f;
      Bs[kk][rr] = (gn < m && gk < k) ? load_w<FMT>(wq, wsc, group, k, gn, gk) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < SB_K; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) {
        a[i] = As[kk][ty + 16 * i];
        b[i] = Bs[kk][tx + 16 * i];
      }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = r0 + ty + 16 * i;
    if (r >= nRows) continue;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int c = n0 + tx + 16 * j;
      if (c < m) {
        const size_t o = (size_t)r * ldy + c;
        y[o] = (res ? res[o] : 0.f) + acc[i][j];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------------------
int g_path = -1;  // -1: not read yet; see gemm_set_path
int g_skip = -1;  // -1: not read yet; env LLAMA_TS_GEMM_NO_SKIP=1 turns the dead-row mma skip off (A/B)

int skip_setting() {
  if (g_skip < 0) {
    const char* e = std::getenv("LLAMA_TS_GEMM_NO_SKIP");
    g_skip = (e && e[0] && e[0] != '0') ? 0 : 1;
  }
  return g_skip;
}

int path_setting() {
  if (g_path < 0) {
    const char* e = std::getenv("LLAMA_TS_GEMM_SIMPLE");
    g_path = (e && e[0] && e[0] != '0') ? 1 : 0;
  }
  return g_path;
}

// Paths: 1 = SIMT; tensor-core variants (A from f32 x, or from the f16 copy of x in the workspace):
struct Variant {
  int S, minBlocks;
  bool ah;
};
constexpr Variant kVariants[6] = {{0, 0, false}, {0, 0, false}, {3, 2, false},
                                  {4, 1, false}, {3, 2, true},  {4, 2, true}};

bool is_quant(int fmt) { return fmt == WF_I8 || fmt == WF_I4; }

// Layout usable at all (by the SIMT kernel).
bool valid_layout(const WeightRef& w) {
  if (w.fmt < WF_F32 || w.fmt > WF_I4 || !w.q) return false;
  if (is_quant(w.fmt)) {
    if (!w.scales || w.group <= 0 || w.k % w.group != 0) return false;
    if (w.fmt == WF_I4 && w.k % 32 != 0) return false;
  }
  return true;
}

// W side of the tensor-core kernel.
bool w_tc_ok(const WeightRef& w) {
  if (w.fmt == WF_F32 || w.k <= 0 || !aligned(w.q, 16)) return false;
  if (is_quant(w.fmt)) return w.k % 32 == 0 && w.group % 32 == 0 && w.k % w.group == 0 && aligned(w.scales, 2);
  return w.k % 8 == 0;
}
// A from f32 x (paths 2, 3): x 16-byte aligned, ldx % 4 == 0.
bool x_f32_ok(const float* x, int ldx) { return aligned(x, 16) && ldx % 4 == 0; }

// The current device's properties, all zero when they cannot be read.
DeviceProps dev_info() {
  DeviceProps d;
  if (device_props(d) != cudaSuccess) d = DeviceProps{};
  return d;
}

int choose_path(const float* x, int ldx, int nRows, const WeightRef& w, const void* workspace) {
  const int ps = path_setting();
  if (ps == 1 || !w_tc_ok(w)) return 1;
  const bool ahOk = workspace && aligned(workspace, 16);
  const bool f32Ok = x_f32_ok(x, ldx);
  const DeviceProps d = dev_info();
  const long blocks = (long)((nRows + BM - 1) / BM) * ((w.m + BN - 1) / BN);
  // preference order: a forced variant first (if usable), then the defaults
  int cand[5];
  int nc = 0;
  if (ps >= 2 && ps <= 5) cand[nc++] = ps;
  if (ahOk) {
    cand[nc++] = 5;
    cand[nc++] = 4;
  }
  // f32-x variants: a single wave of blocks runs better with the deeper pipeline
  cand[nc++] = blocks <= d.sms ? 3 : 2;
  cand[nc++] = blocks <= d.sms ? 2 : 3;
  for (int i = 0; i < nc; i++) {
    const int p = cand[i];
    if (kVariants[p].ah ? !ahOk : !f32Ok) continue;
    if (tc_smem_for(p, w.fmt) <= d.smemOptin) return p;  // e.g. sm_86/sm_89 (99 KB) skip the larger ones
  }
  return 1;
}

// xh[r*k + i] = f16(x[r*ldx + i]) (round to nearest), k % 8 == 0; one thread per 8 elements.
__global__ void __launch_bounds__(256) x_to_f16_kernel(const float* __restrict__ x, int ldx, int nRows, int k,
                                                       __half* __restrict__ xh, int vec) {
  const int cpr = k >> 3;
  const size_t n = (size_t)nRows * cpr;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cpr;
    const int c = (int)(i - r * cpr) * 8;
    const float* src = x + r * ldx + c;
    float v[8];
    if (vec) {
      const float4 a = reinterpret_cast<const float4*>(src)[0];
      const float4 b = reinterpret_cast<const float4*>(src)[1];
      v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
      v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = src[e];
    }
    reinterpret_cast<uint4*>(xh)[i] =
        make_uint4(pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]), pack_f16x2(v[4], v[5]), pack_f16x2(v[6], v[7]));
  }
}

// y[r*ldy + c] = (res ? res[r*ldy + c] : 0) + sum_z part[z][r][c], z in order (deterministic).
__global__ void __launch_bounds__(256) splitk_reduce_kernel(const float* __restrict__ part, int splits, int nRows,
                                                            int m, float* y, int ldy, const float* res) {
  const size_t n = (size_t)nRows * m;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / m, c = i - r * m;
    float acc = res ? res[r * ldy + c] : 0.f;
    for (int z = 0; z < splits; z++) acc += part[(size_t)z * n + i];
    y[r * ldy + c] = acc;
  }
}

// Split-K for decode-sized batches: with at most kSplitMaxRows rows a GEMM has one row of 128 x 128 tiles,
// e.g. 32 blocks for a 4096-wide weight on 132 SMs; splitting k fills the GPU. Used on the f16-x path
// (it needs the workspace for the partial sums) when a grid has fewer blocks than SMs.
// Up to 8 splits: a 4096-wide weight then has 256 blocks, two resident per SM (path 5), so each SM keeps two
// blocks' cp.async stages of weights in flight; with 4 splits (128 blocks, one per SM) a 9..64-row int8
// GEMM streamed its weights at ~0.5 TB/s (latency-bound: two 4 KB stages in flight per SM).
constexpr int kSplitMaxRows = BM;
constexpr int kMaxSplits = 8;  // workspace sizing; the setting below may lower it
constexpr int kMinTilesPerSplit = 8;
int g_maxSplits = -1;  // -1: not read yet; env LLAMA_TS_GEMM_MAX_SPLITS (1..8) for A/B runs

int max_splits_setting() {
  if (g_maxSplits < 0) {
    const char* e = std::getenv("LLAMA_TS_GEMM_MAX_SPLITS");
    const int v = e ? std::atoi(e) : 0;
    g_maxSplits = v >= 1 && v <= kMaxSplits ? v : kMaxSplits;
  }
  return g_maxSplits;
}

int splits_for(int nRows, const WeightRef& w) {
  const long blocks = (long)((w.m + BN - 1) / BN);
  const int sms = dev_info().sms;
  if (nRows > kSplitMaxRows || blocks >= sms) return 1;
  const int T = (w.k + BK - 1) / BK;
  const int cap = max_splits_setting();
  int sp = 1;
  while (sp < cap && blocks * (sp + 1) <= 2L * sms && T / (sp + 1) >= kMinTilesPerSplit) sp++;
  return sp;
}

size_t xh_bytes(int rows, int k) { return ((size_t)rows * (size_t)((k + 7) / 8 * 8) * sizeof(__half) + 255) / 256 * 256; }

cudaError_t launch_simple(const float* x, int ldx, int nRows, const WeightRef& w, float* y, int ldy,
                          const float* res, cudaStream_t s) {
  const dim3 grid((unsigned)((nRows + SB_M - 1) / SB_M), (unsigned)((w.m + SB_N - 1) / SB_N));
  const int group = is_quant(w.fmt) ? w.group : 1;
  switch (w.fmt) {
    case WF_F32: gemm_simple_kernel<WF_F32><<<grid, 256, 0, s>>>(x, ldx, nRows, w.q, w.scales, group, w.m, w.k, y, ldy, res); break;
    case WF_F16: gemm_simple_kernel<WF_F16><<<grid, 256, 0, s>>>(x, ldx, nRows, w.q, w.scales, group, w.m, w.k, y, ldy, res); break;
    case WF_BF16: gemm_simple_kernel<WF_BF16><<<grid, 256, 0, s>>>(x, ldx, nRows, w.q, w.scales, group, w.m, w.k, y, ldy, res); break;
    case WF_I8: gemm_simple_kernel<WF_I8><<<grid, 256, 0, s>>>(x, ldx, nRows, w.q, w.scales, group, w.m, w.k, y, ldy, res); break;
    case WF_I4: gemm_simple_kernel<WF_I4><<<grid, 256, 0, s>>>(x, ldx, nRows, w.q, w.scales, group, w.m, w.k, y, ldy, res); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

void gemm_set_path(int p) { g_path = (p >= 0 && p <= 5) ? p : 0; }
void gemm_set_skip_dead(int on) { g_skip = on ? 1 : 0; }
void gemm_set_max_splits(int n) { g_maxSplits = n >= 1 && n <= kMaxSplits ? n : kMaxSplits; }
int gemm_splits_for(int nRows, const WeightRef& w) { return splits_for(nRows, w); }

int gemm_path_for(const float* x, int ldx, int nRows, const WeightRef& w, const void* workspace) {
  return choose_path(x, ldx, nRows, w, workspace);
}

// f16 copy of x (maxRows x k) for the tensor-core path; float weights (f32) need none.
// plus, where split-K can apply (fewer 128-wide column blocks than SMs), room for kMaxSplits partial sums of
// up to kSplitMaxRows rows.
// Decode batches of per-channel int8 weights instead use gemm_rows.cu's partial sums after the same offset.
size_t gemm_workspace_bytes(const WeightRef& w, int maxRows) {
  if (w.fmt == WF_F32 || w.k <= 0 || maxRows <= 0) return 0;
  size_t part = 0;
  if ((w.m + BN - 1) / BN < dev_info().sms)
    part = (size_t)kMaxSplits * (size_t)std::min(maxRows, kSplitMaxRows) * (size_t)w.m * sizeof(float);
  return xh_bytes(maxRows, w.k) + std::max(part, gemm_rows_workspace_bytes(w, maxRows));
}

cudaError_t gemm(const float* x, int ldx, int nRows, WeightRef w, float* y, int ldy, const float* res,
                 void* workspace, cudaStream_t s) {
  if (nRows <= 0 || w.m <= 0) return cudaSuccess;
  if (!x || !y || w.k < 0 || ldx < 0 || ldy < 0 || !valid_layout(w)) return cudaErrorInvalidValue;
  if (workspace && aligned(workspace, 16) && gemm_rows_usable(x, ldx, nRows, w)) {
    // decode batch, per-channel int8: weights streamed once into mma fragments (gemm_rows.cu), then the
    // k-range partial sums added in order (+ res); the partial sums go at the workspace's start
    return gemm_rows(x, ldx, nRows, w, y, ldy, res, workspace, s);
  }
  const int path = choose_path(x, ldx, nRows, w, workspace);
  if (path == 1) return launch_simple(x, ldx, nRows, w, y, ldy, res, s);
  TcArgs a;
  a.x = x;
  a.xh = static_cast<const __half*>(workspace);
  a.ldx = ldx;
  a.nRows = nRows;
  a.wq = w.q;
  a.wsc = w.scales;
  a.group = is_quant(w.fmt) ? w.group : 32;
  a.m = w.m;
  a.k = w.k;
  a.y = y;
  a.ldy = ldy;
  a.res = res;
  a.vec2 = (ldy % 2 == 0) && aligned(y, 8) && (!res || aligned(res, 8));
  a.skipDead = skip_setting();
  a.splits = kVariants[path].ah ? splits_for(nRows, w) : 1;
  a.part = a.splits > 1 ? reinterpret_cast<float*>(static_cast<char*>(workspace) + xh_bytes(nRows, w.k)) : nullptr;
  if (kVariants[path].ah) {
    const size_t chunks = (size_t)nRows * (w.k / 8);
    const unsigned blocks = (unsigned)std::min<size_t>((chunks + 255) / 256, 8192);
    x_to_f16_kernel<<<blocks, 256, 0, s>>>(x, ldx, nRows, w.k, static_cast<__half*>(workspace),
                                           x_f32_ok(x, ldx) ? 1 : 0);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  cudaError_t e;
  switch (path) {
    case 2: e = launch_tc_fmt<3, 2, false>(a, w.fmt, s); break;
    case 3: e = launch_tc_fmt<4, 1, false>(a, w.fmt, s); break;
    case 4: e = launch_tc_fmt<3, 2, true>(a, w.fmt, s); break;
    default: e = launch_tc_fmt<4, 2, true>(a, w.fmt, s); break;
  }
  if (e != cudaSuccess || a.splits == 1) return e;
  const size_t n = (size_t)nRows * w.m;
  const unsigned blocks = (unsigned)std::min<size_t>((n + 255) / 256, 4096);
  splitk_reduce_kernel<<<blocks, 256, 0, s>>>(a.part, a.splits, nRows, w.m, y, ldy, res);
  return cudaGetLastError();
}

}  // namespace llama_ts
