// Internal contract between gemm.cu (path choice, split-K, the SIMT kernel, gemm()) and gemm_tc.cu (the
// tensor-core kernel and its launcher). Not part of kernels.cuh.
#pragma once
#include "kernels.cuh"

namespace llama_ts {
namespace {

constexpr int BM = 128;        // rows (tokens) per block
constexpr int BN = 128;        // output features per block
constexpr int BK = 32;         // k per pipeline stage

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);  // .x (low 16 bits) = lo
  return *reinterpret_cast<uint32_t*>(&h);
}

}  // namespace

// The tensor-core kernel's parameters.
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
  int skipDead;  // warps whose rows are all >= nRows skip their mma (0 only for gemm.cu's A/B switch, gemm_set_skip_dead)
};

// Launches gemm_tc_kernel<fmt, S, MINB, AH> (gemm_tc.cu; instantiated there for the variants of gemm.cu's
// paths 2..5: <3, 2, false>, <4, 1, false>, <3, 2, true>, <4, 2, true>).
template <int S, int MINB, bool AH>
cudaError_t launch_tc_fmt(const TcArgs& a, int fmt, cudaStream_t s);
// Dynamic shared memory of tensor-core path 2..5 (see gemm.cu) for weight format fmt.
int tc_smem_for(int path, int fmt);

}  // namespace llama_ts
