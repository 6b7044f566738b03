// llama.ts CUDA backend: the register decode attention kernel (attention.cu's header describes both
// attention paths; attention() chooses this one for one row, or up to kDecMaxRows decode rows of distinct
// sequences, at headDim 64/128 with at most 4 q heads per kv head).
#include "attention.cuh"
#include "device_util.cuh"
#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace llama_ts {
namespace {

// ---- decode kernel (one row, or decode rows of distinct sequences; headDim 64/128, <= 4 q heads per kv
// head, 16-byte aligned cache rows): K and V rows go straight from global memory into registers (16-byte loads; a batch of U K
// rows and U V rows in flight per lane), q stays in registers, a row's score is reduced over its LPR lanes
// with shuffles, and each row group (LPR lanes) keeps its own online softmax; the RPB row groups are merged
// once at the end. Same splits (adaptive rule) and scratch layout as attn_partial_kernel.
// Fusions (unless LLAMA_TS_ATTN_FUSE=0), each of which saves a dependent launch in a decode step:
//   * the splits of a row merge in-kernel: each split writes its partial, fences and counts itself in
//     g_dec_counters; the last of the row's splits merges them (the combine kernel's arithmetic) and resets
//     the count. Rows of one split write their output directly, as before; invalid rows get NaN from split 0.
//   * with AttnParams.ropeK (attention()'s AttnRope) the kernel does rope_kv_write's work: every block rotates
//     its q heads in registers (RoPE table in shared memory, the reference's double-precision math), and the
//     block whose split ends at the row's position rotates k and writes the row's K and V to the cache
//     before it reads the row back (K/V are read through L2, __ldcg, so the write is seen).
// Measured on the H100: bench/RESULTS.md (2026-11-26).
// grid (nKvHeads / HG, nTokens, nSplits), 128 threads.
constexpr int kDecWindow = 256;  // positions whose cache-row offsets are held in shared memory at a time
constexpr int kDecChunk = 32;    // split granularity (positions)

#ifndef LLAMA_TS_DEC_ROW_BYTES
// Contiguous bytes of a cache row one decode block reads (HG adjacent kv heads). Both 256 (HG = 1 for f16
// headDim 128) and 1024 pass ops_check and the sanitizers; on an H100 1024 was ~7% slower (32/32/128 f16,
// pos 4095: 34.5 vs 32.3 us), so the default is 256.
#define LLAMA_TS_DEC_ROW_BYTES 256
#endif

template <typename T, int HD>
struct DecGeom {
  static constexpr int ES = (int)sizeof(T), VE = 16 / ES, LPR = HD * ES / 16;  // lanes per head slice
  static constexpr int NG = kAttnThreads / LPR;  // (row slot, kv head) lane groups per block
};

template <typename T, int HD, int GBT>
size_t attn_decode_smem() {
  using Gm = DecGeom<T, HD>;
  // slot offsets, lane-group accumulators and (m, l), sBad and the last-split flag, RoPE table (HD doubles)
  return (size_t)kDecWindow * 8 + (size_t)Gm::NG * GBT * (HD + 2) * 4 + 16 + (size_t)HD * 8;
}

// Per (row, head block) arrival counts of the splits that hold partials (the in-kernel merge); zero between
// launches (the last arrival resets its count). Launches on the runtime's stream are serialized, so one
// array serves every layer. kDecMaxRows rows x up to kDecMaxHeadBlocks head blocks.
constexpr int kDecMaxHeadBlocks = 256;
__device__ unsigned g_dec_counters[kDecMaxRows * kDecMaxHeadBlocks];



template <typename T, int HD, int GBT>
__global__ void __launch_bounds__(kAttnThreads, 1) attn_decode_kernel(const AttnParams p) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  using Gm = DecGeom<T, HD>;
  constexpr int ES = Gm::ES, VE = Gm::VE, LPR = Gm::LPR, NG = Gm::NG;
  constexpr int U = GBT >= 4 ? 4 : 8;  // rows per lane per batch: U K and U V loads in flight together
  constexpr int W = kDecWindow;
  extern __shared__ __align__(16) unsigned char smem[];
  long long* slotS = reinterpret_cast<long long*>(smem);  // [W] element offset of the row, -1 unusable
  float* red = reinterpret_cast<float*>(smem + W * 8);     // [NG][GBT][HD] per lane-group accumulators
  float* mR = red + NG * GBT * HD;                         // [NG][GBT] lane-group max (log2 domain)
  float* lR = mR + NG * GBT;                               // [NG][GBT] lane-group sum
  int* sBad = reinterpret_cast<int*>(lR + NG * GBT);       // first position with an unusable block
  int* sLast = sBad + 1;                                   // in-kernel merge: this block merges
  double* tab = reinterpret_cast<double*>(smem + W * 8 + (size_t)NG * GBT * (HD + 2) * 4 + 16);  // RoPE cos, sin
  const int tid = threadIdx.x;
  const int hb = blockIdx.x, row = blockIdx.y, split = blockIdx.z;
  const StepDev& st = p.st;
  const int HG = p.HG;
  const int GBa = p.G;   // <= GBT

