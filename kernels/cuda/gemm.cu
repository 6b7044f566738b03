// Prefill GEMM of the llama.ts CUDA backend (contract: kernels.cuh).
//   y[r*ldy + j] = (res ? res[r*ldy + j] : 0) + sum_i x[r*ldx + i] * W[j, i]
//
// Kernels:
//  * gemm_tc_kernel: tensor cores (mma.sync m16n8k16, f16 x f16 -> f32 accumulate; sm_80 and sm_90), for
//    WF_F16 / WF_BF16 / WF_I8 / WF_I4. Block tile 128 rows x 128 output features x 32 k, 8 warps (4 along
//    rows x 2 along features, warp tile 32 x 64), S-stage cp.async pipeline, one __syncthreads per k-tile,
//    padded shared tiles (80-byte rows: conflict-free ldmatrix).
//      A (activations), two modes:
//      - "xh" (default when a workspace is passed): x_to_f16_kernel first writes f16(x) (round to nearest)
//        into the workspace (nRows x k, row stride k); the GEMM streams it by cp.async and reads
//        fragments with ldmatrix.
//      - "x32" (workspace == nullptr): x (f32) is copied as f32 into shared memory by cp.async; fragments
//        are read with 8-byte shared loads and rounded to f16 (cvt.rn.f16x2.f32) before the mma.
//      Either way the tensor cores consume f16(x): relative rounding <= 2^-11 per element.
//      W:
//      - WF_F16 tiles go by cp.async straight into the shared tile read by ldmatrix.
//      - WF_BF16 / WF_I8 / WF_I4 tiles go raw by cp.async into shared memory; each k-tile is converted once
//        per block into a double-buffered f16 tile (bf16 -> f16 round to nearest; i8: f16(scale * q);
//        i4: f16(scale * (nibble - 8)), one rounding, as __hmul2). Tile t+1 is converted during the mma
//        of tile t. bf16 weights beyond the f16 range (|w| > 65504) would overflow: not met in LLaMA models.
//    Requirements (checked at run time; otherwise the SIMT kernel runs): W.q 16-byte aligned; f16/bf16:
//    k % 8 == 0; i8/i4: k % 32 == 0, group % 32 == 0, k % group == 0. Mode x32 also needs x 16-byte
//    aligned and ldx % 4 == 0 (mode xh takes any x / ldx). Any nRows >= 1, any m >= 1. y/res: any
//    alignment and ldy (float2 stores when 8-byte aligned and ldy even).
//  * gemm_simple_kernel: plain f32 SIMT tiled kernel (64 x 64 tile, 4 x 4 per thread), every format, any
//    k / ldx / alignment. Runs WF_F32 weights (keeps f32 precision: f32 x, f32 weights, f32 FMA
//    accumulation) and is the fallback / reference path.
//
// Workspace: gemm_workspace_bytes(w, maxRows) = maxRows * round_up(k, 8) * 2 bytes (the f16 copy of x)
// for non-f32 formats, 0 for WF_F32. gemm() must then be called with nRows <= maxRows. A null workspace
// is allowed (mode x32, ~0-15% slower).
//
// Test hooks (not part of kernels.cuh; declared by checks/gemm_check.cu):
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
#include "device_util.cuh"

#include <algorithm>
#include <cstdlib>

