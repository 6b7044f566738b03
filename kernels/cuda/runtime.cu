// llama.ts CUDA runtime: the C ABI of llama_ts_cuda.h. Device and memory management, weight
// preparation, and "programs": a decoder step compiled by the TypeScript backend into op records,
// interpreted here into kernel launches. Steps of up to kGraphMaxTokens rows are captured as a CUDA graph
// per (nTokens, nLogitRows) and replayed, so a decode step costs one FFI call, one graph launch and two
// small copies: steps of up to kGraphAlwaysTokens rows from their second run, larger ones (batched decode
// in the server: ~800 launches per uncaptured 7B step) from their third, at most kMaxGraphs per program
// (the least recently used goes first).
//
// This file holds the C ABI entry points. The program records (their layout: the Op enum in runtime.cuh,
// written by src/backends/cuda/program.ts) are validated and sized in runtime_program.cu and launched by
// runtime_launch.cu's per-op switch.
#include "runtime.cuh"
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>
#include <map>
#include <utility>

using namespace llama_ts;
using namespace llama_ts::rt;

namespace {

std::mutex g_err_mu;
std::string g_err;
int g_device = -1;

}  // namespace

namespace llama_ts {
namespace rt {

cudaStream_t g_stream = nullptr;

int32_t fail(int32_t code, const std::string& msg) {
  std::lock_guard<std::mutex> lock(g_err_mu);
  g_err = msg;
  return code;
}

int32_t cuda_fail(cudaError_t e, const char* what) {
  cudaGetLastError();  // clear a sticky launch error where possible
  return fail(e == cudaErrorMemoryAllocation ? LLAMA_TS_E_OOM : LLAMA_TS_E_CUDA,
              std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

}  // namespace rt
}  // namespace llama_ts

namespace {

#define TRY(call, what)                              \
  do {                                               \
    cudaError_t e_ = (call);                         \
    if (e_ != cudaSuccess) return cuda_fail(e_, what); \
  } while (0)

int32_t need_init() {
  if (!g_stream) return fail(LLAMA_TS_E_ARGUMENT, "llama_ts_device_init has not been called");
  return LLAMA_TS_OK;
}

constexpr int kGraphAlwaysTokens = 8;
constexpr int kGraphMaxTokens = 128;
constexpr size_t kMaxGraphs = 64;

}  // namespace

extern "C" {

int32_t llama_ts_abi_version(void) { return LLAMA_TS_CUDA_ABI_VERSION; }

int32_t llama_ts_error_message(char* buf, int32_t len) {
  std::lock_guard<std::mutex> lock(g_err_mu);
  if (buf && len > 0) {
    size_t n = std::min((size_t)len - 1, g_err.size());
    std::memcpy(buf, g_err.data(), n);
    buf[n] = 0;
  }
  return (int32_t)g_err.size();
}

int32_t llama_ts_device_init(int32_t device, char* name, uint64_t* mem, int32_t* sm) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    return fail(LLAMA_TS_E_NO_DEVICE, std::string("no CUDA device: ") +
                                          (e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount returned 0"));
  }
  if (device < 0 || device >= count) {
    return fail(LLAMA_TS_E_ARGUMENT, "device " + std::to_string(device) + " does not exist (" +
                                         std::to_string(count) + " present)");
  }
  if (g_stream && g_device != device) return fail(LLAMA_TS_E_ARGUMENT, "already initialised on another device");
  TRY(cudaSetDevice(device), "cudaSetDevice");
  if (!g_stream) TRY(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking), "cudaStreamCreate");
  g_device = device;
  cudaDeviceProp prop;
  TRY(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  if (name) {
    std::strncpy(name, prop.name, 255);
    name[255] = 0;
  }
  size_t fr = 0, tot = 0;
  TRY(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
  if (mem) {
    mem[0] = tot;
    mem[1] = fr;
  }
  if (sm) {
    sm[0] = prop.major;
    sm[1] = prop.minor;
    sm[2] = prop.multiProcessorCount;
  }
  return LLAMA_TS_OK;
}

int32_t llama_ts_mem_alloc(uint64_t bytes, uint64_t* ptr) {
  if (int32_t s = need_init()) return s;
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return fail(LLAMA_TS_E_OOM, "cudaMalloc of " + std::to_string(bytes) + " bytes failed (" + std::to_string(fr) +
                                    " of " + std::to_string(tot) + " bytes free)");
  }
  *ptr = (uint64_t)(uintptr_t)p;
  return LLAMA_TS_OK;
}

int32_t llama_ts_mem_free(uint64_t ptr) {
  if (int32_t s = need_init()) return s;
  TRY(cudaFree((void*)(uintptr_t)ptr), "cudaFree");
  return LLAMA_TS_OK;
}

int32_t llama_ts_mem_info(uint64_t* mem) {
  if (int32_t s = need_init()) return s;
  size_t fr = 0, tot = 0;
  TRY(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
  mem[0] = tot;
  mem[1] = fr;
  return LLAMA_TS_OK;
}

int32_t llama_ts_mem_upload(uint64_t dst, const void* src, uint64_t bytes) {
  if (int32_t s = need_init()) return s;
  TRY(cudaMemcpyAsync((void*)(uintptr_t)dst, src, bytes, cudaMemcpyHostToDevice, g_stream), "upload");
  TRY(cudaStreamSynchronize(g_stream), "upload sync");
  return LLAMA_TS_OK;
}

int32_t llama_ts_mem_download(void* dst, uint64_t src, uint64_t bytes) {
  if (int32_t s = need_init()) return s;
  TRY(cudaMemcpyAsync(dst, (const void*)(uintptr_t)src, bytes, cudaMemcpyDeviceToHost, g_stream), "download");
  TRY(cudaStreamSynchronize(g_stream), "download sync");
  return LLAMA_TS_OK;
}

int32_t llama_ts_synchronize(void) {
  if (int32_t s = need_init()) return s;
  TRY(cudaStreamSynchronize(g_stream), "synchronize");
  return LLAMA_TS_OK;
}

int32_t llama_ts_weight_prepare(const int64_t* a) {
  if (int32_t s = need_init()) return s;
  const int64_t op = a[0];
  const void* src = (const void*)(uintptr_t)a[1];
  const int m = (int)a[2], k = (int)a[3], srcFmt = (int)a[4];
  void* q = (void*)(uintptr_t)a[5];
  __half* scales = (__half*)(uintptr_t)a[6];
  const int group = (int)a[7];
  if (m <= 0 || k <= 0 || k % 32 != 0) {
    return fail(LLAMA_TS_E_UNSUPPORTED, "weight_prepare: shape (" + std::to_string(m) + ", " + std::to_string(k) +
                                            ") needs k to be a positive multiple of 32");
  }
  cudaError_t e;
  switch (op) {
    case 1: e = repack_q8_0((const uint8_t*)src, m, k, (int8_t*)q, scales, g_stream); break;
    case 2: e = repack_q4_0((const uint8_t*)src, m, k, (uint8_t*)q, scales, g_stream); break;
    case 3:
    case 4: {
      if (op == 4 && (group % 32 != 0 || k % group != 0)) {
        return fail(LLAMA_TS_E_UNSUPPORTED, "int4 group " + std::to_string(group) + " must divide k = " + std::to_string(k));
      }
      WeightRef w{src, nullptr, srcFmt, 0, m, k};
      e = quantize_weight(w, op == 3 ? WF_I8 : WF_I4, op == 3 ? k : group, q, scales, g_stream);
      break;
    }
    default:
      return fail(LLAMA_TS_E_ARGUMENT, "weight_prepare: unknown op " + std::to_string(op));
  }
  if (e != cudaSuccess) return cuda_fail(e, "weight_prepare launch");
  TRY(cudaStreamSynchronize(g_stream), "weight_prepare");
  return LLAMA_TS_OK;
}

int32_t llama_ts_program_create(const int64_t* records, int32_t nWords, const int64_t* config, uint64_t* program) {
  if (int32_t s = need_init()) return s;
  Program* p = new Program();
  p->words.assign(records, records + nWords);
  p->maxTokens = (int)config[0];
  p->maxLogitRows = (int)config[1];
  p->maxSeqs = (int)config[2];
  p->maxBlocksPerSeq = (int)config[3];
  p->out = (float*)(uintptr_t)config[4];
  p->outRowBytes = config[5];
  if (p->maxTokens < 1 || p->maxLogitRows < 0 || p->maxSeqs < 1 || p->maxBlocksPerSeq < 1) {
    delete p;
    return fail(LLAMA_TS_E_ARGUMENT, "program: bad config");
  }
  if (int32_t s = validate(*p)) {
    delete p;
    return s;
  }
  size_t attnBytes = 0;
  size_scratch(*p, p->workspaceBytes, attnBytes);
  int sampleN = 0;  // vocabulary width of the SAMPLE record, if any
  for (int start : p->starts)
    if (p->words[start] == OP_SAMPLE) sampleN = (int)p->words[start + 4];
  p->sampleInts = sampleN ? (size_t)kSampleInts * p->maxLogitRows : 0;
  p->stepInts = p->sampleInts + (size_t)3 * p->maxTokens + p->maxLogitRows + (size_t)p->maxSeqs * p->maxBlocksPerSeq;
  cudaError_t e = cudaMalloc(&p->stepDev, p->stepInts * 4);
  if (e == cudaSuccess && sampleN && p->maxLogitRows)
    e = cudaMalloc(&p->sampleScratch, sample_scratch_bytes(p->maxLogitRows, sampleN));
  if (e == cudaSuccess) e = cudaMallocHost(&p->stepHost, p->stepInts * 4);
  if (e == cudaSuccess && p->maxLogitRows && p->outRowBytes) e = cudaMallocHost(&p->outHost, p->maxLogitRows * p->outRowBytes);
  if (e == cudaSuccess && p->workspaceBytes) e = cudaMalloc(&p->workspace, p->workspaceBytes);
  if (e == cudaSuccess && attnBytes) e = cudaMalloc((void**)&p->attnScratch, attnBytes);
  if (e != cudaSuccess) {
    destroy(p);
    return cuda_fail(e, "program scratch allocation");
  }
  int* d = p->stepDev + p->sampleInts;
  p->st.tokens = d;
  p->st.positions = d + p->maxTokens;
  p->st.seqIndex = d + 2 * p->maxTokens;
  p->st.logitRows = d + 3 * p->maxTokens;
  p->st.blockTables = d + 3 * p->maxTokens + p->maxLogitRows;
  p->st.maxBlocksPerSeq = p->maxBlocksPerSeq;
  *program = (uint64_t)(uintptr_t)p;
  return LLAMA_TS_OK;
}

}  // extern "C"

namespace {

// Validates a step (llama_ts_program_run's layout) and scatters it into `host`, the device step layout
// (pinned); sets nT and nL.
int32_t stage_step(const Program& p, const int32_t* step, int32_t stepInts, int* host, int& nT, int& nL) {
  if (stepInts < 4) return fail(LLAMA_TS_E_ARGUMENT, "step: header missing");
  nT = step[0];
  nL = step[1];
  const int nSeqs = step[2];
  if (nT < 1 || nT > p.maxTokens || nL < 0 || nL > p.maxLogitRows || nSeqs < 1 || nSeqs > p.maxSeqs) {
    return fail(LLAMA_TS_E_ARGUMENT, "step: " + std::to_string(nT) + " tokens / " + std::to_string(nL) +
                                         " logit rows / " + std::to_string(nSeqs) + " sequences exceed the program's " +
                                         std::to_string(p.maxTokens) + " / " + std::to_string(p.maxLogitRows) + " / " +
                                         std::to_string(p.maxSeqs));
  }
  const int sampling = step[3];
  if (sampling != 0 && sampling != 1) return fail(LLAMA_TS_E_ARGUMENT, "step: header word 3 must be 0 or 1");
  if (sampling && !p.sampleInts) return fail(LLAMA_TS_E_ARGUMENT, "step: sampling rows for a program without SAMPLE");
  const int64_t want = 4 + 3 * (int64_t)nT + nL + (int64_t)nSeqs * p.maxBlocksPerSeq + (sampling ? (int64_t)kSampleInts * nL : 0);
  if (stepInts != want) return fail(LLAMA_TS_E_ARGUMENT, "step: expected " + std::to_string(want) + " ints");
  const int32_t* src = step + 4;
  if (p.sampleInts) {  // sampling rows (all zeros, i.e. greedy, when the step has none)
    if (sampling) std::memcpy(host, src + 3 * nT + nL + (size_t)nSeqs * p.maxBlocksPerSeq, (size_t)nL * kSampleInts * 4);
    else std::memset(host, 0, (size_t)nL * kSampleInts * 4);
  }
  int* h = host + p.sampleInts;
  std::memcpy(h, src, nT * 4);                                   // tokens
  std::memcpy(h + p.maxTokens, src + nT, nT * 4);                // positions
  std::memcpy(h + 2 * p.maxTokens, src + 2 * nT, nT * 4);        // seqIndex
  std::memcpy(h + 3 * p.maxTokens, src + 3 * nT, nL * 4);        // logitRows
  std::memcpy(h + 3 * p.maxTokens + p.maxLogitRows, src + 3 * nT + nL, (size_t)nSeqs * p.maxBlocksPerSeq * 4);
  return LLAMA_TS_OK;
}

// Queues one staged step on the stream: the upload of `host`, with `chained` the copy of the previous step's
// ids (the program's output, one int per logit row) over the rows' tokens, then the step itself: a captured
// graph's replay, or a direct run that captures the shape for its next run.
int32_t launch_step(Program& p, const int* host, int nT, int nL, bool chained) {
  TRY(cudaMemcpyAsync(p.stepDev, host, p.stepInts * 4, cudaMemcpyHostToDevice, g_stream), "step upload");
  if (chained) TRY(cudaMemcpyAsync(const_cast<int*>(p.st.tokens), p.out, (size_t)nT * 4, cudaMemcpyDeviceToDevice, g_stream), "chained ids");
  const auto key = std::make_pair(nT, nL);
  auto g = p.graphs.find(key);
  if (profile_enabled()) {  // LLAMA_TS_CUDA_PROFILE: uncaptured, one event per record (profile.cu)
    TRY(profile_begin(g_stream), "profile");
    cudaError_t e = launch_all(p, nT, nL, true);
    if (e != cudaSuccess) return cuda_fail(e, "kernel launch");
    TRY(profile_end(g_stream, nT), "profile");
  } else if (g != p.graphs.end()) {
    g->second.lastUse = ++p.clock;
    TRY(cudaGraphLaunch(g->second.exec, g_stream), "cudaGraphLaunch");
  } else {
    cudaError_t e = launch_all(p, nT, nL);
    if (e != cudaSuccess) return cuda_fail(e, "kernel launch");
    // The first run of a small shape ran directly (one-time kernel attributes are set outside any
    // capture); capture it now for the next step of the same shape.
    // (a shape seen once may be a one-off prefill chunk: larger ones wait for a repeat)
    // (only shapes that can be captured are counted, so the map stays bounded)
    const int seen = nT <= kGraphMaxTokens ? ++p.runs[key] : 0;
    if (nT <= kGraphMaxTokens && (nT <= kGraphAlwaysTokens || seen >= 2)) {
      TRY(cudaStreamSynchronize(g_stream), "step");
      cudaGraph_t graph;
      TRY(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal), "begin capture");
      cudaError_t le = launch_all(p, nT, nL);
      cudaError_t ce = cudaStreamEndCapture(g_stream, &graph);
      if (le != cudaSuccess) return cuda_fail(le, "launch during capture");
      if (ce != cudaSuccess) return cuda_fail(ce, "end capture");
      cudaGraphExec_t exec;
      cudaError_t ie = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      if (ie != cudaSuccess) return cuda_fail(ie, "graph instantiate");
      if (p.graphs.size() >= kMaxGraphs) {
        auto lru = p.graphs.begin();
        for (auto it = p.graphs.begin(); it != p.graphs.end(); ++it)
          if (it->second.lastUse < lru->second.lastUse) lru = it;
        cudaGraphExecDestroy(lru->second.exec);
        p.graphs.erase(lru);
      }
      p.graphs[key] = Program::Graph{exec, ++p.clock};
      p.runs.erase(key);
    }
  }
  return LLAMA_TS_OK;
}

// The program whose step was queued last on the stream (a chained step needs its ids in its own output).
const Program* g_lastProgram = nullptr;

}  // namespace

extern "C" {

int32_t llama_ts_program_run(uint64_t program, const int32_t* step, int32_t stepInts, void* out, uint64_t outBytes) {
  if (int32_t s = need_init()) return s;
  Program& p = *(Program*)(uintptr_t)program;
  const bool timed = step_times_enabled();  // LLAMA_TS_CUDA_STEP_TIMES (profile.cu)
  if (timed) step_times_enter();
  for (int i = 0; i < kQueueSlots; i++)
    if (p.queue[i].busy) return fail(LLAMA_TS_E_ARGUMENT, "step: the program has queued steps not taken back");
  int nT = 0, nL = 0;
  if (int32_t s = stage_step(p, step, stepInts, p.stepHost, nT, nL)) return s;
  if (out && outBytes < (uint64_t)nL * p.outRowBytes) return fail(LLAMA_TS_E_ARGUMENT, "step: output buffer too small");
  if (timed) TRY(step_times_mark(g_stream, 0), "step times");
  g_lastProgram = &p;
  if (int32_t s = launch_step(p, p.stepHost, nT, nL, false)) return s;
  if (out && nL) {
    TRY(cudaMemcpyAsync(p.outHost, p.out, (size_t)nL * p.outRowBytes, cudaMemcpyDeviceToHost, g_stream), "output copy");
  }
  if (timed) TRY(step_times_mark(g_stream, 1), "step times");
  TRY(cudaStreamSynchronize(g_stream), "step");
  if (timed) TRY(step_times_leave(nT), "step times");
  if (out && nL) std::memcpy(out, p.outHost, (size_t)nL * p.outRowBytes);
  return LLAMA_TS_OK;
}

int32_t llama_ts_program_queue(uint64_t program, const int32_t* step, int32_t stepInts, int32_t chained, int32_t slot) {
  if (int32_t s = need_init()) return s;
  Program& p = *(Program*)(uintptr_t)program;
  if (slot < 0 || slot >= kQueueSlots) {
    return fail(LLAMA_TS_E_ARGUMENT, "queue: slot " + std::to_string(slot) + " is not in 0.." + std::to_string(kQueueSlots - 1));
  }
  Program::Queued& q = p.queue[slot];
  if (q.busy) return fail(LLAMA_TS_E_ARGUMENT, "queue: slot " + std::to_string(slot) + " holds a step not taken back");
  if (!p.out || p.outRowBytes != 4) return fail(LLAMA_TS_E_ARGUMENT, "queue: the program's output is not one id per logit row");
  if (chained != 0 && chained != 1) return fail(LLAMA_TS_E_ARGUMENT, "queue: chained must be 0 or 1");
  if (chained && g_lastProgram != &p) {
    return fail(LLAMA_TS_E_ARGUMENT, "queue: a chained step must follow a step of the same program");
  }
  if (!q.host) {  // first use of the slot
    TRY(cudaMallocHost(&q.host, p.stepInts * 4), "queue slot allocation");
    TRY(cudaMallocHost(&q.ids, (size_t)std::max(1, p.maxLogitRows) * 4), "queue slot allocation");
    TRY(cudaEventCreateWithFlags(&q.done, cudaEventDisableTiming), "queue slot event");
  }
  int nT = 0, nL = 0;
  if (int32_t s = stage_step(p, step, stepInts, q.host, nT, nL)) return s;
  if (chained && nT != nL) return fail(LLAMA_TS_E_ARGUMENT, "queue: a chained step has one logit row per row");
  g_lastProgram = &p;
  if (int32_t s = launch_step(p, q.host, nT, nL, chained != 0)) return s;
  if (nL) TRY(cudaMemcpyAsync(q.ids, p.out, (size_t)nL * 4, cudaMemcpyDeviceToHost, g_stream), "ids copy");
  TRY(cudaEventRecord(q.done, g_stream), "queue event");
  q.busy = true;
  q.rows = nL;
  return LLAMA_TS_OK;
}

int32_t llama_ts_program_take(uint64_t program, int32_t slot, void* out, uint64_t outBytes) {
  if (int32_t s = need_init()) return s;
  Program& p = *(Program*)(uintptr_t)program;
  if (slot < 0 || slot >= kQueueSlots || !p.queue[slot].busy) {
    return fail(LLAMA_TS_E_ARGUMENT, "take: slot " + std::to_string(slot) + " holds no queued step");
  }
  Program::Queued& q = p.queue[slot];
  q.busy = false;  // taken, whatever the outcome
  TRY(cudaEventSynchronize(q.done), "queued step");
  if (out) {
    if (outBytes < (uint64_t)q.rows * 4) return fail(LLAMA_TS_E_ARGUMENT, "take: output buffer too small");
    std::memcpy(out, q.ids, (size_t)q.rows * 4);
  }
  return LLAMA_TS_OK;
}

int32_t llama_ts_program_destroy(uint64_t program) {
  if (int32_t s = need_init()) return s;
  if (program) {
    cudaStreamSynchronize(g_stream);
    if (g_lastProgram == (const Program*)(uintptr_t)program) g_lastProgram = nullptr;
    destroy((Program*)(uintptr_t)program);
    profile_flush();
  }
  return LLAMA_TS_OK;
}

}  // extern "C"