  const int pos = st.positions[row], seq = st.seqIndex[row];
  if (!(pos >= 0 && pos < p.maxCtx && seq >= 0 && pos / p.blockSize < st.maxBlocksPerSeq)) {
    // the combine kernel writes NaN rows; merged in-kernel, split 0 writes this block's heads
    if (p.counters != nullptr && split == 0)
      for (int i = tid; i < HG * GBa * HD; i += kAttnThreads)
        p.out[((size_t)row * p.nHeads + hb * HG * GBa) * HD + i] = qnan();
    return;
  }
  const int L = ((((pos >> p.logC) + 1) + p.nSplits - 1) / p.nSplits) << p.logC;  // as attn_combine_kernel
  const int p0 = split * L;
  if (p0 > pos) return;
  const int p1 = min(p0 + L, pos + 1);
  // Lanes: group lg = tid / LPR of LPR lanes holds a 16-byte column col of kv head g's slice; HG adjacent kv
  // heads make a row slot (HG * LPR lanes, HG * HD * ES contiguous bytes of a cache row); RPB row slots.
  const int RPB = kAttnThreads / (HG * LPR);
  const int lg = tid / LPR, col = tid % LPR, rs = lg / HG, hl = lg - rs * HG;
  const int g = hb * HG + hl;
  const int hFirst = g * p.G;
  constexpr int HALF = HD / 2;

