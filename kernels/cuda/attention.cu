// llama.ts CUDA backend: split-K ("flash-decoding") causal GQA attention over the paged KV cache.
// Contract: kernels.cuh. Semantics: src/backends/ref/ref_ops.ts. In-kernel validation: see ops.cu's header.
//
// Attention design. Two paths, one scratch layout, one combine kernel:
//   Single-row launches (nTokens == 1: decode of one sequence), and decode batches of up to 64 rows each of
//   its own sequence (the rowsOwnSeq hint), with headDim 64/128, <= 4 q heads per kv head and 16-byte aligned
//   cache rows -> attn_decode_kernel: grid (nKvHeads/HG, nTokens, nSplits), 128 threads. The
//     grid holds as many splits as fit on the GPU at once (SMs x resident blocks / head blocks, at most one per
//     32 positions), and each block takes ceil(ceil((pos+1)/32) / nSplits) * 32 positions of the row, chosen
//     in-kernel from the row's position: short contexts get short splits (all loads in one round trip), long
//     contexts one wave of blocks. K and V rows go from global memory straight into registers (16-byte loads,
//     a batch of 8 K + 8 V rows in flight per lane), q stays in registers, each group of lanes keeps an online
//     softmax and the groups are merged at the end. (A block can cover HG adjacent kv heads to read longer
//     contiguous pieces of each cache row: LLAMA_TS_DEC_ROW_BYTES, default 256 bytes = one f16 head of 128.)
//   Everything else (prefill, several rows, other head dims, bigger GQA groups) -> attn_partial_kernel: grid
//     (nKvHeads*nSub, nTokens, nSplits), 128 threads. Block (hb, r, s) handles the q heads of one kv head (all
//     of them when nHeads/nKvHeads <= 16, so K/V are read once per kv head) for a "row group" led by row r,
//     over positions [s*L, min((s+1)*L, pos+1)). A row group is up to R consecutive rows of the same sequence
//     (R = 16 / heads-per-block; a row leads when r % R == 0 or its sequence differs from row r-1's; other
//     rows' blocks exit at once), so prefill rows share each K/V chunk load; decode rows of different
//     sequences are groups of one. The block walks its range in chunks of C positions through a two-stage
//     cp.async pipeline in shared memory (block-table entries prefetched into registers two chunks ahead):
//     scores (f32, DS threads per score when there are few) -> online softmax (log2 domain) -> P*V in
//     registers. Splits: about 528 blocks in all; single-row launches choose them in-kernel as above.
//   Both write, per (row, head, split), an unnormalized partial o and (m, l) to scratch; a row whose whole
//   context falls in split 0 gets its final output directly. attn_combine_kernel (grid (nHeads, nTokens))
//   rescales the row's pos/L+1 partials by exp2(m_s - max m) and writes out = sum w_s o_s / sum w_s l_s
//   (and NaN for invalid rows). Blocks whose range starts past their rows' positions exit before loading.
#include "device_util.cuh"
#include <algorithm>
#include <climits>
#include <cstddef>

