// llama.ts CUDA backend: attention()'s host side and the combine kernel: the launch-time geometry (chunk,
// splits), attention_scratch_bytes(), attention() (validation, parameters, the choice between the decode
// kernel and the pipelined partial kernel) and attn_combine_kernel, which merges both paths' split partials.
// attention.cu's header describes the design; attention.cuh has what the attention files share.
#include "attention.cuh"
#include "device_util.cuh"
#include <algorithm>
#include <cstddef>

namespace llama_ts {
namespace {

#ifndef LLAMA_TS_ATTN_TARGET_BLOCKS
#define LLAMA_TS_ATTN_TARGET_BLOCKS 528  // 4 per SM of an H100
#endif
#ifndef LLAMA_TS_ATTN_CHUNK_BYTES
#define LLAMA_TS_ATTN_CHUNK_BYTES 8192  // bytes of K (and of V) per pipeline stage, about
#endif
constexpr int kTargetBlocks = LLAMA_TS_ATTN_TARGET_BLOCKS;  // split heuristic: about this many blocks
constexpr float kLog2e = 1.4426950408889634f;

// grid (nHeads, nTokens), 128 threads; dynamic smem: round_up(nSplits, 4) + 4 floats.
// Rows with pos < L were finished by the partial kernel; invalid rows are written NaN here.
__global__ void __launch_bounds__(kAttnThreads) attn_combine_kernel(const AttnParams p) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  extern __shared__ float wS[];
  __shared__ float sh[33];
  const int h = blockIdx.x, r = blockIdx.y, hd = p.hd, tid = threadIdx.x;
  const StepDev& st = p.st;
  float* o = p.out + ((size_t)r * p.nHeads + h) * hd;
  const int pos = st.positions[r], seq = st.seqIndex[r];
  if (!(pos >= 0 && pos < p.maxCtx && seq >= 0 && pos / p.blockSize < st.maxBlocksPerSeq)) {
    for (int d = tid; d < hd; d += blockDim.x) o[d] = qnan();
    return;
  }
  const int L = p.adaptive ? ((((pos >> p.logC) + 1) + p.nSplits - 1) / p.nSplits) << p.logC : p.L;
  if (pos < L) return;
  const int nv = pos / L + 1;  // splits holding a partial for this row
  const size_t e0 = ((size_t)r * p.nHeads + h) * p.nSplits;
  float M = -INFINITY;
  for (int s = tid; s < nv; s += blockDim.x) M = fmaxf(M, p.ml[2 * (e0 + s)]);
  M = block_reduce<true>(M, sh);
  float lsum = 0.f;
  for (int s = tid; s < nv; s += blockDim.x) {
    const float w = exp2f(p.ml[2 * (e0 + s)] - M);
    wS[s] = w;
    lsum += w * p.ml[2 * (e0 + s) + 1];
  }
  lsum = block_reduce<false>(lsum, sh);  // its barriers also publish wS
  const float inv = 1.0f / lsum;
  const float* op = p.opart + e0 * hd;
  for (int d = tid; d < hd; d += blockDim.x) {
    float a0 = 0.f, a1 = 0.f;
    int s = 0;
    for (; s + 1 < nv; s += 2) {
      a0 = fmaf(wS[s], op[(size_t)s * hd + d], a0);
      a1 = fmaf(wS[s + 1], op[(size_t)(s + 1) * hd + d], a1);
    }
    if (s < nv) a0 = fmaf(wS[s], op[(size_t)s * hd + d], a0);
    o[d] = (a0 + a1) * inv;
  }
}

// ---- launch-time geometry (shared by attention() and attention_scratch_bytes()) ------------------------
int attn_elem_bytes(int kvFmt) { return kvFmt == KV_F16 ? 2 : kvFmt == KV_I8 ? 1 : 4; }

int attn_chunk(int hd, int kvFmt) {  // positions per chunk: power of 2 in [32, 256]
  const int es = attn_elem_bytes(kvFmt);
  const int rb = (hd * es + 15) / 16 * 16;
  int c = 256;
  while (c > 32 && c * rb > LLAMA_TS_ATTN_CHUNK_BYTES) c >>= 1;
  return c;
}

// Splits over the context: about kTargetBlocks blocks for `units` blocks per split, each split a whole
// number of chunks.
void attn_splits(long long units, int chunk, int maxCtx, int* nSplits, int* L) {
  const int maxChunks = (maxCtx + chunk - 1) / chunk;
  units = std::max(1LL, units);
  long long want = (kTargetBlocks + units - 1) / units;
  want = std::max(1LL, std::min<long long>(want, maxChunks));
  const int cps = (int)((maxChunks + want - 1) / want);  // chunks per split
  *L = cps * chunk;
  *nSplits = (maxCtx + *L - 1) / *L;
}

}  // namespace