  // Everything the block loads before it can score goes out first: raw q, and in the block that writes the
  // row (the split ending at pos, with fused RoPE) its raw k pair, v element and block-table entry; then the
  // first window's block-table entries, whose latency the RoPE table's double-precision math overlaps.
  float qr[GBT][VE];
#pragma unroll
  for (int h = 0; h < GBT; h++)
#pragma unroll
    for (int e = 0; e < VE; e++)
      qr[h][e] = h < GBa ? p.q[((size_t)row * p.nHeads + hFirst + h) * HD + col * VE + e] : 0.f;
  const bool fuse = p.ropeK != nullptr;
  const bool writer = fuse && p1 == pos + 1;  // block-uniform
  const int* btRow = st.blockTables + (size_t)seq * st.maxBlocksPerSeq;
  const float* krow = writer ? p.ropeK + (size_t)row * p.kvDim + (size_t)hb * HG * HD : nullptr;
  const float* vrow = writer ? p.ropeV + (size_t)row * p.kvDim + (size_t)hb * HG * HD : nullptr;
  float kx0 = 0.f, kx1 = 0.f, vx = 0.f;  // this thread's first pair / element of the row (idx == tid below)
  int physW = -1;
  if (writer) {
    physW = btRow[pos / p.blockSize];
    if (tid < HG * HALF) {
      const int gl = tid / HALF;
      int i0, i1;
      rope_index(p.ropeStyle, tid - gl * HALF, HALF, i0, i1);
      kx0 = krow[gl * HD + i0];
      kx1 = krow[gl * HD + i1];
    }
    if (tid < HG * HD) vx = vrow[tid];
  }
  if (tid == 0) *sBad = INT_MAX;
  // running softmax state of this lane's row group (identical across its LPR lanes)
  float acc[GBT][VE], mRun[GBT], lRun[GBT];
#pragma unroll
  for (int h = 0; h < GBT; h++) {
    mRun[h] = -INFINITY;
    lRun[h] = 0.f;
#pragma unroll
    for (int e = 0; e < VE; e++) acc[h][e] = 0.f;
  }
  const char* kBase = p.cacheK + ((size_t)g * HD + col * VE) * ES;
  const char* vBase = p.cacheV + ((size_t)g * HD + col * VE) * ES;
  // cache-row offsets of window [w0, w0 + nw) into slotS (-1 and *sBad for unusable block-table entries)
  auto fill_slots = [&](int w0, int nw) {
    for (int i = tid; i < nw; i += kAttnThreads) {
      const int lpos = w0 + i, lb = lpos / p.blockSize;
      const int phys = btRow[lb];
      long long off = -1;
      if (phys >= 0) off = ((long long)phys * p.blockSize + (lpos - lb * p.blockSize)) * p.kvDim;
      else atomicMin(sBad, lpos);
      slotS[i] = off;
    }
  };
  __syncthreads();  // *sBad initialized
  fill_slots(p0, min(W, p1 - p0));
  if (fuse) rope_table(tab, HALF, pos, p.invFreq);
  __syncthreads();  // slotS of the first window, the RoPE table
  if (fuse) {
#pragma unroll
    for (int h = 0; h < GBT; h++) {
      if (p.ropeStyle == ROPE_INTERLEAVED) {
#pragma unroll
        for (int e = 0; e < VE; e += 2) {
          const int j = (col * VE + e) >> 1;
          rope_rot(qr[h][e], qr[h][e + 1], tab[j], tab[HALF + j], qr[h][e], qr[h][e + 1]);
        }
      } else {  // pairs (j, j + HALF): the partner element sits in lane col ^ (LPR / 2), same e
#pragma unroll
        for (int e = 0; e < VE; e++) {
          const float own = qr[h][e], other = __shfl_xor_sync(kFull, own, LPR / 2);
          const int i = col * VE + e;
          float o0, o1;
          if (i < HALF) {
            rope_rot(own, other, tab[i], tab[HALF + i], o0, o1);
            qr[h][e] = o0;
          } else {
            rope_rot(other, own, tab[i - HALF], tab[i], o0, o1);
            qr[h][e] = o1;
          }
        }
      }
    }
    if (writer) {
      if (physW >= 0) {
        const long long slot = (long long)physW * p.blockSize + (pos % p.blockSize);
        T* ck = reinterpret_cast<T*>(const_cast<char*>(p.cacheK)) + slot * p.kvDim + (size_t)hb * HG * HD;
        T* cv = reinterpret_cast<T*>(const_cast<char*>(p.cacheV)) + slot * p.kvDim + (size_t)hb * HG * HD;
        for (int idx = tid; idx < HG * HALF; idx += kAttnThreads) {
          const int gl = idx / HALF, j = idx - gl * HALF;
          int i0, i1;
          rope_index(p.ropeStyle, j, HALF, i0, i1);
          const float a = idx == tid ? kx0 : krow[gl * HD + i0], b = idx == tid ? kx1 : krow[gl * HD + i1];
          float o0, o1;
          rope_rot(a, b, tab[j], tab[HALF + j], o0, o1);
          ck[gl * HD + i0] = to_cache<T>(o0);
          ck[gl * HD + i1] = to_cache<T>(o1);
        }
        for (int i = tid; i < HG * HD; i += kAttnThreads) cv[i] = to_cache<T>(i == tid ? vx : vrow[i]);
      }
      __syncthreads();  // the row is read back below (through L2)
    }
  }
#pragma unroll
  for (int h = 0; h < GBT; h++)
#pragma unroll
    for (int e = 0; e < VE; e++) qr[h][e] = h < GBa ? qr[h][e] * p.scale2 : 0.f;

