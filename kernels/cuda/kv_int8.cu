// llama.ts CUDA backend: the int8 KV cache (write with per-(row, kv head) scales, split-K attention over
// it) and the device argmax used for greedy sampling. Contract: kernels.cuh. Semantics:
// src/backends/ref/ref_ops.ts (quantizeKvHead, readKv, argmaxRow).
//
// int8 KV: each cached (row, kv head) vector of headDim values is stored as int8 q with one f32 scale,
// scale = max|x| / 127, q = roundf(x * (1 / scale)) (half away from zero, f32 arithmetic exactly as the
// reference), scale 0 -> q = 0. Attention dequantizes in registers: q.k = (q . kq) * kScale and
// p * v = (p * vScale) * vq.
//
// Attention (the runtime's fallback since attention.cu's pipelined kernel reads int8 caches too, which was
// faster on the H100 in prefill and in decode; it remains for head dims that are not a multiple of 4, and
// as the A/B baseline under LLAMA_TS_KV8_ATTN=kv8). Design (any nTokens, headDim even <= 256): grid (nKvHeads * nSub, nTokens, nSplits), 128
// threads. A block takes GB q heads of one kv head for one row over its split of positions; split length
// L = ceil(ceil((pos+1)/32) / nSplits) * 32 is chosen per row from its position, so short contexts use few
// blocks with short ranges and long ones a full wave. Each of the 4 warps walks every 4th position, U
// positions at a time (all K/V words and scales of a batch in flight), lane l holding dims l, l+32, ... of
// the head, scores reduced with shuffles, an online softmax per (warp, head) in the log2 domain; the warps
// merge in shared memory. A row whose context fits in split 0 is written directly; otherwise partial
// (m, l, o) go to scratch and kv8_combine_kernel (grid (nHeads, nTokens)) merges them.
// In-kernel validation as attention.cu: unusable rows and block-table entries give NaN outputs.
#include "device_util.cuh"
#include <algorithm>
#include <climits>

