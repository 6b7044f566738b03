// Shared part of the GEMV check program (gemv_check.cu: helpers, gemv / gemv_multi / gemv_gateup cases and
// main; gemv_check_prepare.cu: repack and quantize cases; gemv_check_timing.cu: the timing table), linked
// into one executable (tools/build_cuda.ts).
#pragma once
#include "../kernels.cuh"
#include "check_util.cuh"

#include <string>
#include <vector>

namespace gemv_check {

// helpers (gemv_check.cu)
uint16_t f2h(float f);
float h2f(uint16_t b);
uint16_t f2bf(float f);
float bf2f(uint16_t b);
const char* fmt_name(int f);

// Host copy of a weight: raw device bytes plus dequantized values for the reference.
struct HostW {
  int fmt = 0, m = 0, k = 0, group = 0;
  std::vector<uint8_t> q;
  std::vector<uint16_t> scales;
  std::vector<float> deq;  // m*k dequantized values (exact in float)
};

HostW make_weight(int fmt, int m, int k, int group, uint64_t seed);

struct DevW {
  uint8_t* q = nullptr;
  __half* s = nullptr;
  llama_ts::WeightRef ref{};
  void upload(const HostW& h) {
    q = check::to_dev(h.q);
    if (!h.scales.empty()) s = reinterpret_cast<__half*>(check::to_dev(h.scales));
    ref = llama_ts::WeightRef{q, s, h.fmt, h.group, h.m, h.k};
  }
  void free_() {
    if (q) CK(cudaFree(q));
    if (s) CK(cudaFree(s));
    q = nullptr; s = nullptr;
  }
};

// xn rows (double) from x (nRows x ldx) with optional RMSNorm.
std::vector<double> ref_xn(const std::vector<float>& x, int ldx, int nRows, int k, const float* normW, float eps);
double dotw(const HostW& w, int j, const double* xr);

// gemv_check_prepare.cu
void test_repack(bool q8, int m, int k, int srcOffset, uint64_t seed);
void test_quantize(int srcFmt, int dstFmt, int m, int k, int group, uint64_t seed);

// gemv_check_timing.cu: each time_* call adds a row to g_rows (the table main prints)
struct TimingRow {
  std::string name;
  double us, gbs, eager;
};
extern std::vector<TimingRow> g_rows;

constexpr int kLaunchesPerRep = 20;
void time_gemv(int fmt, int m, int k, int group, int nR, bool norm, const char* tag = "");
void time_gateup(int fmt, int m, int k, int group);
void time_multi(int fmt, int m, int k, int group);
// One 7B layer's decode GEMVs (wo, gate/up, w2, QKV), one launch each, back to back.
void time_layer(int fmt, int group);
// The same layer's bytes read by read-only kernels, one per GEMV (plus an attention stand-in), and the decode
// step floor those chains set (see gemv_check_timing.cu).
void floor_layer(int fmt, int group);
#if LLAMA_TS_GEMV_TRACE
// The same layer with the trace build's per-block stamps (gemv.cuh GemvTraceRec), summarized.
void trace_layer(int fmt, int group, int layers);
#endif
double copy_bandwidth();

}  // namespace gemv_check
