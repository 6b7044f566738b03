// Step profiler (contract: kernels.cuh profile_*), for finding where a program step's device time goes.
// Off unless the environment names an output file: LLAMA_TS_CUDA_PROFILE=/path/profile.txt. Then every
// step runs uncaptured (no CUDA graph), with an event recorded after each op record; after the step the
// runtime synchronizes and the time between consecutive events is added to that op's total, per step
// shape (rows). Events serialize the ops (a PDL launch cannot overlap its predecessor across an event), so
// the per-op times add up to a bit more than a captured step: use them to attribute, not to time.
// Every 16 profiled steps the whole table is rewritten to the file: per shape, ops grouped by label
// (same op, same weight shape) with calls per step, us per call and share of the step.
#include "kernels.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace llama_ts {
namespace {

struct Acc {
  std::vector<std::string> label;  // per op record index
  std::vector<double> us;          // summed over steps
  int steps = 0;
};

const char* g_path = nullptr;
int g_read = 0;
std::vector<cudaEvent_t> g_ev;
std::vector<std::string> g_labels;  // labels of the step in flight
std::map<int, Acc> g_acc;           // by step rows
int g_sinceDump = 0;

void dump() {
  FILE* f = std::fopen(g_path, "w");
  if (!f) return;
  for (const auto& kv : g_acc) {
    const Acc& a = kv.second;
    if (!a.steps) continue;
    struct Row {
      std::string label;
      int calls = 0;
      double us = 0;
    };
    std::map<std::string, Row> by;
    double total = 0;
    for (size_t i = 0; i < a.us.size(); i++) {
      Row& r = by[a.label[i]];
      r.label = a.label[i];
      r.calls++;
      r.us += a.us[i] / a.steps;
      total += a.us[i] / a.steps;
    }
    std::vector<Row> rows;
    for (auto& b : by) rows.push_back(b.second);
    std::sort(rows.begin(), rows.end(), [](const Row& x, const Row& y) { return x.us > y.us; });
    std::fprintf(f, "rows %d: %d steps profiled, %.1f us per step (ops serialized by events)\n", kv.first, a.steps,
                 total);
    for (const Row& r : rows)
      std::fprintf(f, "  %8.1f us %5.1f%%  %4d x %8.2f us  %s\n", r.us, 100.0 * r.us / total, r.calls, r.us / r.calls,
                   r.label.c_str());
  }
  std::fclose(f);
}

}  // namespace

bool profile_enabled() {
  if (!g_read) {
    g_read = 1;
    const char* e = std::getenv("LLAMA_TS_CUDA_PROFILE");
    g_path = (e && e[0]) ? e : nullptr;
  }
  return g_path != nullptr;
}

cudaError_t profile_begin(cudaStream_t s) {
  g_labels.clear();
  if (g_ev.empty()) {
    cudaEvent_t e;
    cudaError_t r = cudaEventCreate(&e);
    if (r != cudaSuccess) return r;
    g_ev.push_back(e);
  }
  return cudaEventRecord(g_ev[0], s);
}

cudaError_t profile_mark(cudaStream_t s, const std::string& label) {
  g_labels.push_back(label);
  if (g_ev.size() <= g_labels.size()) {
    cudaEvent_t e;
    cudaError_t r = cudaEventCreate(&e);
    if (r != cudaSuccess) return r;
    g_ev.push_back(e);
  }
  return cudaEventRecord(g_ev[g_labels.size()], s);
}

cudaError_t profile_end(cudaStream_t s, int rows) {
  cudaError_t r = cudaStreamSynchronize(s);
  if (r != cudaSuccess) return r;
  Acc& a = g_acc[rows];
  if (a.label != g_labels) {  // first step of this shape (or of another program): one-time costs, not counted
    a.label = g_labels;
    a.us.assign(g_labels.size(), 0.0);
    a.steps = 0;
    return cudaSuccess;
  }
  for (size_t i = 0; i < g_labels.size(); i++) {
    float ms = 0;
    r = cudaEventElapsedTime(&ms, g_ev[i], g_ev[i + 1]);
    if (r != cudaSuccess) return r;
    a.us[i] += ms * 1000.0;
  }
  a.steps++;
  if (++g_sinceDump >= 16) {
    g_sinceDump = 0;
    dump();
  }
  return cudaSuccess;
}

void profile_flush() {
  if (g_path) dump();
}

}  // namespace llama_ts