namespace llama_ts {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxGB = 8;       // q heads per block
constexpr int kMaxDPL = 8;      // head dims per lane (headDim <= 256)
constexpr int kU = 4;           // positions per warp per batch
constexpr int kChunk = 32;      // split granularity (positions)
constexpr int kTargetBlocks = 528;
constexpr float kLog2e = 1.4426950408889634f;

struct Kv8Params {
  const float* q;
  const int8_t* cacheK;
  const int8_t* cacheV;
  const float* kScale;
  const float* vScale;
  float* out;
  float* ml;     // [nTokens][nHeads][nSplits][2]: (m, l), log2 domain
  float* opart;  // [nTokens][nHeads][nSplits][hd]
  StepDev st;
  int nTokens, nHeads, nKvHeads, hd, kvDim, G, GB, nSub, nSplits, blockSize, maxCtx;
  float scale2;  // scale * log2(e)
};

// Positions per split for a row at `pos` (same rule in both kernels).
__device__ __forceinline__ int split_len(int pos, int nSplits) {
  const int chunks = pos / kChunk + 1;
  return (chunks + nSplits - 1) / nSplits * kChunk;
}

__device__ __forceinline__ bool row_ok(const Kv8Params& p, int pos, int seq) {
  return pos >= 0 && pos < p.maxCtx && seq >= 0 && pos / p.blockSize < p.st.maxBlocksPerSeq;
}

// ---- KV write (optionally fused with RoPE of q and k) ----------------------------------------------------
// grid (nTokens, nHeads + 2 * nKvHeads); one head per block, lane j of the block holds pair j
// (rope pairs for q/k when rope, else adjacent elements (2j, 2j+1)); headDim / 2 <= 128.
__global__ void __launch_bounds__(kThreads) kv8_write_kernel(float* q, float* k, const float* __restrict__ v,
                                                            int nHeads, int nKvHeads, int headDim, int rope,
                                                            int style, const float* __restrict__ invFreq,
                                                            int8_t* cacheK, int8_t* cacheV, float* kScale,
                                                            float* vScale, int blockSize, StepDev st) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  extern __shared__ double tab[];
  __shared__ float sh[33];
  const int r = blockIdx.x, u = blockIdx.y, half = headDim / 2, j = threadIdx.x;
  const int kvDim = nKvHeads * headDim;
  const bool isQ = u < nHeads, isK = !isQ && u < nHeads + nKvHeads;
  if (rope && (isQ || isK)) {
    rope_table(tab, half, st.positions[r], invFreq);
    __syncthreads();
  }
  int i0 = 2 * j, i1 = 2 * j + 1;
  if (rope && (isQ || isK)) rope_index(style, j, half, i0, i1);
  float o0 = 0.f, o1 = 0.f;
  if (isQ) {
    if (j < half) rope_pair(q + ((size_t)r * nHeads + u) * headDim, i0, i1, tab[j], tab[half + j], o0, o1);
    return;  // q heads write no cache
  }
  const int h = isK ? u - nHeads : u - nHeads - nKvHeads;
  const size_t base = (size_t)r * kvDim + (size_t)h * headDim;
  if (j < half) {
    if (isK && rope) {
      rope_pair(k + base, i0, i1, tab[j], tab[half + j], o0, o1);
    } else {
      const float* src = isK ? k : v;
      o0 = src[base + i0];
      o1 = src[base + i1];
    }
  }
  const float amax = block_reduce<true>(fmaxf(fabsf(o0), fabsf(o1)), sh);
  const long long slot = kv_slot(st, r, blockSize);
  if (slot < 0 || j >= half) return;
  const float scale = amax / 127.f, inv = scale > 0.f ? 1.f / scale : 0.f;
  int8_t* c = (isK ? cacheK : cacheV) + slot * kvDim + (size_t)h * headDim;
  c[i0] = (int8_t)fmaxf(-127.f, fminf(127.f, roundf(o0 * inv)));
  c[i1] = (int8_t)fmaxf(-127.f, fminf(127.f, roundf(o1 * inv)));
  if (j == 0) (isK ? kScale : vScale)[slot * nKvHeads + h] = scale;
}

// ---- attention ------------------------------------------------------------------------------------------
__global__ void __launch_bounds__(kThreads) kv8_attn_kernel(const Kv8Params p) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  __shared__ float sM[kWarps][kMaxGB], sL[kWarps][kMaxGB];
  __shared__ float sO[kWarps][kMaxGB][kMaxDPL * 32];
  __shared__ int sBad;
  const int r = blockIdx.y, split = blockIdx.z, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = blockIdx.x / p.nSub, h0 = g * p.G + (blockIdx.x % p.nSub) * p.GB;
  const StepDev& st = p.st;
  const int pos = st.positions[r], seq = st.seqIndex[r];
  if (!row_ok(p, pos, seq)) return;  // the combine kernel (or nobody, for split 0) writes NaN
  const int L = split_len(pos, p.nSplits), t0 = split * L;
  if (t0 > pos) return;
  const int t1 = min(t0 + L, pos + 1), hd = p.hd, dpl = (hd + 31) / 32;
  if (threadIdx.x == 0) sBad = 0;

  float qv[kMaxGB][kMaxDPL], acc[kMaxGB][kMaxDPL], m[kMaxGB], l[kMaxGB];