namespace llama_ts {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Tensor-core kernel
// ---------------------------------------------------------------------------------------------------------
constexpr int BM = 128;        // rows (tokens) per block
constexpr int BN = 128;        // output features per block
constexpr int BK = 32;         // k per pipeline stage
constexpr int NT = 256;        // threads per block (8 warps)
constexpr int A_LD = BK + 8;   // floats per A smem row: 160 B, conflict-free 8-byte fragment loads
constexpr int B_LD = BK + 8;   // halves per B smem row: 80 B, conflict-free ldmatrix
constexpr int A_STAGE = BM * A_LD * 4;  // 20480 bytes (f32 x tile)
constexpr int AH_STAGE = BM * B_LD * 2;  // 10240 bytes (f16 x tile, same padded layout as B)
constexpr int B_STAGE = BN * B_LD * 2;  // 10240 bytes

template <int FMT>
__host__ __device__ constexpr int raw_stage_bytes() {
  return FMT == WF_I8 ? BN * BK : FMT == WF_I4 ? BN * BK / 2 : B_STAGE;
}
template <int FMT>
__host__ __device__ constexpr bool needs_convert() {
  return FMT != WF_F16;
}
template <int FMT, int S, bool AH>
__host__ __device__ constexpr int tc_smem_bytes() {
  return S * ((AH ? AH_STAGE : A_STAGE) + raw_stage_bytes<FMT>()) + (needs_convert<FMT>() ? 2 * B_STAGE : 0);
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte async copy global -> shared; zero-fills the 16 bytes when !valid (no global read then).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);  // .x (low 16 bits) = lo
  return *reinterpret_cast<uint32_t*>(&h);
}
struct TcArgs {
  const float* x;  // f32 x (AH == false)
  const __half* xh;  // f16 copy of x, row stride k (AH == true)
  int ldx;
  int nRows;
  const void* wq;
  const __half* wsc;
  int group;
  int m;
  int k;
  float* y;
  int ldy;
  const float* res;
  int vec2;  // y (and res) 8-byte aligned and ldy even: float2 epilogue stores
  int splits;   // split-K: blockIdx.z takes k-tiles [T*z/splits, T*(z+1)/splits)
  float* part;  // splits > 1: partial sums [splits][nRows][m], summed by splitk_reduce_kernel
  int skipDead;  // warps whose rows are all >= nRows skip their mma (0 only for the A/B switch below)
};