namespace llama_ts {
namespace {

// =====================================================================================================
// attention
// =====================================================================================================
constexpr int kAttnThreads = 128;
constexpr int kQnMax = 16;  // query vectors (rows x heads) per partial block
#ifndef LLAMA_TS_ATTN_TARGET_BLOCKS
#define LLAMA_TS_ATTN_TARGET_BLOCKS 528  // 4 per SM of an H100
#endif
#ifndef LLAMA_TS_ATTN_CHUNK_BYTES
#define LLAMA_TS_ATTN_CHUNK_BYTES 8192  // bytes of K (and of V) per pipeline stage, about
#endif
constexpr int kTargetBlocks = LLAMA_TS_ATTN_TARGET_BLOCKS;  // split heuristic: about this many blocks
constexpr float kLog2e = 1.4426950408889634f;

struct AttnParams {
  const float* q;
  const char* cacheK;
  const char* cacheV;
  float* ml;     // [nTokens][nHeads][nSplits][2]: (m, l), log2 domain
  float* opart;  // [nTokens][nHeads][nSplits][hd]: unnormalized sum_t exp2(s_t - m) v_t
  float* out;
  StepDev st;
  int nTokens, nHeads, nKvHeads, hd, kvDim;
  int G, nSub, GB, R;            // heads per kv head, head sub-blocks per kv head, heads per block, rows per group
  int C, logC, L, nSplits;       // chunk positions, log2(C), positions per split, splits
  int stages;                    // K/V pipeline stages in shared memory (1 when a split is one chunk, else 2)
  int adaptive;                  // nTokens == 1: positions per split chosen in-kernel from the row's position
                                 // (splits of ceil(nChunks(pos) / nSplits) chunks), so short contexts get one
                                 // chunk per block and long ones one wave of pipelined blocks
  int DS;                        // threads per score (power of 2) in q.k
  int HG;                        // decode kernel: adjacent kv heads per block
  int maxCtx, blockSize;
  int NP, KSTR;                  // 16-byte pieces per cached row (padded), shared row stride in bytes
  int cpw;                       // cp.async width for K/V rows (16, 8 or 4)
  float scale2;                  // scale * log2(e)
  int stageBytes, offSlot, offQ, offS, offM, offL, offA, offRow;  // shared-memory layout (bytes)
};

__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async8(unsigned dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async4(unsigned dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait0() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

// One 16-byte piece of a cached row into shared memory: bytes [byte0, byte0 + 16) of the row; bytes at or
// past rowBytes (padding) and whole pieces of unusable slots (ok == false) are zero-filled.
__device__ __forceinline__ void load_piece(char* dst, const char* src, bool ok, int byte0, int rowBytes, int cpw) {
  if (cpw == 16) {  // rowBytes % 16 == 0: the piece is all data
    if (ok) cp_async16(smem_u32(dst), src);
    else *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  if (cpw == 8) {
#pragma unroll
    for (int b = 0; b < 16; b += 8) {
      if (ok && byte0 + b < rowBytes) cp_async8(smem_u32(dst + b), src + b);
      else *reinterpret_cast<uint2*>(dst + b) = make_uint2(0u, 0u);
    }
    return;
  }
#pragma unroll
  for (int b = 0; b < 16; b += 4) {
    if (ok && byte0 + b < rowBytes) cp_async4(smem_u32(dst + b), src + b);
    else *reinterpret_cast<unsigned*>(dst + b) = 0u;
  }
}

// 16 bytes of T -> VE floats
template <typename T> struct Vec;
template <> struct Vec<__half> {
  static constexpr int VE = 8;
  static __device__ __forceinline__ void load(const char* p, float* f) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const float2 x = __half22float2(h[i]);
      f[2 * i] = x.x;
      f[2 * i + 1] = x.y;
    }
  }
};
template <> struct Vec<float> {
  static constexpr int VE = 4;
  static __device__ __forceinline__ void load(const char* p, float* f) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    f[0] = x.x; f[1] = x.y; f[2] = x.z; f[3] = x.w;
  }
};

// T: cache element type; DT: head dim when compile-time (64/128), 0 = runtime (even, <= 256);
// QPT: query vectors per thread in P*V (QPT * (128 / pieces) >= kQnMax).
template <typename T, int DT, int QPT>
__global__ void __launch_bounds__(kAttnThreads, 1) attn_partial_kernel(const AttnParams p) {
  pdl_wait();  // see device_util.cuh: before any read or early return
  pdl_trigger();
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int ES = (int)sizeof(T);
  constexpr int VE = Vec<T>::VE;
  const int hd = DT ? DT : p.hd;
  const int NP = DT ? (DT * ES + 15) / 16 : p.NP;  // pieces per row (= P*V column groups)
  const int KSTR = p.KSTR;
  const int DP = NP * VE;                          // padded head dim (q row stride in shared memory)
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int hb = blockIdx.x, r = blockIdx.y, split = blockIdx.z;
  const StepDev& st = p.st;

  int* rowPos = reinterpret_cast<int*>(smem + p.offRow);  // [R]: position of group row t, -1 if unusable
  int* sInt = rowPos + p.R;                                // nR, maxPos, first bad position

  // ---- row group: this block works only if row r leads its group --------------------------------------
  const int seq = st.seqIndex[r];
  const int pos0 = st.positions[r];
  if (p.R > 1 && (r % p.R) != 0 && st.seqIndex[r - 1] == seq) return;
  if (warp == 0) {
    const int row = r + lane;
    bool in = false;
    int pos = -1;
    if (lane == 0) {
      in = true;
      pos = pos0;
    } else if (lane < p.R && row < p.nTokens && (row % p.R) != 0) {
      if (st.seqIndex[row] == seq) {
        in = true;
        pos = st.positions[row];
      }
    }
    if (!(pos >= 0 && pos < p.maxCtx && seq >= 0 && pos / p.blockSize < st.maxBlocksPerSeq)) pos = -1;
    const unsigned m = __ballot_sync(kFull, in);
    const int nR = __ffs(~m) - 1;  // consecutive group rows from r (bit 0 is set; R <= 16 < 32)
    const int mp = __reduce_max_sync(kFull, lane < nR ? pos : -1);
    if (lane < p.R) rowPos[lane] = lane < nR ? pos : -1;
    if (lane == 0) {
      sInt[0] = nR;
      sInt[1] = mp;
      sInt[2] = INT_MAX;
    }
  }
  __syncthreads();
  const int nR = sInt[0], maxPos = sInt[1];
  if (maxPos < 0) return;
  // positions per split: fixed, or (single-row launch) from this row's position, as attn_combine_kernel does
  const int L = p.adaptive ? ((((maxPos >> p.logC) + 1) + p.nSplits - 1) / p.nSplits) << p.logC : p.L;
  const int p0 = split * L;
  if (maxPos < p0) return;  // nothing of this split is visible to any row of the group
  const int p1 = min(p0 + L, maxPos + 1);
  const int nChunks = (p1 - p0 + p.C - 1) >> p.logC;  // <= 1 when stages == 1

  const int g = hb / p.nSub, sub = hb - g * p.nSub;
  const int GBa = min(p.GB, p.G - sub * p.GB);  // heads in this block
  if (GBa <= 0) return;
  const int hFirst = g * p.G + sub * p.GB;
  const int QN = nR * GBa;  // query vectors: qi = t * GBa + (h - hFirst)

  float* qs = reinterpret_cast<float*>(smem + p.offQ);
  float* S = reinterpret_cast<float*>(smem + p.offS);
  float* mS = reinterpret_cast<float*>(smem + p.offM);
  float* lS = reinterpret_cast<float*>(smem + p.offL);
  float* aS = reinterpret_cast<float*>(smem + p.offA);

  // ---- q (unscaled f32, zero-padded to DP) via cp.async: lands with the first chunk --------------------
  for (int idx = tid; idx < QN * DP; idx += kAttnThreads) {
    const int qi = idx / DP, d = idx - qi * DP;
    const int t = qi / GBa, h = hFirst + (qi - t * GBa);
    if (d < hd) cp_async4(smem_u32(qs + idx), p.q + ((size_t)(r + t) * p.nHeads + h) * hd + d);
    else qs[idx] = 0.f;
  }
  for (int qi = tid; qi < QN; qi += kAttnThreads) {
    mS[qi] = -INFINITY;
    lS[qi] = 0.f;
  }

  // ---- pipeline helpers: chunk j covers positions [p0 + j*C, min(p0 + (j+1)*C, p1)) ---------------------
  const int rowBytes = hd * ES;
  const long long headOff = (long long)g * hd;  // elements
  const int* btRow = st.blockTables + (size_t)seq * st.maxBlocksPerSeq;
  // (all positions here are <= maxPos, a validated row position, so lpos / blockSize < maxBlocksPerSeq)
  auto bt_load = [&](int j, int (&v)[2]) {  // block-table entries of chunk j into registers (C <= 256)
    const int c0 = p0 + (j << p.logC), nv = min(p.C, p1 - c0);
#pragma unroll
    for (int k = 0; k < 2; k++) {
      const int c = tid + k * kAttnThreads;
      v[k] = c < nv ? btRow[(c0 + c) / p.blockSize] : 0;
    }
  };
  auto slot_store = [&](int j, const int (&v)[2]) {  // -> cache-row element offsets of chunk j
    long long* SL = reinterpret_cast<long long*>(smem + p.offSlot) + ((j & 1) << p.logC);
    const int c0 = p0 + (j << p.logC), nv = min(p.C, p1 - c0);
#pragma unroll
    for (int k = 0; k < 2; k++) {
      const int c = tid + k * kAttnThreads;
      if (c < nv) {
        const int lpos = c0 + c, lb = lpos / p.blockSize;
        long long off = -1;
        if (v[k] >= 0) off = ((long long)v[k] * p.blockSize + (lpos - lb * p.blockSize)) * p.kvDim + headOff;
        else atomicMin(&sInt[2], lpos);
        SL[c] = off;
      }
    }
  };
  auto issue = [&](int j) {  // cp.async K and V rows of chunk j into stage j & 1, one commit group
    const long long* SL = reinterpret_cast<const long long*>(smem + p.offSlot) + ((j & 1) << p.logC);
    char* Kb = reinterpret_cast<char*>(smem) + (j & 1) * p.stageBytes;
    char* Vb = Kb + p.C * KSTR;
    const int c0 = p0 + (j << p.logC), nv = min(p.C, p1 - c0);
    for (int idx = tid; idx < nv * NP; idx += kAttnThreads) {
      const int c = idx / NP, o = idx - c * NP;
      const long long off = SL[c];
      const bool ok = off >= 0;
      const size_t gb = ok ? (size_t)off * ES + (size_t)o * 16 : 0;
      load_piece(Kb + c * KSTR + o * 16, p.cacheK + gb, ok, o * 16, rowBytes, p.cpw);
      load_piece(Vb + c * KSTR + o * 16, p.cacheV + gb, ok, o * 16, rowBytes, p.cpw);
    }
    cp_async_commit();
  };

  // ---- P*V thread mapping: column group col (16 bytes of a V row), query slice qsI, position slice cs ----
  const int NU = kAttnThreads / NP;
  const int col = tid % NP, u = tid / NP;
  const int NQS = (QN + QPT - 1) / QPT;
  const int NCS = NU / NQS;  // >= 1 (host checks QPT * NU >= kQnMax)
  const int qsI = u % NQS, cs = u / NQS;
  const bool pvActive = u < NU && cs < NCS;
  const int kq = min(QPT, QN - qsI * QPT);  // valid query vectors of this thread's slice
  float acc[QPT][VE];
#pragma unroll
  for (int k = 0; k < QPT; k++)
#pragma unroll
    for (int e = 0; e < VE; e++) acc[k][e] = 0.f;
  // q.k thread mapping: DS threads per score, pieces o = sub, sub + DS, ...
  const int DS = p.DS, ig = tid / DS, dsub = tid & (DS - 1), ipp = kAttnThreads / DS;

  // ---- prologue: chunks 0 and 1 in flight --------------------------------------------------------------
  int btv[2];
  bt_load(0, btv);
  slot_store(0, btv);
  if (nChunks > 1) bt_load(1, btv);
  __syncthreads();
  issue(0);
  if (nChunks > 1) {
    slot_store(1, btv);
    __syncthreads();
    issue(1);
  }

  for (int j = 0; j < nChunks; j++) {
    const int c0 = p0 + (j << p.logC), nValid = min(p.C, p1 - c0);
    if (j + 2 < nChunks) bt_load(j + 2, btv);  // lands while chunk j is computed
    if (j + 1 < nChunks) cp_async_wait1();
    else cp_async_wait0();
    __syncthreads();
    const char* Ks = reinterpret_cast<const char*>(smem) + (j & 1) * p.stageBytes;
    const char* Vs = Ks + p.C * KSTR;
    // -- scores (log2 domain), masked by each row's own position --
    for (int base = 0; base < (QN << p.logC); base += ipp) {  // uniform trip count: shuffles below
      const int it = base + ig;
      float part = 0.f;
      bool valid = false;
      if (it < (QN << p.logC)) {
        const int qi = it >> p.logC, c = it & (p.C - 1);
        valid = c < nValid && c0 + c <= rowPos[qi / GBa];
        if (valid) {
          const float* qv = qs + qi * DP;
          const char* kr = Ks + c * KSTR;
          float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
#pragma unroll 4
          for (int o = dsub; o < NP; o += DS) {
            float kf[VE];
            Vec<T>::load(kr + o * 16, kf);
            const float* qq = qv + o * VE;
#pragma unroll
            for (int e = 0; e < VE; e += 4) {
              const float4 q4 = *reinterpret_cast<const float4*>(qq + e);
              a0 = fmaf(q4.x, kf[e], a0);
              a1 = fmaf(q4.y, kf[e + 1], a1);
              a2 = fmaf(q4.z, kf[e + 2], a2);
              a3 = fmaf(q4.w, kf[e + 3], a3);
            }
          }
          part = (a0 + a1) + (a2 + a3);
        }
      }
      for (int m = 1; m < DS; m <<= 1) part += __shfl_xor_sync(kFull, part, m);
      if (it < (QN << p.logC) && dsub == 0) S[it] = valid ? part * p.scale2 : -INFINITY;
    }
    __syncthreads();
    // -- online softmax per query vector: one warp each --
    for (int qi = warp; qi < QN; qi += kAttnThreads / 32) {
      float* Sr = S + (qi << p.logC);
      float mx = -INFINITY;
      for (int c = lane; c < nValid; c += 32) mx = fmaxf(mx, Sr[c]);
      mx = warp_max(mx);
      const float mOld = mS[qi];
      const float mNew = fmaxf(mOld, mx);
      float sum = 0.f, alpha = 1.f;
      if (mNew == -INFINITY) {
        for (int c = lane; c < nValid; c += 32) Sr[c] = 0.f;
      } else {
        for (int c = lane; c < nValid; c += 32) {
          const float e = exp2f(Sr[c] - mNew);
          Sr[c] = e;
          sum += e;
        }
        alpha = exp2f(mOld - mNew);
      }
      sum = warp_sum(sum);
      __syncwarp();  // every lane has read mS[qi] before lane 0 overwrites it
      if (lane == 0) {
        mS[qi] = mNew;
        lS[qi] = lS[qi] * alpha + sum;
        aS[qi] = alpha;
      }
    }
    __syncthreads();
    // -- P * V --
    if (pvActive) {
#pragma unroll
      for (int k = 0; k < QPT; k++) {
        if (k < kq) {
          const float al = aS[qsI * QPT + k];
#pragma unroll
          for (int e = 0; e < VE; e++) acc[k][e] *= al;
        }
      }
      const char* vcol = Vs + col * 16;
      const float* Sq = S + ((qsI * QPT) << p.logC);
      for (int c = cs; c < nValid; c += NCS) {
        float vf[VE];
        Vec<T>::load(vcol + c * KSTR, vf);
#pragma unroll
        for (int k = 0; k < QPT; k++) {
          if (k < kq) {
            const float pw = Sq[(k << p.logC) + c];
#pragma unroll
            for (int e = 0; e < VE; e++) acc[k][e] = fmaf(pw, vf[e], acc[k][e]);
          }
        }
      }
    }
    if (j + 2 < nChunks) slot_store(j + 2, btv);  // slot buffer j & 1 was last read by issue(j)
    __syncthreads();                              // stage j & 1, S and aS are free again
    if (j + 2 < nChunks) issue(j + 2);
  }

  // ---- reduce the position slices (shared memory over the K/V stages) and write ----------------------
  float* red = reinterpret_cast<float*>(smem);  // [NCS][QN][DP]
  if (pvActive) {
#pragma unroll
    for (int k = 0; k < QPT; k++) {
      if (k < kq) {
        float* d = red + ((size_t)cs * QN + qsI * QPT + k) * DP + col * VE;
#pragma unroll
        for (int e = 0; e < VE; e += 4)
          *reinterpret_cast<float4*>(d + e) = make_float4(acc[k][e], acc[k][e + 1], acc[k][e + 2], acc[k][e + 3]);
      }
    }
  }
  __syncthreads();
  // A row whose whole context lies in split 0 (pos < L) gets its final output here; the combine kernel
  // skips it. Other rows get a partial (o, m, l) per split.
  const int firstBad = sInt[2];
  for (int idx = tid; idx < QN * hd; idx += kAttnThreads) {
    const int qi = idx / hd, d = idx - qi * hd;
    const int t = qi / GBa, pos = rowPos[t];
    if (pos < p0) continue;
    float o = 0.f;
    for (int c = 0; c < NCS; c++) o += red[((size_t)c * QN + qi) * DP + d];
    const int h = hFirst + (qi - t * GBa);
    if (pos < L) {
      p.out[((size_t)(r + t) * p.nHeads + h) * hd + d] = pos >= firstBad ? qnan() : o / lS[qi];
    } else {
      const size_t e = ((size_t)(r + t) * p.nHeads + h) * p.nSplits + split;
      p.opart[e * hd + d] = o;
    }
  }
  for (int qi = tid; qi < QN; qi += kAttnThreads) {
    const int t = qi / GBa, pos = rowPos[t];
    if (pos < p0 || pos < L) continue;
    const int h = hFirst + (qi - t * GBa);
    const size_t e = ((size_t)(r + t) * p.nHeads + h) * p.nSplits + split;
    p.ml[2 * e] = mS[qi];
    p.ml[2 * e + 1] = pos >= firstBad ? qnan() : lS[qi];
  }
}

// grid (nHeads, nTokens), 128 threads; dynamic smem: round_up(nSplits, 4) + 4 floats.
// Rows with pos < L were finished by the partial kernel; invalid rows are written NaN here.
__global__ void __launch_bounds__(kAttnThreads) attn_combine_kernel(const AttnParams p) {
  pdl_wait();  // see device_util.cuh: before any read or early return
  pdl_trigger();
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
int attn_chunk(int hd, int kvFmt) {  // positions per chunk: power of 2 in [32, 256]
  const int es = kvFmt == KV_F16 ? 2 : 4;
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

template <typename T, int DT, int QPT>
cudaError_t launch_attn(AttnParams& p, int qnCap, cudaStream_t s) {
  constexpr int VE = Vec<T>::VE;
  const int NU = kAttnThreads / p.NP;
  if (QPT * NU < kQnMax) return cudaErrorInvalidValue;  // cannot happen for hd <= 256
  const int DP = p.NP * VE;
  p.stageBytes = 2 * p.C * p.KSTR;
  const size_t kvBytes = std::max<size_t>((size_t)p.stages * p.stageBytes, (size_t)NU * QPT * DP * 4);
  size_t off = kvBytes;
  p.offSlot = (int)off; off += (size_t)2 * p.C * 8;
  p.offQ = (int)off;    off += (size_t)qnCap * DP * 4;
  p.offS = (int)off;    off += (size_t)qnCap * p.C * 4;
  p.offM = (int)off;    off += (size_t)qnCap * 4;
  p.offL = (int)off;    off += (size_t)qnCap * 4;
  p.offA = (int)off;    off += (size_t)qnCap * 4;
  p.offRow = (int)off;  off += (size_t)(p.R + 3) * 4;
  const size_t smem = (off + 15) / 16 * 16 + 16;
  auto kern = attn_partial_kernel<T, DT, QPT>;
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
  }
  if (p.adaptive) {  // as many splits as fit on the GPU at once (one wave), at most one per chunk
    DeviceProps dp;
    int perSm = 0;
    cudaError_t e = device_props(dp);
    if (e == cudaSuccess) e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perSm, kern, kAttnThreads, smem);
    if (e != cudaSuccess) return e;
    const int sms = dp.sms;
    const int maxChunks = (p.maxCtx + p.C - 1) / p.C;
    const int headBlocks = p.nKvHeads * p.nSub;
    p.nSplits = std::max(1, std::min(maxChunks, std::max(1, sms * perSm) / headBlocks));
    p.L = (maxChunks + p.nSplits - 1) / p.nSplits * p.C;  // largest in-kernel split (informational)
  }
  p.opart = p.ml + (size_t)p.nTokens * p.nHeads * p.nSplits * 2;
  const dim3 grid(p.nKvHeads * p.nSub, p.nTokens, p.nSplits);
  LAUNCH_PDL(kern, grid, kAttnThreads, smem, s, p);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const size_t csmem = ((size_t)p.nSplits + 3) / 4 * 16 + 16;
  LAUNCH_PDL(attn_combine_kernel, dim3(p.nHeads, p.nTokens), kAttnThreads, csmem, s, p);
  return cudaGetLastError();
}

// ---- single-row decode kernel (nTokens == 1, headDim 64/128, <= 4 q heads per kv head, 16-byte aligned
// cache rows): K and V rows go straight from global memory into registers (16-byte loads; a batch of U K
// rows and U V rows in flight per lane), q stays in registers, a row's score is reduced over its LPR lanes
// with shuffles, and each row group (LPR lanes) keeps its own online softmax; the RPB row groups are merged
// once at the end. Same splits (adaptive rule), scratch layout and combine kernel as attn_partial_kernel.
// grid (nKvHeads, 1, nSplits), 128 threads.
constexpr int kDecWindow = 256;  // positions whose cache-row offsets are held in shared memory at a time
// Most rows of a decode batch (attention()'s rowsOwnSeq) the decode kernel takes, one block row per step
// row (a row reads its own context; more rows go to the partial kernel).
constexpr int kDecMaxRows = 64;
constexpr int kDecChunk = 32;    // split granularity (positions)

template <typename T> __device__ __forceinline__ void unpack16(const uint4& raw, float* f);
template <> __device__ __forceinline__ void unpack16<__half>(const uint4& raw, float* f) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 x = __half22float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
template <> __device__ __forceinline__ void unpack16<float>(const uint4& raw, float* f) {
  f[0] = __uint_as_float(raw.x); f[1] = __uint_as_float(raw.y);
  f[2] = __uint_as_float(raw.z); f[3] = __uint_as_float(raw.w);
}

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
  return (size_t)kDecWindow * 8 + (size_t)Gm::NG * GBT * (HD + 2) * 4 + 16;
}

template <typename T, int HD, int GBT>
__global__ void __launch_bounds__(kAttnThreads, 1) attn_decode_kernel(const AttnParams p) {
  pdl_wait();  // see device_util.cuh: before any read or early return
  pdl_trigger();
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
  const int tid = threadIdx.x;
  const int hb = blockIdx.x, row = blockIdx.y, split = blockIdx.z;
  const StepDev& st = p.st;

  const int pos = st.positions[row], seq = st.seqIndex[row];
  if (!(pos >= 0 && pos < p.maxCtx && seq >= 0 && pos / p.blockSize < st.maxBlocksPerSeq)) return;  // combine: NaN
  const int L = ((((pos >> p.logC) + 1) + p.nSplits - 1) / p.nSplits) << p.logC;  // as attn_combine_kernel
  const int p0 = split * L;
  if (p0 > pos) return;
  const int p1 = min(p0 + L, pos + 1);
  // Lanes: group lg = tid / LPR of LPR lanes holds a 16-byte column col of kv head g's slice; HG adjacent kv
  // heads make a row slot (HG * LPR lanes, HG * HD * ES contiguous bytes of a cache row); RPB row slots.
  const int HG = p.HG;
  const int RPB = kAttnThreads / (HG * LPR);
  const int lg = tid / LPR, col = tid % LPR, rs = lg / HG, hl = lg - rs * HG;
  const int g = hb * HG + hl;
  const int GBa = p.G;   // <= GBT
  const int hFirst = g * p.G;

  float qr[GBT][VE];
#pragma unroll
  for (int h = 0; h < GBT; h++)
#pragma unroll
    for (int e = 0; e < VE; e++)
      qr[h][e] = h < GBa ? p.q[((size_t)row * p.nHeads + hFirst + h) * HD + col * VE + e] * p.scale2 : 0.f;
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

  const int* btRow = st.blockTables + (size_t)seq * st.maxBlocksPerSeq;
  const char* kBase = p.cacheK + ((size_t)g * HD + col * VE) * ES;
  const char* vBase = p.cacheV + ((size_t)g * HD + col * VE) * ES;

  for (int w0 = p0; w0 < p1; w0 += W) {
    const int nw = min(W, p1 - w0);
    __syncthreads();  // previous window done with slotS (and *sBad initialized)
    for (int i = tid; i < nw; i += kAttnThreads) {
      const int lpos = w0 + i, lb = lpos / p.blockSize;
      const int phys = btRow[lb];
      long long off = -1;
      if (phys >= 0) off = ((long long)phys * p.blockSize + (lpos - lb * p.blockSize)) * p.kvDim;
      else atomicMin(sBad, lpos);
      slotS[i] = off;
    }
    __syncthreads();
    for (int base = 0; base < nw; base += U * RPB) {  // block-uniform trip count: shuffles below
      uint4 kr[U], vr[U];
      bool ok[U];
#pragma unroll
      for (int u = 0; u < U; u++) {
        const int i = base + u * RPB + rs;
        const long long off = i < nw ? slotS[i] : -1;
        ok[u] = off >= 0;
        kr[u] = ok[u] ? __ldg(reinterpret_cast<const uint4*>(kBase + off * ES)) : make_uint4(0u, 0u, 0u, 0u);
        vr[u] = ok[u] ? __ldg(reinterpret_cast<const uint4*>(vBase + off * ES)) : make_uint4(0u, 0u, 0u, 0u);
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
}

template <typename T, int HD, int GBT>
cudaError_t launch_attn_decode(AttnParams& p, cudaStream_t s) {
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
  LAUNCH_PDL(kern, dim3(headBlocks, p.nTokens, p.nSplits), kAttnThreads, smem, s, p);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const size_t csmem = ((size_t)p.nSplits + 3) / 4 * 16 + 16;
  LAUNCH_PDL(attn_combine_kernel, dim3(p.nHeads, p.nTokens), kAttnThreads, csmem, s, p);
  return cudaGetLastError();
}

}  // namespace

size_t attention_scratch_bytes(int maxTokens, int nHeads, int headDim, int maxCtx) {
  if (maxTokens <= 0 || nHeads <= 0 || headDim <= 0 || maxCtx <= 0) return 0;
  size_t best = 0;
  for (int fmt = KV_F32; fmt <= KV_F16; fmt++) {
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
                      StepDev st, cudaStream_t s, bool rowsOwnSeq) {
  if (nTokens < 0 || nHeads <= 0 || nKvHeads <= 0 || nHeads % nKvHeads || blockSize <= 0 || maxCtx <= 0)
    return cudaErrorInvalidValue;
  if (headDim < 2 || headDim > 256 || headDim % 2) return cudaErrorInvalidValue;
  if (kvFmt != KV_F32 && kvFmt != KV_F16) return cudaErrorInvalidValue;
  if (!q || !cacheK || !cacheV || !out || !scratch) return cudaErrorInvalidValue;
  if (nTokens == 0) return cudaSuccess;
  AttnParams p{};
  const int es = kvFmt == KV_F16 ? 2 : 4;
  p.q = q;
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
  if ((nTokens == 1 || (rowsOwnSeq && nTokens <= kDecMaxRows)) && p.nSub == 1 && p.G <= 4 && p.cpw == 16 && (headDim == 64 || headDim == 128)) {
    p.adaptive = 1;  // splits sized in-kernel from each row's position (the combine kernel follows)
    const int gbt = p.G == 1 ? 1 : p.G == 2 ? 2 : 4;
#define LLAMA_TS_DEC(T, HD)                                         \
  if (headDim == HD) {                                              \
    if (gbt == 1) return launch_attn_decode<T, HD, 1>(p, s);        \
    if (gbt == 2) return launch_attn_decode<T, HD, 2>(p, s);        \
    return launch_attn_decode<T, HD, 4>(p, s);                      \
  }
    if (kvFmt == KV_F16) {
      LLAMA_TS_DEC(__half, 64)
      LLAMA_TS_DEC(__half, 128)
    } else {
      LLAMA_TS_DEC(float, 64)
      LLAMA_TS_DEC(float, 128)
    }
#undef LLAMA_TS_DEC
  }
  if (kvFmt == KV_F16) {
    if (headDim == 64) return launch_attn<__half, 64, 1>(p, qnCap, s);
    if (headDim == 128) return launch_attn<__half, 128, 2>(p, qnCap, s);
    return launch_attn<__half, 0, 4>(p, qnCap, s);
  }
  if (headDim == 64) return launch_attn<float, 64, 2>(p, qnCap, s);
  if (headDim == 128) return launch_attn<float, 128, 4>(p, qnCap, s);
  return launch_attn<float, 0, 8>(p, qnCap, s);
}

}  // namespace llama_ts
