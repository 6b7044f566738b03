// Shared part of the ops check program (ops_check.cu: helpers, the row-wise ops and main;
// ops_check_cache.cu: kv_write / rope_kv_write and attention; ops_check_timing.cu: the timing table and
// the --profile mode), linked into one executable (tools/build_cuda.ts).
#pragma once
#include "../kernels.cuh"
#include "check_util.cuh"
#include <string>
#include <vector>

namespace ops_check {

extern int g_cases;    // test cases run
extern bool g_small;   // --small: skip the large attention cases

// --------------------------------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------------------------------
struct DevStep {
  int *tokens = nullptr, *positions = nullptr, *seqIndex = nullptr, *logitRows = nullptr, *bt = nullptr;
  int mbps = 1;
  llama_ts::StepDev sd() const { return llama_ts::StepDev{tokens, positions, seqIndex, logitRows, bt, mbps}; }
  void free_all() {
    for (int* p : {tokens, positions, seqIndex, logitRows, bt})
      if (p) CK(cudaFree(p));
  }
};

// helpers (ops_check.cu)
DevStep make_step(const std::vector<int>& tokens, const std::vector<int>& positions, const std::vector<int>& seqIndex,
                  const std::vector<int>& logitRows, const std::vector<int>& bt, int mbps);
// All of x[0..n) NaN and none of them the 0xFFFFFFFF poison pattern (so they were written).
bool all_written_nan(const float* x, size_t n);
void expect_true(const char* what, bool ok);
std::vector<double> to_double(const std::vector<float>& v);
std::vector<float> inv_freq(int hd, double theta = 10000.0);
// Reference rope of one row slice in place (as ref_ops.ts: double math, one rounding to f32).
void ref_rope_row(float* x, int nHeads, int hd, int style, const float* f, int pos);
long long ref_slot(const std::vector<int>& bt, int mbps, int seq, int pos, int bs);
// Shuffled physical blocks: seq s, logical block b -> perm[s * mbps + b] (nBlocks >= nSeqs * mbps).
std::vector<int> shuffled_tables(int nSeqs, int mbps, int nBlocks, uint64_t seed);

// ops_check_cache.cu (run_kv_case instantiated there for float and __half caches)
template <typename T>
void run_kv_case(int fmt, int bs, int nHeads, int nKvHeads, int hd, int style, bool fused);
void attention_cases();

// ops_check_timing.cu
void timing();
// --profile POS NKV: a few decode attention launches (32/NKV/128 f16, maxCtx 4096) for ncu
void profile_decode(int pos, int nKv);

}  // namespace ops_check
