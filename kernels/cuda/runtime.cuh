// Internal contract between the runtime's files (not part of the C ABI, which is llama_ts_cuda.h):
//   runtime.cu          the C ABI entry points (device, memory, weights, program create / run / destroy)
//   runtime_program.cu  a program's records: validation at create time, scratch sizing, teardown
//   runtime_launch.cu   launch_all: one step's kernel launches, record by record (the per-op switch)
// Program records are int64 words: [opcode, nWords, fields...]; a weight takes 6 words
// (q, scales, format, group, m, k); floats travel as the bits of a double; `rows` is 0 for "tokens"
// (step nTokens) and 1 for "logits" (step nLogitRows). Layouts per opcode are in the Op enum below and
// in src/backends/cuda/program.ts, which writes them.
#pragma once
#include "llama_ts_cuda.h"
#include "kernels.cuh"
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace llama_ts {
namespace rt {

// Error reporting (runtime.cu): the message llama_ts_error_message returns, and the status code.
int32_t fail(int32_t code, const std::string& msg);
int32_t cuda_fail(cudaError_t e, const char* what);
// The stream every launch goes to (runtime.cu; null until llama_ts_device_init).
extern cudaStream_t g_stream;

enum Op : int64_t {
  OP_EMBED = 1,         // W, out
  OP_RMS_NORM = 2,      // x, w, out, n, eps, rows
  OP_MATMUL = 3,        // x, ldx, W, y, ldy, res, normW, eps, normOut, rows
  OP_MATMUL_MULTI = 4,  // x, ldx, normW, eps, normOut, rows, nW, (W, y) * nW
  OP_GATEUP = 5,        // x, ldx, normW, eps, normOut, W1, W3, y, tmp, rows
  OP_ROPE = 6,          // x, ldx, nHeads, headDim, style, invFreq
  OP_KV_WRITE = 7,      // k, v, kvDim, cacheK, cacheV, kvFmt, blockSize, kScale, vScale, nKvHeads
  OP_ROPE_KV = 8,       // q, k, v, nHeads, nKvHeads, headDim, style, invFreq, cacheK, cacheV, kvFmt, blockSize,
                        // kScale, vScale
  OP_ATTENTION = 9,     // q, cacheK, cacheV, kvFmt, out, nHeads, nKvHeads, headDim, scale, blockSize, maxCtx,
                        // kScale, vScale   (scales: int8 caches only, else 0)
  OP_ADD = 10,          // a, b, out, n, rows
  OP_SILU_MUL = 11,     // gate, up, out, n
  OP_GATHER = 12,       // x, out, n
  OP_ARGMAX = 13,       // x, out (int), n; over the logit rows
  OP_MATMUL_A8 = 14,    // x, ldx, normW, eps, rows, mode, nW, (W, y, ldy, res) * nW   (w8a8.cu: matmul_a8)
  OP_SAMPLE = 15,       // x, out (int), n; over the logit rows, with the step's sampling rows (sample.cu)
};
constexpr int64_t kLastOp = OP_SAMPLE;
constexpr int kSampleInts = 10;  // one logit row's sampling settings: 5 doubles
constexpr int kQueueSlots = LLAMA_TS_QUEUE_SLOTS;  // steps a program may have queued (llama_ts_program_queue)

struct Reader {
  const int64_t* w;
  int i = 0;
  int64_t i64() { return w[i++]; }
  int i32() { return (int)w[i++]; }
  template <class T> T* ptr() { return reinterpret_cast<T*>(static_cast<uintptr_t>(w[i++])); }
  float f() { double d; std::memcpy(&d, &w[i++], 8); return (float)d; }
  WeightRef weight() {
    WeightRef r;
    r.q = ptr<const void>();
    r.scales = ptr<const __half>();
    r.fmt = i32();
    r.group = i32();
    r.m = i32();
    r.k = i32();
    return r;
  }
};

struct Program {
  std::vector<int64_t> words;
  std::vector<int> starts;  // word index of each record
  int maxTokens = 0, maxLogitRows = 0, maxSeqs = 0, maxBlocksPerSeq = 0;
  float* out = nullptr;
  int64_t outRowBytes = 0;
  // [sampling (maxL * 5 doubles, programs with a SAMPLE record only) tokens(maxT) positions(maxT) seqIndex(maxT)
  //  logitRows(maxL) blockTables(maxSeqs*maxBlocks)]
  int* stepDev = nullptr;
  int* stepHost = nullptr;  // pinned staging, same layout
  size_t stepInts = 0;
  size_t sampleInts = 0;        // ints of the sampling region at the start of stepDev (0: no SAMPLE record)
  double* sampleScratch = nullptr;  // SAMPLE: f64 weights, maxLogitRows x vocabulary
  void* outHost = nullptr;  // pinned staging for the output rows
  void* workspace = nullptr;
  size_t workspaceBytes = 0;
  float* attnScratch = nullptr;
  struct Graph {
    cudaGraphExec_t exec;
    uint64_t lastUse;
  };
  std::map<std::pair<int, int>, Graph> graphs;
  std::map<std::pair<int, int>, int> runs;  // direct runs per shape not captured yet
  uint64_t clock = 0;
  StepDev st{};
  // llama_ts_program_queue's slots: each step's staged ints and ids in pinned memory, and the event after
  // its ids' copy (allocated on first use)
  struct Queued {
    int* host = nullptr;
    int* ids = nullptr;
    cudaEvent_t done = nullptr;
    bool busy = false;
    int rows = 0;
  };
  Queued queue[kQueueSlots];
};

// runtime_launch.cu: launch every record for a step of nT rows (nL logit rows); prof: mark each record for
// the profiler.
cudaError_t launch_all(Program& p, int nT, int nL, bool prof = false);
// runtime_program.cu
int32_t validate(Program& p);
void size_scratch(Program& p, size_t& ws, size_t& attn);
void destroy(Program* p);

}  // namespace rt
}  // namespace llama_ts