  for (int w0 = p0; w0 < p1; w0 += W) {
    const int nw = min(W, p1 - w0);
    if (w0 != p0) {
      __syncthreads();  // previous window done with slotS
      fill_slots(w0, nw);
      __syncthreads();
    }
    for (int base = 0; base < nw; base += U * RPB) {  // block-uniform trip count: shuffles below
      uint4 kr[U], vr[U];
      bool ok[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int i = base + u * RPB + rs;
        const long long off = i < nw ? slotS[i] : -1;
        ok[u] = off >= 0;
        // __ldcg (L2, not the non-coherent path): with fused RoPE this block wrote the row at pos itself
        kr[u] = ok[u] ? __ldcg(reinterpret_cast<const uint4*>(kBase + off * ES)) : make_uint4(0u, 0u, 0u, 0u);
        vr[u] = ok[u] ? __ldcg(reinterpret_cast<const uint4*>(vBase + off * ES)) : make_uint4(0u, 0u, 0u, 0u);
      }
      float sc[U][GBT];
#pragma unroll
      for (int u = 0; u < U; u++) {
        float kf[VE];
        unpack16<T>(kr[u], kf);
#pragma unroll
        for (int h = 0; h < GBT; h++) {
          float a0 = 0.f, a1 = 0.f;
#pragma unroll
          for (int e = 0; e < VE; e += 2) {
            a0 = fmaf(qr[h][e], kf[e], a0);
            a1 = fmaf(qr[h][e + 1], kf[e + 1], a1);
          }
          sc[u][h] = a0 + a1;
        }
#pragma unroll
        for (int m = 1; m < LPR; m <<= 1)
#pragma unroll
          for (int h = 0; h < GBT; h++) sc[u][h] += __shfl_xor_sync(kFull, sc[u][h], m);
#pragma unroll
        for (int h = 0; h < GBT; h++) sc[u][h] = ok[u] ? sc[u][h] : -INFINITY;
      }
#pragma unroll
      for (int h = 0; h < GBT; h++) {
        float mb = mRun[h];
#pragma unroll
        for (int u = 0; u < U; u++) mb = fmaxf(mb, sc[u][h]);
        if (mb != -INFINITY) {  // else: nothing visible yet in this row group
          const float alpha = exp2f(mRun[h] - mb);
          lRun[h] *= alpha;
#pragma unroll
          for (int e = 0; e < VE; e++) acc[h][e] *= alpha;
          mRun[h] = mb;
        }
      }
#pragma unroll
      for (int u = 0; u < U; u++) {
        float vf[VE];
        unpack16<T>(vr[u], vf);
#pragma unroll
        for (int h = 0; h < GBT; h++) {
          const float pw = ok[u] ? exp2f(sc[u][h] - mRun[h]) : 0.f;
          lRun[h] += pw;
#pragma unroll
          for (int e = 0; e < VE; e++) acc[h][e] = fmaf(pw, vf[e], acc[h][e]);
        }
      }
    }
  }