size_t attention_scratch_bytes(int maxTokens, int nHeads, int headDim, int maxCtx) {
  if (maxTokens <= 0 || nHeads <= 0 || headDim <= 0 || maxCtx <= 0) return 0;
  size_t best = 0;
  for (int fmt = KV_F32; fmt <= KV_I8; fmt++) {
    const int chunk = attn_chunk(headDim, fmt);
    for (int n = 1; n <= maxTokens; n++) {
      // fewest blocks per split any head grouping can give (a block holds at most kQnMax query vectors),
      // hence the most splits attention() can choose for n rows
      int ns, L;
      attn_splits(((long long)n * nHeads + kQnMax - 1) / kQnMax, chunk, maxCtx, &ns, &L);
      if (n == 1) ns = (maxCtx + 31) / 32;  // single-row launches: up to one split per 32 positions
      best = std::max(best, (size_t)n * nHeads * ns * (headDim + 2) * sizeof(float));
    }
  }
  return best;
}

cudaError_t attention(const float* q, const void* cacheK, const void* cacheV, int kvFmt, float* out, int nTokens,
                      int nHeads, int nKvHeads, int headDim, float scale, int blockSize, int maxCtx, float* scratch,
                      StepDev st, cudaStream_t s, bool rowsOwnSeq, const float* kScale, const float* vScale,
                      const AttnRope* rope) {
  if (nTokens < 0 || nHeads <= 0 || nKvHeads <= 0 || nHeads % nKvHeads || blockSize <= 0 || maxCtx <= 0)
    return cudaErrorInvalidValue;
  if (headDim < 2 || headDim > 256 || headDim % 2) return cudaErrorInvalidValue;
  if (kvFmt != KV_F32 && kvFmt != KV_F16 && kvFmt != KV_I8) return cudaErrorInvalidValue;
  if (kvFmt == KV_I8 && (!kScale || !vScale)) return cudaErrorInvalidValue;
  if (kvFmt == KV_I8 && headDim % 4) return cudaErrorNotSupported;  // rows narrower than a 4-byte copy
  if (!q || !cacheK || !cacheV || !out || !scratch) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  AttnParams p{};
  const int es = attn_elem_bytes(kvFmt);
  p.q = q;
  p.kScale = kScale;
  p.vScale = vScale;
  p.cacheK = static_cast<const char*>(cacheK);
  p.cacheV = static_cast<const char*>(cacheV);
  p.out = out;
  p.st = st;
  p.nTokens = nTokens;
  p.nHeads = nHeads;
  p.nKvHeads = nKvHeads;
  p.hd = headDim;
  p.kvDim = nKvHeads * headDim;
  p.G = nHeads / nKvHeads;
  p.nSub = (p.G + kQnMax - 1) / kQnMax;
  p.GB = (p.G + p.nSub - 1) / p.nSub;
  p.R = std::max(1, kQnMax / p.GB);
  p.C = attn_chunk(headDim, kvFmt);
  p.logC = 0;
  while ((1 << p.logC) < p.C) p.logC++;
  // blocks per split: head blocks x row groups (at least; decode rows of different sequences are more)
  attn_splits((long long)p.nKvHeads * p.nSub * ((nTokens + p.R - 1) / p.R), p.C, maxCtx, &p.nSplits, &p.L);
  p.adaptive = nTokens == 1;
  p.stages = (p.adaptive || p.L > p.C) ? 2 : 1;
  p.maxCtx = maxCtx;
  p.blockSize = blockSize;
  p.NP = (headDim * es + 15) / 16;
  const int qnCap = std::min(p.R, nTokens) * p.GB;
  p.DS = 1;  // threads per score: fill the block when there are few scores per chunk (decode)
  while (p.DS < 8 && p.DS * 2 <= p.NP && (long long)qnCap * p.C * p.DS * 2 <= kAttnThreads) p.DS *= 2;
  p.KSTR = p.NP * 16 + 16 * p.DS;  // padding keeps the DS-split score reads free of bank conflicts
  p.scale2 = scale * kLog2e;
  const size_t rowBytes = (size_t)headDim * es, kvRowBytes = (size_t)p.kvDim * es;
  p.cpw = 16;
  while (p.cpw > 4 && (rowBytes % p.cpw || kvRowBytes % p.cpw || !aligned(cacheK, p.cpw) || !aligned(cacheV, p.cpw)))
    p.cpw >>= 1;
  if (rowBytes % p.cpw || kvRowBytes % p.cpw || !aligned(cacheK, p.cpw) || !aligned(cacheV, p.cpw) ||
      !aligned(q, 4))
    return cudaErrorInvalidValue;
  p.ml = scratch;  // p.opart is placed by launch_attn once nSplits is final
  const bool decodeKernel = kvFmt != KV_I8 && (nTokens == 1 || (rowsOwnSeq && nTokens <= kDecMaxRows)) &&
                            p.nSub == 1 && p.G <= 4 && p.cpw == 16 && (headDim == 64 || headDim == 128);
  const bool fuse = decodeKernel && attn_fuse_enabled();
  if (rope != nullptr) {
    if (!fuse) return cudaErrorNotSupported;
    if (!rope->k || !rope->v || !rope->invFreq || (rope->style != ROPE_INTERLEAVED && rope->style != ROPE_HALF))
      return cudaErrorInvalidValue;
    p.ropeK = rope->k;
    p.ropeV = rope->v;
    p.invFreq = rope->invFreq;
    p.ropeStyle = rope->style;
  }
  cudaError_t e;
  bool merged = false;
  if (decodeKernel) {
    p.adaptive = 1;  // splits sized in-kernel from each row's position
    e = attn_decode_launch(p, kvFmt, fuse, s, &merged);
    if (e != cudaSuccess || merged) return e;  // merged: no combine kernel
  } else if (kvFmt == KV_I8) {
    e = headDim == 64    ? launch_attn<int8_t, 64, 1>(p, qnCap, s)
        : headDim == 128 ? launch_attn<int8_t, 128, 1>(p, qnCap, s)
                         : launch_attn<int8_t, 0, 2>(p, qnCap, s);
  } else if (kvFmt == KV_F16) {
    e = headDim == 64    ? launch_attn<__half, 64, 1>(p, qnCap, s)
        : headDim == 128 ? launch_attn<__half, 128, 2>(p, qnCap, s)
                         : launch_attn<__half, 0, 4>(p, qnCap, s);
  } else {
    e = headDim == 64    ? launch_attn<float, 64, 2>(p, qnCap, s)
        : headDim == 128 ? launch_attn<float, 128, 4>(p, qnCap, s)
                         : launch_attn<float, 0, 8>(p, qnCap, s);
  }
  if (e != cudaSuccess) return e;
  // both paths: rows whose context spans several splits are merged here
  const size_t csmem = ((size_t)p.nSplits + 3) / 4 * 16 + 16;
  LAUNCH_PDL(attn_combine_kernel, dim3(p.nHeads, p.nTokens), kAttnThreads, csmem, s, p);
  return cudaGetLastError();
}

}  // namespace llama_ts
