// Decode-time GEMV kernels (few activation rows x one weight matrix). Contract: kernels.cuh. Weight
// preparation (the layouts these kernels read) is in weight_prepare.cu.
// The host side (validation, launch cache, launch_gemv and the public gemv / gemv_multi / gemv_gateup) is in
// gemv_launch.cu; gemv.cuh holds what the two share (the kernels' parameters, kernel_for).
//
// GEMV design (all formats):
//   * One warp computes TWO weight rows (kRW = 2) for all nRows activation rows: plain/multi mode takes rows
//     2p and 2p+1 of one weight ("pair" p; odd m: the last pair reads its row twice, writes it once);
//     gate/up mode takes row p of w1 and row p of w3 so silu(a)*b is fused into the epilogue. gemv_multi
//     concatenates the pairs of its 1..3 weights in one grid.
//   * Weights stream along k with 16-byte loads (ld.global.nc.L1::no_allocate): in chunk c lane l reads
//     vector v = 32c + l of both rows, so each warp load covers 512 contiguous bytes of a row. A software
//     pipeline keeps D chunks (2*D loads + scales per lane) in flight over the warp's whole sequence of
//     (pair, chunk) items, across pair boundaries; the scale bits are converted only when used. One-row
//     GEMVs pick D, an L2 prefetch distance and the accumulator chains per format (OneRow).
//   * Diagnostic build: -DLLAMA_TS_GEMV_TRACE=N records per-block clock stamps (gemv_trace.cuh).
//   * Persistent grid: one 512-thread block per SM; warp w of block b takes pairs g, g + G, ... with
//     g = w * gridDim + b, G = all warps, so every SM gets the same number of pairs +-1.
//   * Programmatic dependent launch (sm_90): the kernel issues its first D chunks (weights only), then
//     griddepcontrol.wait (earlier kernels' x / res / y are now visible), then allows the next kernel to
//     launch. Back to back GEMVs thus overlap one's weight prefetch with the other's tail.
//   * The nRows activation rows are staged with cp.async (or plain loads when x rows are not 16-byte
//     aligned) once per block into shared memory as f32, in one pass and one barrier: with normW, x * normW
//     is stored (the norm weight comes in the same cp.async round trip where it fits, normSmem) and the RMS
//     factor multiplies the dot products in the epilogue. Layout:
//     16-byte slot c of a row at slot c + c/8, so a lane's 1..8 slots of one weight vector are contiguous
//     (immediate-offset LDS.128) and the 8 lanes of a quarter warp hit 8 distinct bank groups in every
//     format. Each x value read from shared memory serves both weight rows.
//   * Partial sums are warp-reduced with shuffles; lane i < 2*nRows writes one output (res read and y
//     written by the same lane, so res may alias y).
//   Dequantization, for the 4 f32 x values of one 16-byte x slot:
//     F32 4 floats per 16-byte vector; F16 8 (cvt half2 -> float2); BF16 8 (shift / mask);
//     I8  16 int8: byte ^ 0x80 put in the mantissa of 2^23 by PRMT, minus (2^23 + 128) -> exact value;
//         per-vector dot product times its group's scale;
//     I4  32 nibbles (one q4_0 sub-block): the nibble n goes to the top mantissa bits of 16.0 (SHF + LOP3
//         per 4 bytes, one PRMT per element), giving exactly 16 + n; the sub-block dot product is
//         sum((16 + n) x) - 24 * sum(x) = sum((n - 8) x) with sum(x) per 32 elements precomputed at staging:
//         2 instructions per element (PRMT + FFMA) instead of 3, at the cost of a few bits of f32 precision
//         in the subtraction (measured NMSE 4e-13..3e-12 against a double reference; check tolerance 1e-9).
// Requirements: float formats any k >= 1 (16-byte vector path when k % (16 / elemsize) == 0 and q is
// 16-byte aligned, else a slower scalar path); quantized formats k % 32 == 0, group % 32 == 0,
// k % group == 0, q 16-byte aligned; 1 <= nRows <= gemv_max_rows(k); ldx >= k and ldy >= m when nRows > 1;
// x must not alias any y. Weights must not be written by a kernel that runs concurrently with (or, without
// a stream sync, right before) the GEMV: the prefetch reads them before griddepcontrol.wait.
#include "gemv.cuh"
#include "device_util.cuh"