  // ---- merge the RPB row slots per kv head and write (final output when the row fits in split 0) -------
#pragma unroll
  for (int h = 0; h < GBT; h++) {
    if (h < GBa) {
      float* d = red + ((size_t)lg * GBT + h) * HD + col * VE;
#pragma unroll
      for (int e = 0; e < VE; e += 4)
        *reinterpret_cast<float4*>(d + e) = make_float4(acc[h][e], acc[h][e + 1], acc[h][e + 2], acc[h][e + 3]);
      if (col == 0) {
        mR[lg * GBT + h] = mRun[h];
        lR[lg * GBT + h] = lRun[h];
      }
    }
  }
  __syncthreads();
  const bool bad = pos >= *sBad;
  for (int idx = tid; idx < HG * GBa * (HD + 1); idx += kAttnThreads) {
    const int hq = idx / (HD + 1), d = idx - hq * (HD + 1);  // d == HD: the (m, l) entry
    const int gl = hq / GBa, h = hq - gl * GBa;              // kv head (in block), q head (in group)
    float M = -INFINITY;
    for (int k = 0; k < RPB; k++) M = fmaxf(M, mR[(k * HG + gl) * GBT + h]);
    float o = 0.f, l = 0.f;
    for (int k = 0; k < RPB; k++) {
      const int e = (k * HG + gl) * GBT + h;
      const float mk = mR[e];
      const float w = mk == -INFINITY ? 0.f : exp2f(mk - M);
      l = fmaf(w, lR[e], l);
      if (d < HD) o = fmaf(w, red[(size_t)e * HD + d], o);
    }
    const int hh = row * p.nHeads + (hb * HG + gl) * p.G + h;  // (row, q head)
    if (pos < L) {
      if (d < HD) p.out[(size_t)hh * HD + d] = bad ? qnan() : o / l;
    } else if (d < HD) {
      p.opart[((size_t)hh * p.nSplits + split) * HD + d] = o;
    } else {
      const size_t e = (size_t)hh * p.nSplits + split;
      p.ml[2 * e] = M;
      p.ml[2 * e + 1] = bad ? qnan() : l;
    }
  }
  if (pos < L || p.counters == nullptr) return;

  // ---- in-kernel merge: the last of the row's nv splits to arrive merges the partials of its heads -----
  const int nv = pos / L + 1;  // splits holding a partial for this row
  __threadfence();             // this block's partials, before its arrival
  __syncthreads();
  if (tid == 0) {
    unsigned* c = p.counters + (size_t)row * gridDim.x + hb;
    const bool last = atomicAdd(c, 1u) == (unsigned)(nv - 1);
    if (last) *c = 0u;  // for the next launch (kernels on the stream are serialized)
    *sLast = last;
  }
  __syncthreads();
  if (!*sLast) return;
  __threadfence();  // the other splits' partials (they fenced before arriving), read through L2 below
  for (int idx = tid; idx < HG * GBa * HD; idx += kAttnThreads) {
    const int hq = idx / HD, d = idx - hq * HD;
    const size_t hh = (size_t)row * p.nHeads + hb * HG * GBa + hq;  // (row, q head)
    const float* ml = p.ml + 2 * hh * p.nSplits;
    float M = -INFINITY;
    for (int sp = 0; sp < nv; sp++) M = fmaxf(M, __ldcg(ml + 2 * sp));
    float lsum = 0.f, a0 = 0.f, a1 = 0.f;
    const float* op = p.opart + hh * p.nSplits * HD + d;
    int sp = 0;
    for (; sp + 1 < nv; sp += 2) {
      const float w0 = exp2f(__ldcg(ml + 2 * sp) - M), w1 = exp2f(__ldcg(ml + 2 * sp + 2) - M);
      lsum = fmaf(w1, __ldcg(ml + 2 * sp + 3), fmaf(w0, __ldcg(ml + 2 * sp + 1), lsum));
      a0 = fmaf(w0, __ldcg(op + (size_t)sp * HD), a0);
      a1 = fmaf(w1, __ldcg(op + (size_t)(sp + 1) * HD), a1);
    }
    if (sp < nv) {
      const float w0 = exp2f(__ldcg(ml + 2 * sp) - M);
      lsum = fmaf(w0, __ldcg(ml + 2 * sp + 1), lsum);
      a0 = fmaf(w0, __ldcg(op + (size_t)sp * HD), a0);
    }
    p.out[hh * HD + d] = (a0 + a1) * (1.0f / lsum);
  }
}

