// llama.ts CUDA backend: split-K ("flash-decoding") causal GQA attention over the paged KV cache.
// Contract: kernels.cuh. Semantics: src/backends/ref/ref_ops.ts. In-kernel validation: see ops.cu's header.
//
// Attention design. Two paths, one scratch layout, one combine kernel:
//   Single-row launches (nTokens == 1: decode of one sequence), and decode batches of up to 64 rows each of
//   its own sequence (the rowsOwnSeq hint), with headDim 64/128, <= 4 q heads per kv head and 16-byte aligned
//   cache rows -> attn_decode_kernel (attention_decode.cu): grid (nKvHeads/HG, nTokens, nSplits), 128 threads. The
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
//   The decode kernel does that merge itself (its last split to finish), and can take rope_kv_write's work
//   too, so a decode step launches one attention kernel (attention_decode.cu; LLAMA_TS_ATTN_FUSE=0: not).
//
// Files: this one (attn_partial_kernel and its launcher launch_attn); attention_decode.cu (attn_decode_kernel);
// attention_launch.cu (attn_combine_kernel, the chunk / split geometry, attention_scratch_bytes() and
// attention(), which picks the path); attention.cuh (what they share).
#include "attention.cuh"
#include "device_util.cuh"
#include <algorithm>
#include <climits>
#include <cstddef>

namespace llama_ts {
namespace {

// =====================================================================================================
// attention
// =====================================================================================================

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
    const uint4 raw = *reinterpret_cast<const uint4*>(p);  // one 16-byte load
    unpack16<__half>(raw, f);
  }
};
template <> struct Vec<float> {
  static constexpr int VE = 4;
  static __device__ __forceinline__ void load(const char* p, float* f) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    f[0] = x.x; f[1] = x.y; f[2] = x.z; f[3] = x.w;
  }
};
// int8 cache: 16 values, unscaled (the score and P*V apply the position's K / V scale), exact.
template <> struct Vec<int8_t> {
  static constexpr int VE = 16;
  static __device__ __forceinline__ void load(const char* p, float* f) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);  // one 16-byte load
    const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; i++) i8x4_to_f32(w[i], f + 4 * i);
  }
};

// T: cache element type (int8_t: the int8 cache, its per-position scales staged beside each chunk); DT: head
// dim when compile-time (64/128), 0 = runtime (even, <= 256); QPT: query vectors per thread in P*V
// (QPT * (128 / pieces) >= kQnMax).
template <typename T, int DT, int QPT>
__global__ void __launch_bounds__(kAttnThreads, 1) attn_partial_kernel(const AttnParams p) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int ES = (int)sizeof(T);
  constexpr int VE = Vec<T>::VE;
  constexpr bool kI8 = ES == 1;
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
    if constexpr (kI8) {  // the positions' K and V scales: element offset / hd = cache row * nKvHeads + g
      float* sc = reinterpret_cast<float*>(smem + p.offScale) + (j & 1) * 2 * p.C;
      for (int c = tid; c < nv; c += kAttnThreads) {
        const long long off = SL[c];
        if (off >= 0) {
          cp_async4(smem_u32(sc + c), p.kScale + off / hd);
          cp_async4(smem_u32(sc + p.C + c), p.vScale + off / hd);
        } else {
          sc[c] = 0.f;
          sc[p.C + c] = 0.f;
        }
      }
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
    const float* scK = reinterpret_cast<const float*>(smem + p.offScale) + (j & 1) * 2 * p.C;  // int8 only
    const float* scV = scK + p.C;
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
          if constexpr (kI8) part *= scK[c];
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
        const float vsc = kI8 ? scV[c] : 1.f;
#pragma unroll
        for (int k = 0; k < QPT; k++) {
          if (k < kq) {
            const float pw = kI8 ? Sq[(k << p.logC) + c] * vsc : Sq[(k << p.logC) + c];
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

}  // namespace

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
  p.offScale = (int)off;
  if (sizeof(T) == 1) off += (size_t)2 * 2 * p.C * 4;
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
  return cudaGetLastError();
}

// the variants attention() launches
template cudaError_t launch_attn<int8_t, 64, 1>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<int8_t, 128, 1>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<int8_t, 0, 2>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<__half, 64, 1>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<__half, 128, 2>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<__half, 0, 4>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<float, 64, 2>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<float, 128, 4>(AttnParams&, int, cudaStream_t);
template cudaError_t launch_attn<float, 0, 8>(AttnParams&, int, cudaStream_t);

}  // namespace llama_ts