namespace llama_ts {
namespace {

constexpr int kRW = 2;               // weight rows per warp
#ifndef LLAMA_TS_GEMV_MINB
// Blocks per SM the GEMV is compiled for (__launch_bounds__ min blocks). 2 caps registers at 64 per thread
// so that the next GEMV's block could fit beside this one's and start its PDL weight prefetch during this
// one's tail; measured on the H100 (bench/cuda_ab.sh, AB_DEFINE=LLAMA_TS_GEMV_MINB=2) it costs 17-37% of
// decode speed (the pipeline registers spill), so 1 stays.
#define LLAMA_TS_GEMV_MINB 1
#endif
constexpr int kMaxWarps = kThreads / 32;

#if LLAMA_TS_GEMV_TRACE
__device__ GemvTraceRec g_trace[LLAMA_TS_GEMV_TRACE];
__device__ unsigned g_trace_n;
__device__ __forceinline__ unsigned long long gtimer() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ unsigned smid() {
  unsigned r;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(r));
  return r;
}
#define GEMV_TRACE_STAMP(i) \
  if (threadIdx.x == 0) trClk[i] = clock64();
#else
#define GEMV_TRACE_STAMP(i)
#endif

template <int FMT> struct FmtInfo;
template <> struct FmtInfo<WF_F32> { static constexpr int VEC = 4; static constexpr bool QUANT = false; };
template <> struct FmtInfo<WF_F16> { static constexpr int VEC = 8; static constexpr bool QUANT = false; };
template <> struct FmtInfo<WF_BF16> { static constexpr int VEC = 8; static constexpr bool QUANT = false; };
template <> struct FmtInfo<WF_I8> { static constexpr int VEC = 16; static constexpr bool QUANT = true; };
template <> struct FmtInfo<WF_I4> { static constexpr int VEC = 32; static constexpr bool QUANT = true; };

// Pipeline depth: chunks (one 16-byte vector per lane and weight row) in flight per warp; 2*D loads per lane.
// One activation row (batch-1 decode) gets its own pipeline depth, L2 prefetch distance and accumulator
// split per format. The chunks requested at block entry are what keeps HBM busy while the block waits for the
// previous kernel and stages x (bench/RESULTS.md, 2026-11-26, GEMV block trace). Measured on the H100, one 7B
// layer's four GEMVs (gemv_check --layer-timing), from D = 4, no L2 prefetch, one chain: f16 149.0 us -> 140.7
// at D = 8 -> 138.7 with 4 chunks more prefetched into L2; int8 82.9 -> 81.4 at D = 6 -> 81.0 with two
// chains; int4 54.5 -> 53.6 with two chains, but slower with anything more in flight at entry (56.3 at D = 6,
// 60.3 at D = 8, 56.3 with 4 chunks of L2 prefetch). The macros override every format (A/B builds).
template <int FMT> struct OneRow {
#ifdef LLAMA_TS_GEMV_D1
  static constexpr int depth = LLAMA_TS_GEMV_D1;
#else
  static constexpr int depth = FMT == WF_I4 ? 4 : FMT == WF_I8 ? 6 : 8;
#endif
#ifdef LLAMA_TS_GEMV_L2AHEAD
  static constexpr int l2Ahead = LLAMA_TS_GEMV_L2AHEAD;  // chunks past the pipeline, prefetched into L2
#else
  static constexpr int l2Ahead = FmtInfo<FMT>::QUANT ? 0 : 4;
#endif
#ifdef LLAMA_TS_GEMV_SPLITACC
  static constexpr int chains = LLAMA_TS_GEMV_SPLITACC ? 2 : 1;  // accumulator chains of a chunk's dot product
#else
  static constexpr int chains = FmtInfo<FMT>::QUANT ? 2 : 1;
#endif
};
template <int FMT, int NR> struct Depth {
  static constexpr int value = NR == 1 ? OneRow<FMT>::depth
                               : NR <= 4 ? 4 : (FmtInfo<FMT>::QUANT && NR >= 6) ? 2 : 3;  // 2 avoids spills
};

// 16-byte streaming load, predicated inside the asm (zeros when !ok) so the compiler can never speculate
// it for out-of-range vectors.
__device__ __forceinline__ uint4 ld_stream16(const void* p, bool ok) {
  uint4 r;
  asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %5, 0;\n\t"
      "mov.b32 %0, 0;\n\tmov.b32 %1, 0;\n\tmov.b32 %2, 0;\n\tmov.b32 %3, 0;\n\t"
      "@q ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n\t}"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p), "r"((int)ok));
  return r;
}