template <typename T, int HD, int GBT>
cudaError_t launch_attn_decode(AttnParams& p, bool merge, cudaStream_t s, bool* merged) {
  auto kern = attn_decode_kernel<T, HD, GBT>;
  const size_t smem = attn_decode_smem<T, HD, GBT>();
  DeviceProps dp;
  int perSm = 0;
  cudaError_t e = device_props(dp);
  if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kern, kAttnThreads, smem);
  if (e != cudaSuccess) return e;
  const int sms = dp.sms;
  p.C = kDecChunk;
  p.logC = 5;
  const int maxChunks = (p.maxCtx + p.C - 1) / p.C;
  // kv heads per block (HG): up to LLAMA_TS_DEC_ROW_BYTES contiguous bytes per cache row and
  // at least two row slots, while a full context still gives >= 3 blocks per SM
  constexpr int LPR = DecGeom<T, HD>::LPR, ES = (int)sizeof(T);
  int hg = 1;
  while (hg * 2 * HD * ES <= LLAMA_TS_DEC_ROW_BYTES && hg * 2 * LPR * 2 <= kAttnThreads &&
         p.nKvHeads % (hg * 2) == 0 && (long long)(p.nKvHeads / (hg * 2)) * maxChunks >= 3LL * sms)
    hg *= 2;
  p.HG = hg;
  const int headBlocks = p.nKvHeads / hg;
  // one wave of blocks over all rows; n rows x nSplits stays within the scratch attention_scratch_bytes
  // sized (one row's maxChunks splits, or one split per row)
  p.nSplits = std::max(1, std::min(maxChunks / p.nTokens, std::max(1, sms * perSm) / (headBlocks * p.nTokens)));
  p.L = (maxChunks + p.nSplits - 1) / p.nSplits * p.C;  // largest in-kernel split (informational)
  p.opart = p.ml + (size_t)p.nTokens * p.nHeads * p.nSplits * 2;
  p.counters = nullptr;
  if (merge && headBlocks <= kDecMaxHeadBlocks && p.nTokens <= kDecMaxRows) {
    e = cudaGetSymbolAddress(reinterpret_cast<void**>(&p.counters), g_dec_counters);
    if (e != cudaSuccess) return e;
  }
  *merged = p.counters != nullptr;
  LAUNCH_PDL(kern, dim3(headBlocks, p.nTokens, p.nSplits), kAttnThreads, smem, s, p);
  return cudaGetLastError();
}

}  // namespace

bool attn_fuse_enabled() {
  const char* e = std::getenv("LLAMA_TS_ATTN_FUSE");
  return e == nullptr || std::strcmp(e, "0") != 0;
}

cudaError_t attn_decode_launch(AttnParams& p, int kvFmt, bool merge, cudaStream_t s, bool* merged) {
  const int gbt = p.G == 1 ? 1 : p.G == 2 ? 2 : 4;
#define LLAMA_TS_DEC(T, HD)                                          \
  if (p.hd == HD) {                                                  \
    if (gbt == 1) return launch_attn_decode<T, HD, 1>(p, merge, s, merged); \
    if (gbt == 2) return launch_attn_decode<T, HD, 2>(p, merge, s, merged); \
    return launch_attn_decode<T, HD, 4>(p, merge, s, merged);               \
  }
  if (kvFmt == KV_F16) {
    LLAMA_TS_DEC(__half, 64)
    LLAMA_TS_DEC(__half, 128)
  } else {
    LLAMA_TS_DEC(float, 64)
    LLAMA_TS_DEC(float, 128)
  }
#undef LLAMA_TS_DEC
  return cudaErrorInvalidValue;
}

}  // namespace llama_ts