#pragma unroll
  for (int h = 0; h < kMaxGB; h++) {
    m[h] = -INFINITY;
    l[h] = 0.f;
#pragma unroll
    for (int d = 0; d < kMaxDPL; d++) {
      const int e = d * 32 + lane;
      acc[h][d] = 0.f;
      qv[h][d] = (h < p.GB && d < dpl && e < hd) ? p.q[((size_t)r * p.nHeads + h0 + h) * hd + e] * p.scale2 : 0.f;
    }
  }
  __syncthreads();
  const int* bt = st.blockTables + (size_t)seq * st.maxBlocksPerSeq;
  for (int tb = t0 + warp; tb < t1; tb += kWarps * kU) {
    long long off[kU];
    float ks[kU], vs[kU];
    int8_t kq[kU][kMaxDPL], vq[kU][kMaxDPL];
#pragma unroll
    for (int u = 0; u < kU; u++) {
      const int t = tb + u * kWarps;
      off[u] = -1;
      if (t < t1) {
        const int phys = bt[t / p.blockSize];
        if (phys >= 0) off[u] = (long long)phys * p.blockSize + t % p.blockSize;
        else sBad = 1;
      }
      const bool ok = off[u] >= 0;
      ks[u] = ok ? p.kScale[off[u] * p.nKvHeads + g] : 0.f;
      vs[u] = ok ? p.vScale[off[u] * p.nKvHeads + g] : 0.f;
      const int8_t* kr = p.cacheK + (ok ? off[u] : 0) * p.kvDim + (size_t)g * hd;
      const int8_t* vr = p.cacheV + (ok ? off[u] : 0) * p.kvDim + (size_t)g * hd;
#pragma unroll
      for (int d = 0; d < kMaxDPL; d++) {
        const int e = d * 32 + lane;
        const bool in = ok && d < dpl && e < hd;
        kq[u][d] = in ? kr[e] : (int8_t)0;
        vq[u][d] = in ? vr[e] : (int8_t)0;
      }
    }
#pragma unroll
    for (int u = 0; u < kU; u++) {
      if (off[u] < 0) continue;  // warp-uniform
#pragma unroll
      for (int h = 0; h < kMaxGB; h++) {
        if (h >= p.GB) break;
        float s = 0.f;
#pragma unroll
        for (int d = 0; d < kMaxDPL; d++) s = fmaf(qv[h][d], (float)kq[u][d], s);
        s = warp_sum(s) * ks[u];
        const float mn = fmaxf(m[h], s), alpha = exp2f(m[h] - mn), w = exp2f(s - mn);
        m[h] = mn;
        l[h] = fmaf(l[h], alpha, w);
        const float wv = w * vs[u];
#pragma unroll
        for (int d = 0; d < kMaxDPL; d++) acc[h][d] = fmaf(acc[h][d], alpha, wv * (float)vq[u][d]);
      }
    }
  }
  // merge the warps
#pragma unroll
  for (int h = 0; h < kMaxGB; h++) {
    if (h >= p.GB) break;
    if (lane == 0) {
      sM[warp][h] = m[h];
      sL[warp][h] = l[h];
    }
#pragma unroll
    for (int d = 0; d < kMaxDPL; d++) sO[warp][h][d * 32 + lane] = acc[h][d];
  }
  __syncthreads();
  const bool bad = sBad != 0, final = pos < L;
  for (int idx = threadIdx.x; idx < p.GB * (hd + 1); idx += kThreads) {
    const int h = idx / (hd + 1), e = idx - h * (hd + 1);  // e == hd: the (m, l) entry
    float M = -INFINITY;
    for (int w = 0; w < kWarps; w++) M = fmaxf(M, sM[w][h]);
    float o = 0.f, ls = 0.f;
    for (int w = 0; w < kWarps; w++) {
      const float f = sM[w][h] == -INFINITY ? 0.f : exp2f(sM[w][h] - M);
      ls = fmaf(f, sL[w][h], ls);
      if (e < hd) o = fmaf(f, sO[w][h][(e / 32) * 32 + e % 32], o);
    }
    const size_t qh = (size_t)r * p.nHeads + h0 + h;
    if (final) {
      if (e < hd) p.out[qh * hd + e] = bad ? qnan() : o / ls;
    } else if (e < hd) {
      p.opart[(qh * p.nSplits + split) * hd + e] = o;
    } else {
      p.ml[2 * (qh * p.nSplits + split)] = M;
      p.ml[2 * (qh * p.nSplits + split) + 1] = bad ? qnan() : ls;
    }
  }
}

