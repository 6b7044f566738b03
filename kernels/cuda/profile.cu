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
#include <chrono>
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

// ---- step times (LLAMA_TS_CUDA_STEP_TIMES) ----
namespace {
struct StepAcc {
  int steps = 0;       // steps counted (device and inside-run time)
  int walls = 0;       // of them, steps whose next run had the same shape (entry-to-entry wall time)
  double device = 0;   // us, event before the upload -> event after the output copy
  double inside = 0;   // us, run entry -> after its synchronize
  double wall = 0;     // us, run entry -> next run's entry (same shape)
  int seen = 0;        // runs of this shape, the first two (direct run, capture) not counted
};
const char* g_stPath = nullptr;
int g_stRead = 0;
cudaEvent_t g_stEv[2] = {nullptr, nullptr};
std::map<int, StepAcc> g_st;
std::chrono::steady_clock::time_point g_stEnter, g_stPrevEnter;
int g_stPrevRows = -1;  // shape of the previous counted run (-1: none)
int g_stSinceDump = 0;

void st_dump() {
  FILE* f = std::fopen(g_stPath, "w");
  if (!f) return;
  std::fprintf(f, "rows  steps  device_us  inside_run_us  wall_us  idle_us (wall - device, per step)\n");
  for (const auto& kv : g_st) {
    const StepAcc& a = kv.second;
    if (!a.steps) continue;
    const double dev = a.device / a.steps, in = a.inside / a.steps, wall = a.walls ? a.wall / a.walls : 0;
    std::fprintf(f, "%4d %6d %10.1f %14.1f %8.1f %8.1f\n", kv.first, a.steps, dev, in, wall, a.walls ? wall - dev : 0);
  }
  std::fclose(f);
}
double us_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}
}  // namespace

bool step_times_enabled() {
  if (!g_stRead) {
    g_stRead = 1;
    const char* e = std::getenv("LLAMA_TS_CUDA_STEP_TIMES");
    g_stPath = (e && e[0]) ? e : nullptr;
  }
  return g_stPath != nullptr;
}

void step_times_enter() {
  g_stPrevEnter = g_stEnter;
  g_stEnter = std::chrono::steady_clock::now();
}

cudaError_t step_times_mark(cudaStream_t s, int i) {
  if (!g_stEv[i]) {
    cudaError_t r = cudaEventCreate(&g_stEv[i]);
    if (r != cudaSuccess) return r;
  }
  return cudaEventRecord(g_stEv[i], s);
}

cudaError_t step_times_leave(int rows) {
  const auto now = std::chrono::steady_clock::now();
  StepAcc& a = g_st[rows];
  const bool counted = ++a.seen > 2;
  if (counted && g_stPrevRows == rows) {  // the previous run was a counted step of this shape
    a.wall += us_between(g_stPrevEnter, g_stEnter);
    a.walls++;
  }
  g_stPrevRows = counted ? rows : -1;
  if (!counted) return cudaSuccess;
  float ms = 0;
  cudaError_t r = cudaEventElapsedTime(&ms, g_stEv[0], g_stEv[1]);
  if (r != cudaSuccess) return r;
  a.device += ms * 1000.0;
  a.inside += us_between(g_stEnter, now);
  a.steps++;
  if (++g_stSinceDump >= 64) {
    g_stSinceDump = 0;
    st_dump();
  }
  return cudaSuccess;
}

void profile_flush() {
  if (g_path) dump();
  if (g_stPath) st_dump();
}

}  // namespace llama_ts
