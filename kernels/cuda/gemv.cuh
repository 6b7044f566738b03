// Internal contract between gemv.cu (the GEMV kernels and their design notes) and gemv_launch.cu (the host
// side: validation, launch cache, launch_gemv and the public gemv / gemv_multi / gemv_gateup of
// kernels.cuh). Not part of kernels.cuh.
#pragma once
#include "kernels.cuh"
#include "gemv_trace.cuh"

namespace llama_ts {
namespace {

constexpr int kMaxNR = 8;            // most activation rows per GEMV call
#ifndef LLAMA_TS_GEMV_THREADS
// Threads per GEMV block. At 512 (16 warps, ~100 registers each) one block fills an SM's register file,
// so the next GEMV's blocks cannot become resident (and start their PDL weight prefetch) until this one's
// block on that SM exits; 256 leaves room for them. Benchmarked with bench/cuda_ab.sh.
#define LLAMA_TS_GEMV_THREADS 512
#endif
constexpr int kThreads = LLAMA_TS_GEMV_THREADS;  // threads per GEMV block
// Floats per staged x row: kp = roundup(k, 32) plus one pad slot (4 floats) per 8 slots (see xslot).
__host__ __device__ inline int x_row_floats(int kp) { return kp + kp / 8; }
// Float offset in dynamic shared memory of the staged RMSNorm weight (normSmem): after nr x rows and, for
// int4, the per-32-element sums (rounded up to 16 bytes).
__host__ __device__ inline int norm_smem_offset(int nr, int kp, bool i4) {
  return nr * x_row_floats(kp) + (i4 ? (nr * (kp / 32) + 3) / 4 * 4 : 0);
}

}  // namespace

// The kernels' parameters (one struct, passed as a __grid_constant__).
struct GemvW {
  const uint8_t* q;
  const __half* scales;
  int m;
  int pairBegin;  // first pair index of this weight in the concatenated pair space
  float* y;
  int ldy;
};

struct GemvParams {
  const float* x;
  int ldx, k, kp;
  int kv;                 // 16-byte vectors per row (vector path)
  int rowBytes;           // bytes per weight row
  int groupsPerRow;       // k / group (quantized)
  unsigned long long gdivMagic;  // vector index -> group index: (v * magic) >> 40
  GemvW w[3];
  int nw;
  int totalPairs;
  const float* res;
  const float* normW;
  float eps;
  int mode;               // 0: rows 2p, 2p+1 of one weight; 1: gate/up (row p of w[0] and of w[1])
  int xVec;               // x rows can be read as float4
  int scalarW;            // float formats: scalar (unaligned) weight path
  int normSmem;           // normW is staged into shared memory with x (cp.async, one round trip)
};

using KernelFn = void (*)(const GemvParams);

// The GEMV kernel for weight format fmt and nr (1..kMaxNR) activation rows; nullptr for others (gemv.cu).
KernelFn kernel_for(int fmt, int nr);

}  // namespace llama_ts