// grid (nHeads, nTokens): merges a row's splits when its context spans more than split 0.
__global__ void __launch_bounds__(kThreads) kv8_combine_kernel(const Kv8Params p) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  const int h = blockIdx.x, r = blockIdx.y, hd = p.hd;
  const int pos = p.st.positions[r], seq = p.st.seqIndex[r];
  const size_t qh = (size_t)r * p.nHeads + h;
  float* o = p.out + qh * hd;
  if (!row_ok(p, pos, seq)) {
    for (int e = threadIdx.x; e < hd; e += kThreads) o[e] = qnan();
    return;
  }
  const int L = split_len(pos, p.nSplits);
  if (pos < L) return;  // written by the attention kernel
  const int used = pos / L + 1;
  const float* ml = p.ml + 2 * qh * p.nSplits;
  float M = -INFINITY;
  for (int s = 0; s < used; s++) M = fmaxf(M, ml[2 * s]);
  float ls = 0.f;
  for (int s = 0; s < used; s++) ls += ml[2 * s] == -INFINITY ? 0.f : exp2f(ml[2 * s] - M) * ml[2 * s + 1];
  for (int e = threadIdx.x; e < hd; e += kThreads) {
    float acc = 0.f;
    for (int s = 0; s < used; s++) {
      if (ml[2 * s] == -INFINITY) continue;
      acc = fmaf(exp2f(ml[2 * s] - M), p.opart[(qh * p.nSplits + s) * hd + e], acc);
    }
    o[e] = acc / ls;  // NaN when a split saw an unusable block (its l is NaN)
  }
}

int splits_for(int blocksPerSplit, int maxCtx) {
  const int maxSplits = (maxCtx + kChunk - 1) / kChunk;
  return std::max(1, std::min(maxSplits, kTargetBlocks / std::max(1, blocksPerSplit)));
}

// ---- argmax ---------------------------------------------------------------------------------------------
// (best, bi) of the warp: the largest value, lowest index on ties; every lane gets it.
__device__ __forceinline__ void warp_argmax(float& best, int& bi) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(kFull, best, o);
    const int oi = __shfl_xor_sync(kFull, bi, o);
    if (ov > best || (ov == best && oi < bi)) {
      best = ov;
      bi = oi;
    }
  }
}

// grid (nRows), 1024 threads: out[r] = index of the max of row r (lowest on ties), -1 when it holds NaN.
__global__ void __launch_bounds__(1024) argmax_kernel(const float* __restrict__ x, int* out, int n) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  __shared__ float sv[32];
  __shared__ int si[32], sNan;
  const float* row = x + (size_t)blockIdx.x * n;
  if (threadIdx.x == 0) sNan = 0;
  __syncthreads();
  float best = -INFINITY;
  int bi = INT_MAX;
  bool nan = false;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = row[i];
    nan = nan || v != v;
    if (v > best || (bi == INT_MAX && v == best)) {  // first seen wins: i increases per thread
      best = v;
      bi = i;
    }
  }
  if (nan) sNan = 1;
  warp_argmax(best, bi);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = (blockDim.x + 31) / 32;
    best = lane < nw ? sv[lane] : -INFINITY;
    bi = lane < nw ? si[lane] : INT_MAX;
    warp_argmax(best, bi);
    if (lane == 0) out[blockIdx.x] = (sNan || bi == INT_MAX) ? -1 : bi;
  }
}

}  // namespace

