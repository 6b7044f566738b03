// Shared part of the GEMM check program (gemm_check.cu: helpers, the correctness cases and main;
// gemm_check_timing.cu: the timing tables), linked into one executable (tools/build_cuda.ts).
#pragma once
#include "../kernels.cuh"
#include "check_util.cuh"

#include <vector>

namespace llama_ts {
// test hooks defined in gemm.cu
void gemm_set_path(int p);
int gemm_path_for(const float* x, int ldx, int nRows, const WeightRef& w, const void* workspace);
void gemm_set_skip_dead(int on);
void gemm_set_rows_kernel(int on);
void gemm_set_rows_kb(int kb);  // gemm_rows.cu: 0 = planned per call, else a fixed k-range width
void gemm_set_max_splits(int n);
int gemm_splits_for(int nRows, const WeightRef& w);
}  // namespace llama_ts

namespace gemm_check {

// helpers (gemm_check.cu)
struct HostW {
  int fmt = 0, group = 0, m = 0, k = 0;
  std::vector<uint8_t> q;
  std::vector<__half> sc;
};

HostW make_weight(int fmt, int group, int m, int k, uint64_t seed);

struct DevW {
  llama_ts::WeightRef ref{};
  void* q = nullptr;
  __half* sc = nullptr;
};

DevW upload(const HostW& w);
void release(DevW& d);

// gemm_check_timing.cu: the timing tables (prefill shapes by path, decode batches, one LLaMA-7B layer's
// decode-batch GEMMs by k-range width), printed again together at the end
void timing();

}  // namespace gemm_check