// Scale bits (half), predicated inside the asm like ld_stream16 (0 when !ok), into a 32-bit register: the
// conversion to float happens only when the chunk is computed, so the load stays in flight meanwhile.
__device__ __forceinline__ uint32_t ld_scale_bits(const __half* p, bool ok) {
  uint32_t b;
  asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %2, 0;\n\tmov.b32 %0, 0;\n\t"
      "@q ld.global.nc.u16 %0, [%1];\n\t}"
      : "=r"(b)
      : "l"(p), "r"((int)ok));
  return b;
}

__device__ __forceinline__ float scale_of(uint32_t bits) { return __half2float(__ushort_as_half((unsigned short)bits)); }

__device__ __forceinline__ uint32_t word_of(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// x rows in shared memory: 16-byte slot c (elements 4c..4c+3) of a row lives at slot c + c/8 (one pad slot
// after every 8): a lane's 1..8 slots of one weight vector stay contiguous (immediate-offset LDS.128) and the
// 8 lanes of a quarter-warp hit 8 different 16-byte bank groups for every format.
__device__ __forceinline__ int xslot(int c) { return c + (c >> 3); }
__device__ __forceinline__ int xelem(int e) { return (xslot(e >> 2) << 2) | (e & 3); }

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned sa = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t b, uint32_t c) {  // (a & b) | c
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// The 4 dequantized (unscaled) weight values that pair with x slot s of a 16-byte vector.
template <int FMT>
__device__ __forceinline__ void get4(const uint4& v, int s, float (&f)[4]) {
  if constexpr (FMT == WF_F32) {
    f[0] = __uint_as_float(v.x); f[1] = __uint_as_float(v.y);
    f[2] = __uint_as_float(v.z); f[3] = __uint_as_float(v.w);
  } else if constexpr (FMT == WF_F16) {
    const uint32_t a = word_of(v, 2 * s), b = word_of(v, 2 * s + 1);
    const float2 fa = __half22float2(*reinterpret_cast<const __half2*>(&a));
    const float2 fb = __half22float2(*reinterpret_cast<const __half2*>(&b));
    f[0] = fa.x; f[1] = fa.y; f[2] = fb.x; f[3] = fb.y;
  } else if constexpr (FMT == WF_BF16) {
    const uint32_t a = word_of(v, 2 * s), b = word_of(v, 2 * s + 1);
    f[0] = __uint_as_float(a << 16); f[1] = __uint_as_float(a & 0xFFFF0000u);
    f[2] = __uint_as_float(b << 16); f[3] = __uint_as_float(b & 0xFFFF0000u);
  } else if constexpr (FMT == WF_I8) {
    i8x4_to_f32(word_of(v, s), f);
  } else if constexpr (FMT == WF_I4) {
    // s < 4: low nibbles of word s (elements 4s..4s+3); s >= 4: high nibbles of word s-4 (elements 16+4(s-4)..)
    const uint32_t w = word_of(v, s & 3);
    const uint32_t t = lop3_and_or((s < 4) ? (w << 3) : (w >> 1), 0x78787878u, 0x80808080u);
#pragma unroll
    for (int i = 0; i < 4; i++)
      f[i] = __uint_as_float(__byte_perm(t, 0x41u, 0x4055u | (i << 8)));  // bits 0x41 (0x80|n<<3) 00 00 = 16 + n
  }
}

// Row pointers of one pair (two weight rows).
struct Pair {
  const uint8_t* rp[kRW];
  const __half* sp[kRW];
  int wi, lp;
};

__device__ __forceinline__ void setup_pair(const GemvParams& p, int pr, Pair& c) {
  int wi = 0;
  if (p.nw > 1 && pr >= p.w[1].pairBegin) wi = 1;
  if (p.nw > 2 && pr >= p.w[2].pairBegin) wi = 2;
  const int lp = pr - p.w[wi].pairBegin;
  c.wi = wi;
  c.lp = lp;
  size_t r0, r1;
  const uint8_t* q0;
  const uint8_t* q1;
  const __half* s0;
  const __half* s1;
  if (p.mode == 1) {
    r0 = (size_t)lp; r1 = (size_t)lp;
    q0 = p.w[0].q; q1 = p.w[1].q; s0 = p.w[0].scales; s1 = p.w[1].scales;
  } else {
    const int m = p.w[wi].m;
    r0 = (size_t)(2 * lp);
    r1 = (size_t)min(2 * lp + 1, m - 1);  // odd m: the last warp reads its row twice, writes it once
    q0 = q1 = p.w[wi].q;
    s0 = s1 = p.w[wi].scales;
  }
  c.rp[0] = q0 + r0 * (size_t)p.rowBytes;
  c.rp[1] = q1 + r1 * (size_t)p.rowBytes;
  c.sp[0] = s0 ? s0 + r0 * (size_t)p.groupsPerRow : nullptr;
  c.sp[1] = s1 ? s1 + r1 * (size_t)p.groupsPerRow : nullptr;
}

// Moves a cursor over the warp's flat (pair, chunk) sequence one chunk on: pair pr, chunk ch, pointers c (set
// up when the next pair exists, pr < total).
__device__ __forceinline__ void next_chunk(const GemvParams& p, int total, int gstride, int nch, int& pr, int& ch,
                                           Pair& c) {
  if (++ch == nch) {
    ch = 0;
    pr += gstride;
    if (pr < total) setup_pair(p, pr, c);
  }
}

// Loads chunk `ch` of a pair (lane's vector v = 32*ch + lane of both rows) and its scales; nothing is read
// when !valid or v is past the row end (zeros instead).
template <int FMT>
__device__ __forceinline__ void load_item(const GemvParams& p, const Pair& c, bool valid, int ch, int lane,
                                          uint4 (&wv)[kRW], uint32_t (&sc)[kRW]) {
  const int v = 32 * ch + lane;
  const bool ok = valid && v < p.kv;
#pragma unroll
  for (int rw = 0; rw < kRW; rw++) {
    wv[rw] = ld_stream16(c.rp[rw] + (size_t)(ok ? v : 0) * 16, ok);
    if constexpr (FmtInfo<FMT>::QUANT) {
      // lanes without a vector read the row's first scale (always valid when valid) and never use it
      const int g = ok ? (int)(((unsigned long long)(unsigned)v * p.gdivMagic) >> 40) : 0;
      sc[rw] = ld_scale_bits(c.sp[rw] + g, valid);
    }
  }
}

template <int FMT, int NR>
__device__ __forceinline__ void compute_item(const GemvParams& p, int ch, int lane, const float4* xs4,
                                             const float* xsum, const uint4 (&wv)[kRW], const uint32_t (&sc)[kRW],
                                             float (&acc)[kRW][NR]) {
  constexpr int VEC = FmtInfo<FMT>::VEC;
  constexpr int NS = VEC / 4;  // x slots per vector, contiguous (same 8-slot line)
  const int v = 32 * ch + lane;
  if (v >= p.kv) return;
  const int rowSlots = x_row_floats(p.kp) >> 2;
  const float4* xb = xs4 + xslot(v * NS);
  constexpr int NA = (NR == 1 && FmtInfo<FMT>::QUANT) ? OneRow<FMT>::chains : 1;  // accumulator chains
  float d[NA][kRW][NR];
#pragma unroll
  for (int a = 0; a < NA; a++)
#pragma unroll
    for (int rw = 0; rw < kRW; rw++)
#pragma unroll
      for (int r = 0; r < NR; r++) d[a][rw][r] = FmtInfo<FMT>::QUANT ? 0.f : acc[rw][r];
#pragma unroll
  for (int s = 0; s < NS; s++) {
    float f[kRW][4];
#pragma unroll
    for (int rw = 0; rw < kRW; rw++) get4<FMT>(wv[rw], s, f[rw]);
#pragma unroll
    for (int r = 0; r < NR; r++) {
      const float4 xv = xb[r * rowSlots + s];
#pragma unroll
      for (int rw = 0; rw < kRW; rw++) {
        float t = d[s % NA][rw][r];
        t = fmaf(f[rw][0], xv.x, t);
        t = fmaf(f[rw][1], xv.y, t);
        t = fmaf(f[rw][2], xv.z, t);
        t = fmaf(f[rw][3], xv.w, t);
        d[s % NA][rw][r] = t;
      }
    }
  }
  if constexpr (NA == 2) {
#pragma unroll
    for (int rw = 0; rw < kRW; rw++)
#pragma unroll
      for (int r = 0; r < NR; r++) d[0][rw][r] += d[1][rw][r];
  }
  if constexpr (FmtInfo<FMT>::QUANT) {
    if constexpr (FMT == WF_I4) {
      const int nsb = p.kp >> 5;
#pragma unroll
      for (int r = 0; r < NR; r++) {
        const float xsv = xsum[r * nsb + v];
#pragma unroll
        for (int rw = 0; rw < kRW; rw++) d[0][rw][r] = fmaf(-24.f, xsv, d[0][rw][r]);
      }
    }
#pragma unroll
    for (int rw = 0; rw < kRW; rw++)
#pragma unroll
      for (int r = 0; r < NR; r++) acc[rw][r] = fmaf(scale_of(sc[rw]), d[0][rw][r], acc[rw][r]);
  } else {
#pragma unroll
    for (int rw = 0; rw < kRW; rw++)
#pragma unroll
      for (int r = 0; r < NR; r++) acc[rw][r] = d[0][rw][r];
  }
}

template <int FMT>
__device__ __forceinline__ float load_scalar_w(const uint8_t* rowp, int e) {
  if constexpr (FMT == WF_F32) return __ldg(reinterpret_cast<const float*>(rowp) + e);
  else if constexpr (FMT == WF_F16) {
    unsigned short b = __ldg(reinterpret_cast<const unsigned short*>(rowp) + e);
    return __half2float(__ushort_as_half(b));
  } else {
    unsigned short b = __ldg(reinterpret_cast<const unsigned short*>(rowp) + e);
    return __uint_as_float((uint32_t)b << 16);
  }
}

// Warp-reduces acc and writes the pair's outputs (lane-distributed).
// inv: the x rows' RMS factors (1 without a norm; see the staging in gemv_kernel).
template <int NR>
__device__ __forceinline__ void reduce_and_store(const GemvParams& p, int wi, int lp, int lane,
                                                 float (&acc)[kRW][NR], const float (&inv)[NR]) {
#pragma unroll
  for (int rw = 0; rw < kRW; rw++)
#pragma unroll
    for (int r = 0; r < NR; r++) {
      float t = acc[rw][r];
      t += __shfl_xor_sync(0xffffffffu, t, 16);
      t += __shfl_xor_sync(0xffffffffu, t, 8);
      t += __shfl_xor_sync(0xffffffffu, t, 4);
      t += __shfl_xor_sync(0xffffffffu, t, 2);
      t += __shfl_xor_sync(0xffffffffu, t, 1);
      acc[rw][r] = p.normW != nullptr ? t * inv[r] : t;
    }
  if (p.mode == 1) {
    // lane r < NR writes y[r*ldy + lp] = silu(gate) * up
    float g = 0.f, u = 0.f;
#pragma unroll
    for (int r = 0; r < NR; r++)
      if (lane == r) { g = acc[0][r]; u = acc[1][r]; }
    if (lane < NR) {
      const float sg = g / (1.f + expf(-g));
      p.w[0].y[(size_t)lane * p.w[0].ldy + lp] = sg * u;
    }
  } else {
    // lane = rw * NR + r writes row 2*lp + rw of x-row r
    float o = 0.f;
#pragma unroll
    for (int rw = 0; rw < kRW; rw++)
#pragma unroll
      for (int r = 0; r < NR; r++)
        if (lane == rw * NR + r) o = acc[rw][r];
    if (lane < kRW * NR) {
      const int rw = lane / NR, r = lane - rw * NR;
      const int row = 2 * lp + rw;
      const GemvW& w = p.w[wi];
      if (row < w.m) {
        const size_t idx = (size_t)r * w.ldy + row;
        const float base = p.res ? p.res[idx] : 0.f;
        w.y[idx] = base + o;
      }
    }
  }
}

template <int FMT, int NR>
__global__ void __launch_bounds__(kThreads, LLAMA_TS_GEMV_MINB) gemv_kernel(const __grid_constant__ GemvParams p) {
  constexpr int D = Depth<FMT, NR>::value;
  extern __shared__ float4 dyn_smem[];
  __shared__ float red[NR][kMaxWarps];
  float4* xs4 = dyn_smem;
  float* xs = reinterpret_cast<float*>(dyn_smem);
  const int rowFloats = x_row_floats(p.kp);
  float* xsum = xs + (size_t)NR * rowFloats;  // int4 sum trick only

  const int tid = threadIdx.x;
  const int nt = blockDim.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int nwarps = nt >> 5;
  const int gstride = gridDim.x * nwarps;
  const int total = p.totalPairs;
  const int firstPair = warp * gridDim.x + blockIdx.x;
  const bool vecPath = !p.scalarW;
  const int nch = (p.kv + 31) >> 5;  // 32-vector chunks per row
#if LLAMA_TS_GEMV_TRACE
  unsigned long long trClk[4] = {0, 0, 0, 0}, trG0 = 0;
  if (tid == 0) { trClk[0] = clock64(); trG0 = gtimer(); }
#endif

#if LLAMA_TS_PDL_EARLY_TRIGGER && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // see device_util.cuh pdl_enter
#endif
  // ---- software pipeline over the warp's flat (pair, chunk) sequence: D chunks in flight ----
  uint4 wv[D][kRW];
  uint32_t sc[D][kRW];
  Pair lc = {};  // load cursor
  int lpr = firstPair, lch = 0;
  if (vecPath) {
    if (lpr < total) setup_pair(p, lpr, lc);
#pragma unroll
    for (int j = 0; j < D; j++) {
      load_item<FMT>(p, lc, lpr < total, lch, lane, wv[j], sc[j]);
      next_chunk(p, total, gstride, nch, lpr, lch, lc);
    }
  }

  constexpr int kL2Ahead = NR == 1 ? OneRow<FMT>::l2Ahead : 0;
  if (kL2Ahead > 0 && vecPath) {
    // the next kL2Ahead chunks of the warp's sequence into L2 (4 lanes x 128 bytes per 512-byte row chunk)
    Pair pc = lc;
    int ppr = lpr, pch = lch;
    for (int j = 0; j < kL2Ahead && ppr < total; j++) {
      const int v = 32 * pch + lane;
      if ((lane & 7) == 0 && v < p.kv) {
#pragma unroll
        for (int rw = 0; rw < kRW; rw++)
          asm volatile("prefetch.global.L2 [%0];" ::"l"(pc.rp[rw] + (size_t)v * 16));
      }
      next_chunk(p, total, gstride, nch, ppr, pch, pc);
    }
  }
  // Programmatic dependent launch: everything above reads only weights; x, res and y belong to earlier
  // kernels of the stream, so wait for them here. Let the next kernel launch early (its own wait protects it).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#if !LLAMA_TS_PDL_EARLY_TRIGGER
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
#endif
  GEMV_TRACE_STAMP(1)

  // ---- stage x (nRows rows, padded to kp with zeros) while the first chunks are in flight ----
  // One pass, one barrier: lane l of warp w owns 16-byte slot c = 32w + l (+ multiples of the block's
  // threads) of every row. It copies the slot (cp.async, or plain loads when x rows are not 16-byte aligned)
  // and, with normSmem, the norm weight's slot; waits for its own copies only; then multiplies by the norm
  // weight, accumulates sum(x^2) and (int4) the per-32-element sums over 8 lanes, all on its own slots. The
  // RMS factor inv = rsqrt(mean(x^2) + eps) is applied to the dot products in the epilogue (the GEMV is
  // linear in x), so no second pass over x waits for the block-wide sum.
  const int kq = p.kp >> 2;       // logical slots per row
  const int rs = rowFloats >> 2;  // physical slots per row
  constexpr bool kSums = (FMT == WF_I4);
  const bool norm = p.normW != nullptr;
  float4* nws4 = reinterpret_cast<float4*>(xs + norm_smem_offset(NR, p.kp, FMT == WF_I4));
  const int nsb = p.kp >> 5;
  if (p.xVec) {  // every owned slot in flight at once
    for (int c = warp * 32 + lane; c < kq; c += nt) {
      const int e = 4 * c;
#pragma unroll
      for (int r = 0; r < NR; r++) {
        float4* dst = &xs4[r * rs + xslot(c)];
        if (e < p.k) cp_async16(dst, p.x + (size_t)r * p.ldx + e);
        else *dst = make_float4(0.f, 0.f, 0.f, 0.f);
      }
      if (p.normSmem) {
        if (e < p.k) cp_async16(&nws4[c], p.normW + e);
        else nws4[c] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
    cp_async_wait_all();  // this thread's copies: the pass below reads only its own slots
  }
  float ss[NR];
#pragma unroll
  for (int r = 0; r < NR; r++) ss[r] = 0.f;
  const bool pass = norm || kSums || !p.xVec;  // else the cp.async copies are all there is to do
  for (int cb = warp * 32; pass && cb < kq; cb += nt) {  // warp-uniform (8-lane shuffles below)
    const int c = cb + lane, e = 4 * c;
    const bool ok = c < kq;
    float4 v[NR];
    if (p.xVec) {
#pragma unroll
      for (int r = 0; r < NR; r++) v[r] = ok ? xs4[r * rs + xslot(c)] : make_float4(0.f, 0.f, 0.f, 0.f);
    } else {
#pragma unroll
      for (int r = 0; r < NR; r++) {
        v[r] = make_float4(0.f, 0.f, 0.f, 0.f);
        const float* xr = p.x + (size_t)r * p.ldx;
        if (ok && e + 0 < p.k) v[r].x = __ldg(xr + e + 0);
        if (ok && e + 1 < p.k) v[r].y = __ldg(xr + e + 1);
        if (ok && e + 2 < p.k) v[r].z = __ldg(xr + e + 2);
        if (ok && e + 3 < p.k) v[r].w = __ldg(xr + e + 3);
      }
    }
    float4 nw = make_float4(1.f, 1.f, 1.f, 1.f);
    if (norm && ok) {
      if (p.normSmem) {
        nw = nws4[c];
      } else {
        nw.x = e + 0 < p.k ? __ldg(p.normW + e + 0) : 0.f;
        nw.y = e + 1 < p.k ? __ldg(p.normW + e + 1) : 0.f;
        nw.z = e + 2 < p.k ? __ldg(p.normW + e + 2) : 0.f;
        nw.w = e + 3 < p.k ? __ldg(p.normW + e + 3) : 0.f;
      }
    }
#pragma unroll
    for (int r = 0; r < NR; r++) {
      float4 a = v[r];
      if (norm) {
        ss[r] = fmaf(a.x, a.x, ss[r]); ss[r] = fmaf(a.y, a.y, ss[r]);
        ss[r] = fmaf(a.z, a.z, ss[r]); ss[r] = fmaf(a.w, a.w, ss[r]);
        a.x *= nw.x; a.y *= nw.y; a.z *= nw.z; a.w *= nw.w;
      }
      if (ok && (norm || !p.xVec)) xs4[r * rs + xslot(c)] = a;
      if constexpr (kSums) {
        float t = (a.x + a.y) + (a.z + a.w);
        t += __shfl_xor_sync(0xffffffffu, t, 1);
        t += __shfl_xor_sync(0xffffffffu, t, 2);
        t += __shfl_xor_sync(0xffffffffu, t, 4);
        if (ok && (lane & 7) == 0) xsum[r * nsb + (c >> 3)] = t;
      }
    }
  }
  if (norm) {
#pragma unroll
    for (int r = 0; r < NR; r++) {
      float t = ss[r];
      t += __shfl_xor_sync(0xffffffffu, t, 16);
      t += __shfl_xor_sync(0xffffffffu, t, 8);
      t += __shfl_xor_sync(0xffffffffu, t, 4);
      t += __shfl_xor_sync(0xffffffffu, t, 2);
      t += __shfl_xor_sync(0xffffffffu, t, 1);
      if (lane == 0) red[r][warp] = t;
    }
  }
  __syncthreads();
  float inv[NR];  // applied in reduce_and_store; 1 without a norm
#pragma unroll
  for (int r = 0; r < NR; r++) {
    inv[r] = 1.f;
    if (norm) {
      float t = 0.f;
      for (int w = 0; w < nwarps; w++) t += red[r][w];
      inv[r] = rsqrtf(t / (float)p.k + p.eps);
    }
  }
  GEMV_TRACE_STAMP(2)

  if constexpr (!FmtInfo<FMT>::QUANT) {
    if (!vecPath) {
      // scalar path: rows not 16-byte aligned (float formats with k % (16/elemsize) != 0)
      for (int pr = firstPair; pr < total; pr += gstride) {
        Pair c;
        setup_pair(p, pr, c);
        float acc[kRW][NR];
#pragma unroll
        for (int rw = 0; rw < kRW; rw++)
#pragma unroll
          for (int r = 0; r < NR; r++) acc[rw][r] = 0.f;
#pragma unroll 4
        for (int e = lane; e < p.k; e += 32) {
          float f[kRW];
#pragma unroll
          for (int rw = 0; rw < kRW; rw++) f[rw] = load_scalar_w<FMT>(c.rp[rw], e);
          const int pe = xelem(e);
#pragma unroll
          for (int r = 0; r < NR; r++) {
            const float xv = xs[r * rowFloats + pe];
#pragma unroll
            for (int rw = 0; rw < kRW; rw++) acc[rw][r] = fmaf(f[rw], xv, acc[rw][r]);
          }
        }
        reduce_and_store<NR>(p, c.wi, c.lp, lane, acc, inv);
      }
      return;
    }
  }

  // ---- main loop: compute chunk in slot j, refill slot j with the chunk D ahead ----
  int cpr = firstPair, cch = 0;
  Pair cc = {};
  if (cpr < total) setup_pair(p, cpr, cc);
  float acc[kRW][NR];
#pragma unroll
  for (int rw = 0; rw < kRW; rw++)
#pragma unroll
    for (int r = 0; r < NR; r++) acc[rw][r] = 0.f;
  while (cpr < total) {
#pragma unroll
    for (int j = 0; j < D; j++) {
      compute_item<FMT, NR>(p, cch, lane, xs4, xsum, wv[j], sc[j], acc);
      load_item<FMT>(p, lc, lpr < total, lch, lane, wv[j], sc[j]);
      next_chunk(p, total, gstride, nch, lpr, lch, lc);
      if (++cch == nch) {
        reduce_and_store<NR>(p, cc.wi, cc.lp, lane, acc, inv);
#pragma unroll
        for (int rw = 0; rw < kRW; rw++)
#pragma unroll
          for (int r = 0; r < NR; r++) acc[rw][r] = 0.f;
        cch = 0;
        cpr += gstride;
        if (cpr >= total) break;
        setup_pair(p, cpr, cc);
      }
    }
  }
#if LLAMA_TS_GEMV_TRACE
  __syncthreads();
  if (tid == 0) {
    const unsigned i = atomicAdd(&g_trace_n, 1u);
    if (i < LLAMA_TS_GEMV_TRACE) {
      GemvTraceRec& r = g_trace[i];
      r.clk[0] = trClk[0]; r.clk[1] = trClk[1]; r.clk[2] = trClk[2]; r.clk[3] = clock64();
      r.gt0 = trG0; r.gt3 = gtimer(); r.smid = smid(); r.k = (unsigned)p.k; r.pairs = (unsigned)total;
    }
  }
#endif
}

template <int FMT>
KernelFn kernel_for_nr(int nr) {
  switch (nr) {
    case 1: return gemv_kernel<FMT, 1>;
    case 2: return gemv_kernel<FMT, 2>;
    case 3: return gemv_kernel<FMT, 3>;
    case 4: return gemv_kernel<FMT, 4>;
    case 5: return gemv_kernel<FMT, 5>;
    case 6: return gemv_kernel<FMT, 6>;
    case 7: return gemv_kernel<FMT, 7>;
    case 8: return gemv_kernel<FMT, 8>;
    default: return nullptr;
  }
}

}  // namespace

#if LLAMA_TS_GEMV_TRACE
int gemv_trace_take(GemvTraceRec* out, int cap) {
  unsigned n = 0;
  if (cudaDeviceSynchronize() != cudaSuccess) return -1;
  if (cudaMemcpyFromSymbol(&n, g_trace_n, sizeof n) != cudaSuccess) return -1;
  if (n > LLAMA_TS_GEMV_TRACE) n = LLAMA_TS_GEMV_TRACE;
  const int c = (int)n < cap ? (int)n : cap;
  if (c > 0 && cudaMemcpyFromSymbol(out, g_trace, sizeof(GemvTraceRec) * c) != cudaSuccess) return -1;
  const unsigned zero = 0;
  if (cudaMemcpyToSymbol(g_trace_n, &zero, sizeof zero) != cudaSuccess) return -1;
  return c;
}
#endif

KernelFn kernel_for(int fmt, int nr) {
  switch (fmt) {
    case WF_F32: return kernel_for_nr<WF_F32>(nr);
    case WF_F16: return kernel_for_nr<WF_F16>(nr);
    case WF_BF16: return kernel_for_nr<WF_BF16>(nr);
    case WF_I8: return kernel_for_nr<WF_I8>(nr);
    case WF_I4: return kernel_for_nr<WF_I4>(nr);
    default: return nullptr;
  }
}

}  // namespace llama_ts
