// Tensor-core GEMM kernel of the llama.ts CUDA backend and its launcher; gemm.cu chooses the path and calls
// launch_tc_fmt (gemm_tc.cuh: what the two share).
//   y[r*ldy + j] = (res ? res[r*ldy + j] : 0) + sum_i x[r*ldx + i] * W[j, i]
//
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
#include "gemm_tc.cuh"
#include "device_util.cuh"

namespace llama_ts {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Tensor-core kernel
// ---------------------------------------------------------------------------------------------------------
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

template <int S, bool AH>
int smem_for_fmt(int fmt) {
  switch (fmt) {
    case WF_F16: return tc_smem_bytes<WF_F16, S, AH>();
    case WF_BF16: return tc_smem_bytes<WF_BF16, S, AH>();
    case WF_I8: return tc_smem_bytes<WF_I8, S, AH>();
    default: return tc_smem_bytes<WF_I4, S, AH>();
  }
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

}  // namespace

int tc_smem_for(int path, int fmt) {
  switch (path) {
    case 2: return smem_for_fmt<3, false>(fmt);
    case 3: return smem_for_fmt<4, false>(fmt);
    case 4: return smem_for_fmt<3, true>(fmt);
    default: return smem_for_fmt<4, true>(fmt);
  }
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

template cudaError_t launch_tc_fmt<3, 2, false>(const TcArgs& a, int fmt, cudaStream_t s);
template cudaError_t launch_tc_fmt<4, 1, false>(const TcArgs& a, int fmt, cudaStream_t s);
template cudaError_t launch_tc_fmt<3, 2, true>(const TcArgs& a, int fmt, cudaStream_t s);
template cudaError_t launch_tc_fmt<4, 2, true>(const TcArgs& a, int fmt, cudaStream_t s);

}  // namespace llama_ts