template <int FMT, int S, int MINB, bool AH>
__global__ void __launch_bounds__(NT, MINB) gemm_tc_kernel(const TcArgs p) {
  static_assert(S >= 3, "pipeline needs at least 3 stages");
  constexpr bool CONV = needs_convert<FMT>();
  constexpr int RAW = raw_stage_bytes<FMT>();
  constexpr int AST = AH ? AH_STAGE : A_STAGE;
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* As = smem;                                          // S x A tile: [BM][A_LD] f32 or [BM][B_LD] f16
  unsigned char* Rs = smem + S * AST;                                // S x raw W tile
  __half* Bh = reinterpret_cast<__half*>(Rs + S * RAW);              // 2 x [BN][B_LD] f16 (CONV only)

  const int tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  const int wm = warp >> 1, wn = warp & 1;  // warp tile: rows wm*32..+32, features wn*64..+64
  const int g = lane >> 2, q = lane & 3;
  const int rowBase = blockIdx.x * BM;
  const int nBase = blockIdx.y * BN;
  const int k = p.k, m = p.m;
  const int T = (k + BK - 1) / BK;
  // split-K: this block's k-tiles are tb .. tb + Tl - 1 (tile indices below are local, 0 .. Tl - 1)
  const int tb = (int)((long long)T * blockIdx.z / p.splits);
  const int Tl = (int)((long long)T * (blockIdx.z + 1) / p.splits) - tb;

  // ---- loader precomputation -------------------------------------------------------------------------
  // f32 A: 128 rows x 8 chunks of 4 floats; thread loads chunk column ac of rows ar + 32*i (i < 4).
  // f16 A: 128 rows x 4 chunks of 8 halves; thread loads chunk column ac of rows ar + 64*i (i < 2).
  constexpr int A_CPR = AH ? 4 : 8;        // 16-byte chunks per row
  constexpr int A_NCH = BM * A_CPR / NT;   // chunks per thread
  constexpr int A_RSTEP = NT / A_CPR;      // row step between a thread's chunks
  const int ac = tid % A_CPR, ar = tid / A_CPR;
  const char* aSrc[A_NCH];
  bool aOk[A_NCH];
  const char* aBase = AH ? reinterpret_cast<const char*>(p.xh) : reinterpret_cast<const char*>(p.x);
#pragma unroll
  for (int i = 0; i < A_NCH; i++) {
    const int gr = rowBase + ar + A_RSTEP * i;
    aOk[i] = gr < p.nRows;
    aSrc[i] = aBase + (aOk[i] ? (AH ? ((size_t)gr * k + ac * 8) * 2 : ((size_t)gr * p.ldx + ac * 4) * 4) : 0);
  }
  const uint32_t aDst = smem_u32(As) + (uint32_t)(AH ? (ar * B_LD + ac * 8) * 2 : (ar * A_LD + ac * 4) * 4);

  auto load_tile = [&](int t, int stage) {
    const int k0 = t * BK;
    {
      // f32: k % 4 == 0, f16: k % 8 == 0: a chunk is all in or all out
      const bool kOk = k0 + ac * (AH ? 8 : 4) < k;
      const size_t kOff = (size_t)k0 * (AH ? 2 : 4);
      const uint32_t dst = aDst + stage * AST;
#pragma unroll
      for (int i = 0; i < A_NCH; i++) {
        const bool v = aOk[i] && kOk;
        cp_async16(dst + i * A_RSTEP * (AH ? B_LD * 2 : A_LD * 4), v ? aSrc[i] + kOff : aBase, v);
      }
    }
    const uint32_t rs = smem_u32(Rs) + stage * RAW;
    if constexpr (FMT == WF_F16 || FMT == WF_BF16) {
      // 128 rows x 4 chunks of 8 halves; thread: chunk column tid&3 of rows (tid>>2) + 64*i
      const uint16_t* W = static_cast<const uint16_t*>(p.wq);
      const int bc = tid & 3, br = tid >> 2;
      const int gk = k0 + bc * 8;  // k % 8 == 0: all in or all out
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int gn = nBase + br + 64 * i;
        const bool v = gn < m && gk < k;
        cp_async16(rs + ((br + 64 * i) * B_LD + bc * 8) * 2, v ? W + (size_t)gn * k + gk : W, v);
      }
    } else if constexpr (FMT == WF_I8) {
      // 128 rows x 32 bytes: thread: row tid>>1, bytes (tid&1)*16..+16 (k % 32 == 0: always in k)
      const int8_t* W = static_cast<const int8_t*>(p.wq);
      const int br = tid >> 1, bc = tid & 1;
      const int gn = nBase + br;
      const bool v = gn < m;
      cp_async16(rs + br * BK + bc * 16, v ? W + (size_t)gn * k + k0 + bc * 16 : W, v);
    } else {
      // I4: 128 rows x 16 bytes (one 32-element sub-block per row)
      const uint8_t* W = static_cast<const uint8_t*>(p.wq);
      if (tid < BN) {
        const int gn = nBase + tid;
        const bool v = gn < m;
        cp_async16(rs + tid * (BK / 2), v ? W + (size_t)gn * (k / 2) + k0 / 2 : W, v);
      }
    }
  };

  // ---- W tile conversion (CONV formats): thread converts row cr, elements ch*16..+16 of the k-tile ----
  const int cr = tid >> 1, ch = tid & 1;
  const bool crOk = nBase + cr < m;
  const __half* scRow = nullptr;
  if constexpr (FMT == WF_I8 || FMT == WF_I4) scRow = p.wsc + (crOk ? (size_t)(nBase + cr) * (k / p.group) : 0);
  auto scale_of = [&](int t) -> __half {
    if constexpr (FMT == WF_I8 || FMT == WF_I4) {
      if (crOk && t < T) return __ldg(scRow + (t * BK) / p.group);
    }
    return __ushort_as_half((unsigned short)0);
  };
  auto convert_tile = [&](int stage, __half sc, int buf) {
    const unsigned char* rs = Rs + stage * RAW;
    uint32_t o[8];
    if constexpr (FMT == WF_BF16) {
      const uint4* src = reinterpret_cast<const uint4*>(rs + (cr * B_LD + ch * 16) * 2);
      const uint4 u0 = src[0], u1 = src[1];
      const uint32_t w[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
#pragma unroll
      for (int i = 0; i < 8; i++) o[i] = pack_f16x2(__uint_as_float(w[i] << 16), __uint_as_float(w[i] & 0xFFFF0000u));
    } else if constexpr (FMT == WF_I8) {
      const uint4 u = *reinterpret_cast<const uint4*>(rs + cr * BK + ch * 16);
      const __half2 bias = __float2half2_rn(1152.f);  // 1024 + 128
      const __half2 s2 = __half2half2(sc);
      bytes_to_h2(u.x ^ 0x80808080u, bias, s2, o[0], o[1]);
      bytes_to_h2(u.y ^ 0x80808080u, bias, s2, o[2], o[3]);
      bytes_to_h2(u.z ^ 0x80808080u, bias, s2, o[4], o[5]);
      bytes_to_h2(u.w ^ 0x80808080u, bias, s2, o[6], o[7]);
    } else if constexpr (FMT == WF_I4) {
      // byte j of the 16-byte sub-block: element j (low nibble), element j+16 (high nibble)
      const uint4 u = *reinterpret_cast<const uint4*>(rs + cr * (BK / 2));
      const int sh = ch * 4;
      const __half2 bias = __float2half2_rn(1032.f);  // 1024 + 8
      const __half2 s2 = __half2half2(sc);
      bytes_to_h2((u.x >> sh) & 0x0F0F0F0Fu, bias, s2, o[0], o[1]);
      bytes_to_h2((u.y >> sh) & 0x0F0F0F0Fu, bias, s2, o[2], o[3]);
      bytes_to_h2((u.z >> sh) & 0x0F0F0F0Fu, bias, s2, o[4], o[5]);
      bytes_to_h2((u.w >> sh) & 0x0F0F0F0Fu, bias, s2, o[6], o[7]);
    }
    if constexpr (CONV) {
      uint4* dst = reinterpret_cast<uint4*>(Bh + buf * (BN * B_LD) + cr * B_LD + ch * 16);
      dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
      dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
    } else {
      (void)o;
      (void)sc;
      (void)buf;
    }
  };

  // ---- mma over one k-tile ----------------------------------------------------------------------------
  float acc[2][8][4];
#pragma unroll
  for (int mi = 0; mi < 2; mi++)
#pragma unroll
    for (int ni = 0; ni < 8; ni++)
#pragma unroll
      for (int e = 0; e < 4; e++) acc[mi][ni][e] = 0.f;

  // ldmatrix x4 lane address: matrix lane>>3 = (n-half, k-half), row lane&7
  const int lm = lane >> 3, lr = lane & 7;
  const uint32_t bLaneOff = (uint32_t)(((wn * 64 + (lm >> 1) * 8 + lr) * B_LD + (lm & 1) * 8) * 2);
  const int aLaneOff = (wm * 32 + g) * A_LD + 2 * q;
  // f16 A ldmatrix x4: matrix lm = (row-half lm&1, k-half lm>>1) -> a0..a3 of m16n8k16, row lr
  const uint32_t aLaneOffH = (uint32_t)(((wm * 32 + (lm & 1) * 8 + lr) * B_LD + (lm >> 1) * 8) * 2);

  // Row fragments of this warp that hold live rows (warp-uniform): a decode batch of 9..64 rows fills only
  // part of the 128-row tile, and the warps (or 16-row halves) past nRows skip their ldmatrix and mma.
  const int warpRow0 = rowBase + wm * 32;
  const int nMi = !p.skipDead ? 2 : warpRow0 >= p.nRows ? 0 : (warpRow0 + 16 >= p.nRows ? 1 : 2);

  auto compute = [&](const unsigned char* asb, uint32_t bs) {
    if (nMi == 0) return;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; mi++) {
        if (mi >= nMi) break;
        if constexpr (AH) {
          ldsm_x4(smem_u32(asb) + aLaneOffH + (uint32_t)((mi * 16 * B_LD + kk) * 2), af[mi][0], af[mi][1],
                  af[mi][2], af[mi][3]);
        } else {
          const float* pa = reinterpret_cast<const float*>(asb) + aLaneOff + mi * 16 * A_LD + kk;
          const float2 v0 = *reinterpret_cast<const float2*>(pa);                 // (g,   2q)
          const float2 v1 = *reinterpret_cast<const float2*>(pa + 8 * A_LD);      // (g+8, 2q)
          const float2 v2 = *reinterpret_cast<const float2*>(pa + 8);             // (g,   2q+8)
          const float2 v3 = *reinterpret_cast<const float2*>(pa + 8 * A_LD + 8);  // (g+8, 2q+8)
          af[mi][0] = pack_f16x2(v0.x, v0.y);
          af[mi][1] = pack_f16x2(v1.x, v1.y);
          af[mi][2] = pack_f16x2(v2.x, v2.y);
          af[mi][3] = pack_f16x2(v3.x, v3.y);
        }
      }
      uint32_t bf[8][2];
#pragma unroll
      for (int nj = 0; nj < 4; nj++)
        ldsm_x4(bs + bLaneOff + (uint32_t)((nj * 16 * B_LD + kk) * 2), bf[2 * nj][0], bf[2 * nj][1],
                bf[2 * nj + 1][0], bf[2 * nj + 1][1]);
#pragma unroll
      for (int mi = 0; mi < 2; mi++) {
        if (mi >= nMi) break;
#pragma unroll
        for (int ni = 0; ni < 8; ni++) mma_16816(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
      }
    }
  };

  // ---- pipeline ----------------------------------------------------------------------------------------
  // Group accounting: the prologue commits S-1 groups (tiles 0..S-2) and every iteration commits one
  // (tile t+S-1, possibly empty), so at the top of iteration t tiles 0..t+S-2 have been committed.