// =====================================================================================================
// launchers
// =====================================================================================================
cudaError_t kv8_write(float* q, float* k, const float* v, int nTokens, int nHeads, int nKvHeads, int headDim,
                      int rope, int style, const float* invFreq, int8_t* cacheK, int8_t* cacheV, float* kScale,
                      float* vScale, int blockSize, StepDev st, cudaStream_t s) {
  if (nTokens < 0 || nHeads < 0 || nKvHeads <= 0 || headDim <= 0 || headDim % 2 || headDim > 2 * kThreads ||
      blockSize <= 0)
    return cudaErrorInvalidValue;
  if (!k || !v || !cacheK || !cacheV || !kScale || !vScale) return cudaErrorInvalidValue;
  if (rope && (!q || !invFreq || (style != ROPE_INTERLEAVED && style != ROPE_HALF))) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  const int heads = rope ? nHeads : 0;
  LAUNCH_PDL(kv8_write_kernel, dim3(nTokens, heads + 2 * nKvHeads), kThreads, headDim * sizeof(double), s, q, k, v,
             heads, nKvHeads, headDim, rope, style, invFreq, cacheK, cacheV, kScale, vScale, blockSize, st);
  return cudaSuccess;
}

size_t kv8_attention_scratch_bytes(int maxTokens, int nHeads, int headDim, int maxCtx) {
  size_t best = 0;
  for (int n = 1; n <= maxTokens; n++)  // fewest blocks per split (nKvHeads * nSub >= 1) -> most splits
    best = std::max(best, (size_t)n * nHeads * splits_for(n, maxCtx) * (headDim + 2) * sizeof(float));
  return best;
}

cudaError_t kv8_attention(const float* q, const int8_t* cacheK, const int8_t* cacheV, const float* kScale,
                          const float* vScale, float* out, int nTokens, int nHeads, int nKvHeads, int headDim,
                          float scale, int blockSize, int maxCtx, float* scratch, StepDev st, cudaStream_t s) {
  if (nTokens < 0 || nHeads <= 0 || nKvHeads <= 0 || nHeads % nKvHeads || blockSize <= 0 || maxCtx <= 0)
    return cudaErrorInvalidValue;
  if (headDim < 2 || headDim > 32 * kMaxDPL || headDim % 2) return cudaErrorInvalidValue;
  if (!q || !cacheK || !cacheV || !kScale || !vScale || !out || !scratch) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  Kv8Params p{};
  p.q = q;
  p.cacheK = cacheK;
  p.cacheV = cacheV;
  p.kScale = kScale;
  p.vScale = vScale;
  p.out = out;
  p.st = st;
  p.nTokens = nTokens;
  p.nHeads = nHeads;
  p.nKvHeads = nKvHeads;
  p.hd = headDim;
  p.kvDim = nKvHeads * headDim;
  p.G = nHeads / nKvHeads;
  p.GB = 1;
  for (int d = std::min(p.G, kMaxGB); d >= 1; d--) {
    if (p.G % d == 0) {
      p.GB = d;
      break;
    }
  }
  p.nSub = p.G / p.GB;
  p.blockSize = blockSize;
  p.maxCtx = maxCtx;
  p.scale2 = scale * kLog2e;
  const int headBlocks = nKvHeads * p.nSub;
  p.nSplits = splits_for(headBlocks * nTokens, maxCtx);
  p.ml = scratch;
  p.opart = scratch + (size_t)nTokens * nHeads * p.nSplits * 2;
  LAUNCH_PDL(kv8_attn_kernel, dim3(headBlocks, nTokens, p.nSplits), kThreads, 0, s, p);
  LAUNCH_PDL(kv8_combine_kernel, dim3(nHeads, nTokens), kThreads, 0, s, p);
  return cudaSuccess;
}

cudaError_t argmax_rows(const float* x, int* out, int nRows, int n, cudaStream_t s) {
  if (nRows < 0 || n <= 0 || !x || !out) return cudaErrorInvalidValue;
  if (nRows == 0) return cudaSuccess;
  LAUNCH_PDL(argmax_kernel, nRows, 1024, 0, s, x, out, n);
  return cudaSuccess;
}

}  // namespace llama_ts
