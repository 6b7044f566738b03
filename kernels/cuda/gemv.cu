// Decode-time GEMV kernels (few activation rows x one weight matrix). Contract: kernels.cuh. Weight
// preparation (the layouts these kernels read) is in weight_prepare.cu.
// The kernel's device code (helpers and its three stages: prefetch, stage x, run) is in gemv_device.cuh,
// shared with gemv_chain.cu, which runs several one-row GEMVs in one launch. The host side (validation,
// launch cache, launch_gemv, the public gemv / gemv_multi / gemv_gateup / gemv_chain) is in gemv_launch.cu;
// gemv.cuh holds what they share (the kernels' parameters, kernel_for, chain_kernel_for).
//
// GEMV design (all formats):
//   * One warp computes TWO weight rows (kRW = 2) for all nRows activation rows: plain/multi mode takes rows
//     2p and 2p+1 of one weight ("pair" p; odd m: the last pair reads its row twice, writes it once);
//     gate/up mode takes row p of w1 and row p of w3 so silu(a)*b is fused into the epilogue. gemv_multi
//     concatenates the pairs of its 1..3 weights in one grid.
//   * Weights stream along k with 16-byte loads (ld.global.nc.L1::no_allocate): in chunk c lane l reads
//     vector v = 32c + l of both rows, so each warp load covers 512 contiguous bytes of a row. A software
//     pipeline keeps D chunks (2*D loads + scales per lane) in flight over the warp's whole sequence of
//     (pair, chunk) items, across pair boundaries; the scale bits are converted only when used.
//   * Persistent grid: one 512-thread block per SM; warp w of block b takes pairs g, g + G, ... with
//     g = w * gridDim + b, G = all warps, so every SM gets the same number of pairs +-1.
//   * Programmatic dependent launch (sm_90): the kernel issues its first D chunks (weights only), then
//     griddepcontrol.wait (earlier kernels' x / res / y are now visible), then allows the next kernel to
//     launch. Back to back GEMVs thus overlap one's weight prefetch with the other's tail.
//   * The nRows activation rows are staged with cp.async (or plain loads when x rows are not 16-byte
//     aligned) once per block into shared memory as f32, RMS-normalized in place when normW != null. Layout:
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
#include "gemv_device.cuh"

namespace llama_ts {
namespace {

template <int FMT, int NR>
__global__ void __launch_bounds__(kThreads, LLAMA_TS_GEMV_MINB) gemv_kernel(const __grid_constant__ GemvParams p) {
  extern __shared__ float4 dyn_smem[];
  __shared__ float red[NR][kMaxWarps];
  const WarpWalk ww = warp_walk();
#if LLAMA_TS_PDL_EARLY_TRIGGER && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // see device_util.cuh pdl_enter
#endif
  GemvPipe<FMT, NR> s;
  gemv_prefetch<FMT, NR>(p, ww, s);
  // Programmatic dependent launch: the prefetch read only weights; x, res and y belong to earlier kernels of
  // the stream, so wait for them here. Let the next kernel launch early (its own wait protects it).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#if !LLAMA_TS_PDL_EARLY_TRIGGER
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
#endif
  float* xsum = gemv_xsum<NR>(dyn_smem, p);
  gemv_stage_x<FMT, NR>(p, dyn_smem, xsum, red);
  gemv_run<FMT, NR>(p, ww, dyn_smem, xsum, s);
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