#pragma unroll
  for (int s = 0; s < S - 1; s++) {
    if (s < Tl) load_tile(tb + s, s);
    cp_async_commit();
  }
  __half scCur = __ushort_as_half((unsigned short)0), scNxt = scCur;
  if constexpr (CONV) {
    scCur = scale_of(tb);
    cp_async_wait<S - 2>();  // tile 0 landed (this thread's copies)
    __syncthreads();         // ... and everyone's
    if (Tl > 0) convert_tile(0, scCur, 0);
    scCur = scale_of(tb + 1);
    scNxt = scale_of(tb + 2);
  }
  for (int t = 0; t < Tl; t++) {
    if constexpr (CONV) {
      cp_async_wait<S - 3>();  // tiles <= t+1 landed: tile t+1 is converted in this iteration
    } else {
      cp_async_wait<S - 2>();  // tiles <= t landed
    }
    __syncthreads();  // copies visible to all; everyone is done with iteration t-1 (its stage is free)
    {
      const int tn = t + S - 1;
      if (tn < Tl) load_tile(tb + tn, tn % S);  // into stage (t-1) % S, released by the barrier above
      cp_async_commit();
    }
    const int st = t % S;
    const unsigned char* as = As + st * AST;
    if constexpr (CONV) {
      // Convert tile t+1 into Bh[(t+1)&1] (last read by compute(t-1), before the barrier) while
      // computing tile t from Bh[t&1] (written in iteration t-1 / the prologue, before the barrier).
      if (t + 1 < Tl) convert_tile((t + 1) % S, scCur, (t + 1) & 1);
      scCur = scNxt;
      scNxt = scale_of(tb + t + 3);
      compute(as, smem_u32(Bh) + (uint32_t)((t & 1) * B_STAGE));
    } else {
      compute(as, smem_u32(Rs) + (uint32_t)(st * RAW));
    }
  }
  cp_async_wait<0>();  // drain (only empty groups can be pending here)

  // ---- epilogue ----------------------------------------------------------------------------------------
