// Chained decode GEMVs: 2..kMaxGemvChain one-row GEMVs (kernels.cuh gemv_chain) in one persistent launch.
// In a batch-1 decode step the GEMVs wo -> gate/up -> w2 -> next layer's QKV (and w2 -> LM head) follow each
// other with nothing between them. As separate kernels each pays a launch, a ramp (its block must wait for
// the previous kernel's block to leave the SM before it can issue its first loads: one GEMV block fills an
// SM's registers) and a tail. Here one block per SM runs every step: after a warp's last pair of step i it
// issues its first D chunks of step i + 1 (weights only, independent of step i's results), then the grid
// barrier makes step i's outputs visible, and step i + 1 stages its x (RMS-normalized where asked) and runs.
// Each step is exactly the GEMV kernel's three stages (gemv_device.cuh), so the results are the same bits
// as one launch per step.
//
// Grid barrier: one arrival counter and one generation word in device memory, self-resetting (the last
// block to arrive zeroes the counter, then bumps the generation), so graph replays and later launches reuse
// them. Launches on the runtime's stream are serialized (a PDL-launched successor waits at its
// griddepcontrol.wait before it can reach a barrier), so one pair serves every chain. All blocks must be
// resident at once: the grid is one block per SM and the kernel allows one block per SM; with PDL the chain
// launches only after every block of its predecessor has started, so the SMs it waits for free up.
#include "gemv_device.cuh"

namespace llama_ts {
namespace {

__device__ unsigned g_chain_arrive;
__device__ unsigned g_chain_gen;

__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every block's writes before the barrier are visible to every block after it (fence, relaxed arrival,
// acquire of the generation; the acquire also drops the SM's L1 lines, so plain loads of res see them).
__device__ __forceinline__ void grid_barrier() {
  __syncthreads();
  if (threadIdx.x == 0) {
    const unsigned gen = ld_acquire_gpu(&g_chain_gen);  // read before arriving: the last arrival bumps it
    __threadfence();
    if (atomicAdd(&g_chain_arrive, 1u) == gridDim.x - 1) {
      atomicExch(&g_chain_arrive, 0u);
      __threadfence();
      atomicAdd(&g_chain_gen, 1u);
    } else {
      while (ld_acquire_gpu(&g_chain_gen) == gen) {
      }
    }
    __threadfence();
  }
  __syncthreads();
}

template <int FMT>
__global__ void __launch_bounds__(kThreads, LLAMA_TS_GEMV_MINB)
    gemv_chain_kernel(const __grid_constant__ GemvChainParams cp) {
  extern __shared__ float4 dyn_smem[];
  __shared__ float red[1][kMaxWarps];
  const WarpWalk ww = warp_walk();
  GemvPipe<FMT, 1> s;
  gemv_prefetch<FMT, 1>(cp.ph[0], ww, s);
  pdl_wait();  // the first step's x / res are the previous kernel's outputs
  for (int i = 0; i < cp.n; i++) {
    const GemvParams& p = cp.ph[i];
    if (i > 0) {
      gemv_prefetch<FMT, 1>(p, ww, s);
      grid_barrier();
    }
    if (i == cp.n - 1) pdl_trigger();
    float* xsum = gemv_xsum<1>(dyn_smem, p);
    gemv_stage_x<FMT, 1>(p, dyn_smem, xsum, red);
    gemv_run<FMT, 1>(p, ww, dyn_smem, xsum, s);
  }
}

}  // namespace

ChainKernelFn chain_kernel_for(int fmt) {
  switch (fmt) {
    case WF_F32: return gemv_chain_kernel<WF_F32>;
    case WF_F16: return gemv_chain_kernel<WF_F16>;
    case WF_BF16: return gemv_chain_kernel<WF_BF16>;
    case WF_I8: return gemv_chain_kernel<WF_I8>;
    case WF_I4: return gemv_chain_kernel<WF_I4>;
    default: return nullptr;
  }
}

}  // namespace llama_ts