#pragma unroll
  for (int mi = 0; mi < 2; mi++) {
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
      const int r = rowBase + wm * 32 + mi * 16 + hr * 8 + g;
      if (r >= p.nRows) continue;
      if (p.splits > 1) {  // partial sums; the reduce kernel adds res and writes y
        float* pr = p.part + ((size_t)blockIdx.z * p.nRows + r) * m;
#pragma unroll
        for (int ni = 0; ni < 8; ni++) {
          const int c = nBase + wn * 64 + ni * 8 + 2 * q;
          if (c < m) pr[c] = acc[mi][ni][2 * hr];
          if (c + 1 < m) pr[c + 1] = acc[mi][ni][2 * hr + 1];
        }
        continue;
      }
      float* yr = p.y + (size_t)r * p.ldy;
      const float* rr = p.res ? p.res + (size_t)r * p.ldy : nullptr;
#pragma unroll
      for (int ni = 0; ni < 8; ni++) {
        const int c = nBase + wn * 64 + ni * 8 + 2 * q;
        const float v0 = acc[mi][ni][2 * hr], v1 = acc[mi][ni][2 * hr + 1];
        if (p.vec2 && c + 1 < m) {
          float2 o = make_float2(v0, v1);
          if (rr) {
            const float2 b = *reinterpret_cast<const float2*>(rr + c);
            o.x += b.x;
            o.y += b.y;
          }
          *reinterpret_cast<float2*>(yr + c) = o;
        } else {
          if (c < m) yr[c] = (rr ? rr[c] : 0.f) + v0;
          if (c + 1 < m) yr[c + 1] = (rr ? rr[c + 1] : 0.f) + v1;
        }
      }
    }
  }
}

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

template <int S, bool AH>
int smem_for_fmt(int fmt) {
  switch (fmt) {
    case WF_F16: return tc_smem_bytes<WF_F16, S, AH>();
    case WF_BF16: return tc_smem_bytes<WF_BF16, S, AH>();
    case WF_I8: return tc_smem_bytes<WF_I8, S, AH>();
    default: return tc_smem_bytes<WF_I4, S, AH>();
  }
}
int tc_smem_for(int path, int fmt) {
  switch (path) {
    case 2: return smem_for_fmt<3, false>(fmt);
    case 3: return smem_for_fmt<4, false>(fmt);
    case 4: return smem_for_fmt<3, true>(fmt);
    default: return smem_for_fmt<4, true>(fmt);
  }
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

template <class K>
cudaError_t prepare_kernel(K kernel, int smemBytes, unsigned& doneMask) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev < 32 && ((doneMask >> dev) & 1u)) return cudaSuccess;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smemBytes);
  if (e != cudaSuccess) return e;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
  if (e != cudaSuccess) return e;
  if (dev < 32) doneMask |= 1u << dev;
  return cudaSuccess;
}

template <int FMT, int S, int MINB, bool AH>
cudaError_t launch_tc(const TcArgs& a, cudaStream_t s) {
  constexpr int smem = tc_smem_bytes<FMT, S, AH>();
  static unsigned done = 0;
  cudaError_t e = prepare_kernel(gemm_tc_kernel<FMT, S, MINB, AH>, smem, done);
  if (e != cudaSuccess) return e;
  const dim3 grid((unsigned)((a.nRows + BM - 1) / BM), (unsigned)((a.m + BN - 1) / BN), (unsigned)a.splits);
  gemm_tc_kernel<FMT, S, MINB, AH><<<grid, NT, smem, s>>>(a);
  return cudaGetLastError();
}

template <int S, int MINB, bool AH>
cudaError_t launch_tc_fmt(const TcArgs& a, int fmt, cudaStream_t s) {
  switch (fmt) {
    case WF_F16: return launch_tc<WF_F16, S, MINB, AH>(a, s);
    case WF_BF16: return launch_tc<WF_BF16, S, MINB, AH>(a, s);
    case WF_I8: return launch_tc<WF_I8, S, MINB, AH>(a, s);
    case WF_I4: return launch_tc<WF_I4, S, MINB, AH>(a, s);
    default: return cudaErrorInvalidValue;
  }
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
