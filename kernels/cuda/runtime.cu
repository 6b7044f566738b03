// llama.ts CUDA runtime: the C ABI of llama_ts_cuda.h. Device and memory management, weight
// preparation, and "programs": a decoder step compiled by the TypeScript backend into op records,
// interpreted here into kernel launches. Steps of up to kGraphMaxTokens rows are captured as a CUDA graph
// per (nTokens, nLogitRows) and replayed, so a decode step costs one FFI call, one graph launch and two
// small copies: steps of up to kGraphAlwaysTokens rows from their second run, larger ones (batched decode
// in the server: ~800 launches per uncaptured 7B step) from their third, at most kMaxGraphs per program
// (the least recently used goes first).
//
// Program records are int64 words: [opcode, nWords, fields...]; a weight takes 6 words
// (q, scales, format, group, m, k); floats travel as the bits of a double; `rows` is 0 for "tokens"
// (step nTokens) and 1 for "logits" (step nLogitRows). Layouts per opcode are in the Op enum below and
// in src/backends/cuda/program.ts, which writes them.
#include "llama_ts_cuda.h"
#include "kernels.cuh"
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>
#include <map>
#include <utility>

using namespace llama_ts;

namespace {

std::mutex g_err_mu;
std::string g_err;
cudaStream_t g_stream = nullptr;
int g_device = -1;

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

#define TRY(call, what)                              \
  do {                                               \
    cudaError_t e_ = (call);                         \
    if (e_ != cudaSuccess) return cuda_fail(e_, what); \
  } while (0)

int32_t need_init() {
  if (!g_stream) return fail(LLAMA_TS_E_ARGUMENT, "llama_ts_device_init has not been called");
  return LLAMA_TS_OK;
}

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
};

constexpr int kGraphAlwaysTokens = 8;
constexpr int kGraphMaxTokens = 128;
constexpr size_t kMaxGraphs = 64;

const char* op_name(int64_t op) {
  static const char* names[] = {"?",   "embed", "rms_norm", "matmul", "matmul_multi", "gateup",  "rope", "kv_write",
                                "rope_kv", "attention", "add", "silu_mul", "gather", "argmax", "matmul_a8", "sample"};
  return op >= 1 && op <= kLastOp ? names[op] : names[0];
}

// Profiler label of one record: op, and for matmuls the weight (first of several), count and path.
std::string op_label(int64_t op, const WeightRef* w, int nW, int rows) {
  std::string s = op_name(op);
  if (w) {
    char b[96];
    std::snprintf(b, sizeof b, " %dx%d fmt %d x%d %s", w->m, w->k, w->fmt, nW,
                  rows <= gemv_max_rows(w->k) ? "gemv" : "gemm");
    s += b;
  }
  return s;
}

// int8 KV attention runs on attention()'s pipelined kernel, which on the H100 beat kv8_attention in prefill
// (7x) and in decode (bench/RESULTS.md); LLAMA_TS_KV8_ATTN=kv8 forces kv8_attention, the A/B baseline and a
// test path (read at each launch, so a captured graph keeps the choice of its capture).
bool kv8_forced() {
  const char* e = std::getenv("LLAMA_TS_KV8_ATTN");
  return e != nullptr && std::strcmp(e, "kv8") == 0;
}

// Launch every record for a step of nT rows (nL logit rows); prof: mark each record for the profiler.
cudaError_t launch_all(Program& p, int nT, int nL, bool prof = false) {
  const StepDev st = p.st;
  for (int start : p.starts) {
    Reader r{p.words.data(), start};
    const int64_t op = r.i64();
    r.i64();  // length
    cudaError_t e = cudaSuccess;
    WeightRef lw{};  // for the profiler label
    int lN = 0, lRows = nT;
    switch (op) {
      case OP_EMBED: {
        WeightRef t = r.weight();
        e = embed(t, r.ptr<float>(), nT, st, g_stream);
        break;
      }
      case OP_RMS_NORM: {
        const float* x = r.ptr<const float>();
        const float* w = r.ptr<const float>();
        float* out = r.ptr<float>();
        int n = r.i32();
        float eps = r.f();
        int rows = r.i32() ? nL : nT;
        e = rms_norm(x, w, out, rows, n, eps, g_stream);
        break;
      }
      case OP_MATMUL: {
        const float* x = r.ptr<const float>();
        int ldx = r.i32();
        WeightRef w = r.weight();
        float* y = r.ptr<float>();
        int ldy = r.i32();
        const float* res = r.ptr<const float>();
        const float* normW = r.ptr<const float>();
        float eps = r.f();
        float* normOut = r.ptr<float>();
        int rows = r.i32() ? nL : nT;
        lw = w, lN = 1, lRows = rows;
        if (rows == 0) break;
        if (rows <= gemv_max_rows(w.k)) {
          GemvArgs a{x, ldx, rows, w, y, ldy, res, normW, eps};
          e = gemv(a, g_stream);
        } else {
          if (normW) {
            e = rms_norm(x, normW, normOut, rows, w.k, eps, g_stream);
            x = normOut;
          }
          if (e == cudaSuccess) e = gemm(x, ldx, rows, w, y, ldy, res, p.workspace, g_stream);
        }
        break;
      }
      case OP_MATMUL_MULTI: {
        const float* x = r.ptr<const float>();
        int ldx = r.i32();
        const float* normW = r.ptr<const float>();
        float eps = r.f();
        float* normOut = r.ptr<float>();
        int rows = r.i32() ? nL : nT;
        int n = r.i32();
        WeightRef ws[3];
        float* ys[3];
        for (int i = 0; i < n; i++) {
          ws[i] = r.weight();
          ys[i] = r.ptr<float>();
        }
        lw = ws[0], lN = n, lRows = rows;
        if (rows == 0) break;
        if (rows <= gemv_max_rows(ws[0].k)) {
          e = gemv_multi(x, ldx, rows, ws, ys, n, normW, eps, g_stream);
        } else {
          if (normW) {
            e = rms_norm(x, normW, normOut, rows, ws[0].k, eps, g_stream);
            x = normOut;
          }
          bool fused = e == cudaSuccess;
          for (int i = 0; i < n && fused; i++) fused = gemm_rows_usable(x, ldx, rows, ws[i]) && ws[i].k == ws[0].k;
          if (fused) {  // decode batch, per-channel int8: all n weights in one launch (gemm_rows.cu)
            int ldys[3];
            for (int i = 0; i < n; i++) ldys[i] = ws[i].m;
            e = gemm_rows_multi(x, ldx, rows, ws, ys, ldys, nullptr, n, false, p.workspace, g_stream);
          }
          for (int i = 0; i < n && e == cudaSuccess && !fused; i++) {
            e = gemm(x, ldx, rows, ws[i], ys[i], ws[i].m, nullptr, p.workspace, g_stream);
          }
        }
        break;
      }
      case OP_GATEUP: {
        const float* x = r.ptr<const float>();
        int ldx = r.i32();
        const float* normW = r.ptr<const float>();
        float eps = r.f();
        float* normOut = r.ptr<float>();
        WeightRef w1 = r.weight();
        WeightRef w3 = r.weight();
        float* y = r.ptr<float>();
        float* tmp = r.ptr<float>();
        int rows = r.i32() ? nL : nT;
        lw = w1, lN = 2, lRows = rows;
        if (rows == 0) break;
        if (rows <= gemv_max_rows(w1.k)) {
          e = gemv_gateup(x, ldx, rows, w1, w3, y, w1.m, normW, eps, g_stream);
        } else {
          if (normW) {
            e = rms_norm(x, normW, normOut, rows, w1.k, eps, g_stream);
            x = normOut;
          }
          if (e == cudaSuccess && gemm_rows_usable(x, ldx, rows, w1) && gemm_rows_usable(x, ldx, rows, w3) &&
              w1.k == w3.k && w1.m == w3.m) {
            // decode batch, per-channel int8: both weights in one launch, silu(gate) * up in its reduce
            const WeightRef w13[2] = {w1, w3};
            float* ys[2] = {y, tmp};
            const int ldys[2] = {w1.m, w3.m};
            e = gemm_rows_multi(x, ldx, rows, w13, ys, ldys, nullptr, 2, true, p.workspace, g_stream);
            break;
          }
          if (e == cudaSuccess) e = gemm(x, ldx, rows, w1, y, w1.m, nullptr, p.workspace, g_stream);
          if (e == cudaSuccess) e = gemm(x, ldx, rows, w3, tmp, w3.m, nullptr, p.workspace, g_stream);
          if (e == cudaSuccess) e = silu_mul(y, tmp, y, (int64_t)rows * w1.m, g_stream);
        }
        break;
      }
      case OP_ROPE: {
        float* x = r.ptr<float>();
        int ldx = r.i32(), nHeads = r.i32(), headDim = r.i32(), style = r.i32();
        const float* invFreq = r.ptr<const float>();
        e = rope(x, ldx, nT, nHeads, headDim, style, invFreq, st, g_stream);
        break;
      }
      case OP_KV_WRITE: {
        const float* k = r.ptr<const float>();
        const float* v = r.ptr<const float>();
        int kvDim = r.i32();
        void* ck = r.ptr<void>();
        void* cv = r.ptr<void>();
        int kvFmt = r.i32(), blockSize = r.i32();
        float* ks = r.ptr<float>();
        float* vs = r.ptr<float>();
        int nKvHeads = r.i32();
        if (kvFmt == KV_I8) {
          e = nKvHeads > 0 && kvDim % nKvHeads == 0
                  ? kv8_write(nullptr, const_cast<float*>(k), v, nT, 0, nKvHeads, kvDim / nKvHeads, 0, 0, nullptr,
                              static_cast<int8_t*>(ck), static_cast<int8_t*>(cv), ks, vs, blockSize, st, g_stream)
                  : cudaErrorInvalidValue;
        } else {
          e = kv_write(k, v, nT, kvDim, ck, cv, kvFmt, blockSize, st, g_stream);
        }
        break;
      }
      case OP_ROPE_KV: {
        float* q = r.ptr<float>();
        float* k = r.ptr<float>();
        const float* v = r.ptr<const float>();
        int nHeads = r.i32(), nKvHeads = r.i32(), headDim = r.i32(), style = r.i32();
        const float* invFreq = r.ptr<const float>();
        void* ck = r.ptr<void>();
        void* cv = r.ptr<void>();
        int kvFmt = r.i32(), blockSize = r.i32();
        float* ks = r.ptr<float>();
        float* vs = r.ptr<float>();
        if (kvFmt == KV_I8)
          e = kv8_write(q, k, v, nT, nHeads, nKvHeads, headDim, 1, style, invFreq, static_cast<int8_t*>(ck),
                        static_cast<int8_t*>(cv), ks, vs, blockSize, st, g_stream);
        else
          e = rope_kv_write(q, k, v, nT, nHeads, nKvHeads, headDim, style, invFreq, ck, cv, kvFmt, blockSize, st,
                            g_stream);
        break;
      }
      case OP_ATTENTION: {
        const float* q = r.ptr<const float>();
        const void* ck = r.ptr<const void>();
        const void* cv = r.ptr<const void>();
        int kvFmt = r.i32();
        float* out = r.ptr<float>();
        int nHeads = r.i32(), nKvHeads = r.i32(), headDim = r.i32();
        float scale = r.f();
        int blockSize = r.i32(), maxCtx = r.i32();
        const float* ks = r.ptr<const float>();
        const float* vs = r.ptr<const float>();
        if (kvFmt == KV_I8) {
          // attention()'s pipelined kernel (prefill rows share each K/V chunk); kv8_attention where that
          // kernel cannot take the head dim, or when LLAMA_TS_KV8_ATTN=kv8
          e = cudaErrorNotSupported;
          if (!kv8_forced())
            e = attention(q, ck, cv, KV_I8, out, nT, nHeads, nKvHeads, headDim, scale, blockSize, maxCtx, p.attnScratch,
                          st, g_stream, false, ks, vs);
          if (e == cudaErrorNotSupported)
            e = kv8_attention(q, static_cast<const int8_t*>(ck), static_cast<const int8_t*>(cv), ks, vs, out, nT,
                              nHeads, nKvHeads, headDim, scale, blockSize, maxCtx, p.attnScratch, st, g_stream);
        } else
          e = attention(q, ck, cv, kvFmt, out, nT, nHeads, nKvHeads, headDim, scale, blockSize, maxCtx, p.attnScratch,
                        st, g_stream, nL == nT);  // a logit row per token: decode rows of distinct sequences
        break;
      }
      case OP_ADD: {
        const float* a = r.ptr<const float>();
        const float* b = r.ptr<const float>();
        float* out = r.ptr<float>();
        int n = r.i32();
        int rows = r.i32() ? nL : nT;
        if (rows) e = add(a, b, out, (int64_t)rows * n, g_stream);
        break;
      }
      case OP_SILU_MUL: {
        const float* g = r.ptr<const float>();
        const float* u = r.ptr<const float>();
        float* out = r.ptr<float>();
        int n = r.i32();
        e = silu_mul(g, u, out, (int64_t)nT * n, g_stream);
        break;
      }
      case OP_GATHER: {
        const float* x = r.ptr<const float>();
        float* out = r.ptr<float>();
        int n = r.i32();
        if (nL) e = gather_rows(x, out, nL, n, st, g_stream);
        break;
      }
      case OP_ARGMAX: {
        const float* x = r.ptr<const float>();
        int* out = r.ptr<int>();
        int n = r.i32();
        if (nL) e = argmax_rows(x, out, nL, n, g_stream);
        break;
      }
      case OP_SAMPLE: {
        const float* x = r.ptr<const float>();
        int* out = r.ptr<int>();
        int n = r.i32();
        if (nL) e = sample_rows(x, out, reinterpret_cast<const double*>(p.stepDev), p.sampleScratch, nL, n, g_stream);
        break;
      }
      case OP_MATMUL_A8: {
        A8Args a{};
        a.x = r.ptr<const float>();
        a.ldx = r.i32();
        a.normW = r.ptr<const float>();
        a.eps = r.f();
        a.nRows = r.i32() ? nL : nT;
        a.mode = r.i32();
        a.nW = r.i32();
        for (int i = 0; i < a.nW; i++) {
          a.w[i] = r.weight();
          a.y[i] = r.ptr<float>();
          a.ldy[i] = r.i32();
          a.res[i] = r.ptr<const float>();
        }
        a.k = a.w[0].k;
        lw = a.w[0], lN = a.nW, lRows = a.nRows;
        if (a.nRows) e = matmul_a8(a, p.workspace, g_stream);
        break;
      }
      default:
        return cudaErrorInvalidValue;
    }
    if (e != cudaSuccess) return e;
    if (prof) e = profile_mark(g_stream, op_label(op, lN ? &lw : nullptr, lN, lRows));
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// Validate record structure once at create time so launch_all can trust it.
int32_t validate(Program& p) {
  size_t i = 0;
  while (i < p.words.size()) {
    if (i + 2 > p.words.size()) return fail(LLAMA_TS_E_ARGUMENT, "program: truncated record header");
    int64_t op = p.words[i], len = p.words[i + 1];
    if (op < OP_EMBED || op > kLastOp) return fail(LLAMA_TS_E_ARGUMENT, "program: unknown opcode " + std::to_string(op));
    if (len < 2 || i + (size_t)len > p.words.size()) return fail(LLAMA_TS_E_ARGUMENT, "program: bad record length");
    if (op == OP_MATMUL_MULTI && (p.words[i + 8] < 1 || p.words[i + 8] > 3)) {
      return fail(LLAMA_TS_E_ARGUMENT, "program: MATMUL_MULTI takes 1 to 3 weights");
    }
    if (op == OP_MATMUL_A8 && (len < 9 || p.words[i + 8] < 1 || p.words[i + 8] > 3 || len != 9 + 9 * p.words[i + 8])) {
      return fail(LLAMA_TS_E_ARGUMENT, "program: MATMUL_A8 takes 1 to 3 weights");
    }
    if (op == OP_SAMPLE && (len != 5 || p.words[i + 4] < 1)) {
      return fail(LLAMA_TS_E_ARGUMENT, "program: SAMPLE takes x, out and a positive row width");
    }
    p.starts.push_back((int)i);
    i += (size_t)len;
  }
  return LLAMA_TS_OK;
}

// Workspace and attention scratch sizes over all records.
void size_scratch(Program& p, size_t& ws, size_t& attn) {
  ws = 0;
  attn = 0;
  for (int start : p.starts) {
    Reader r{p.words.data(), start};
    int64_t op = r.i64();
    r.i64();
    const int rowsCap = std::max(p.maxTokens, p.maxLogitRows);  // a GEMM runs on token rows or logit rows
    auto weight_ws = [&](WeightRef w) { ws = std::max(ws, gemm_workspace_bytes(w, rowsCap)); };
    if (op == OP_MATMUL) {
      r.i64(); r.i64();
      weight_ws(r.weight());
    } else if (op == OP_MATMUL_MULTI) {
      for (int k = 0; k < 5; k++) r.i64();
      r.i64();
      int n = r.i32();
      size_t rowsAll = 0;  // gemm_rows_multi: the weights' partial sums side by side
      for (int k = 0; k < n; k++) {
        WeightRef w = r.weight();
        weight_ws(w);
        rowsAll += gemm_rows_workspace_bytes(w, rowsCap);
        r.i64();
      }
      ws = std::max(ws, rowsAll);
    } else if (op == OP_GATEUP) {
      for (int k = 0; k < 5; k++) r.i64();
      WeightRef w1 = r.weight(), w3 = r.weight();
      weight_ws(w1);
      weight_ws(w3);
      ws = std::max(ws, gemm_rows_workspace_bytes(w1, rowsCap) + gemm_rows_workspace_bytes(w3, rowsCap));
    } else if (op == OP_MATMUL_A8) {
      for (int k = 0; k < 6; k++) r.i64();
      int n = r.i32();
      for (int k = 0; k < n; k++) {
        WeightRef w = r.weight();
        ws = std::max(ws, matmul_a8_workspace_bytes(rowsCap, w.k));
        r.i64(); r.i64(); r.i64();
      }
    } else if (op == OP_ATTENTION) {
      for (int k = 0; k < 3; k++) r.i64();
      int kvFmt = r.i32();
      r.i64();
      int nHeads = r.i32();
      r.i64();
      int headDim = r.i32();
      r.i64(); r.i64();
      int maxCtx = r.i32();
      attn = std::max(attn, attention_scratch_bytes(p.maxTokens, nHeads, headDim, maxCtx));
      if (kvFmt == KV_I8) attn = std::max(attn, kv8_attention_scratch_bytes(p.maxTokens, nHeads, headDim, maxCtx));
    }
  }
}

void destroy(Program* p) {
  for (auto& g : p->graphs) cudaGraphExecDestroy(g.second.exec);
  if (p->stepDev) cudaFree(p->stepDev);
  if (p->stepHost) cudaFreeHost(p->stepHost);
  if (p->outHost) cudaFreeHost(p->outHost);
  if (p->workspace) cudaFree(p->workspace);
  if (p->attnScratch) cudaFree(p->attnScratch);
  if (p->sampleScratch) cudaFree(p->sampleScratch);
  delete p;
}

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

int32_t llama_ts_program_run(uint64_t program, const int32_t* step, int32_t stepInts, void* out, uint64_t outBytes) {
  if (int32_t s = need_init()) return s;
  Program& p = *(Program*)(uintptr_t)program;
  if (stepInts < 4) return fail(LLAMA_TS_E_ARGUMENT, "step: header missing");
  const int nT = step[0], nL = step[1], nSeqs = step[2];
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
  if (out && outBytes < (uint64_t)nL * p.outRowBytes) return fail(LLAMA_TS_E_ARGUMENT, "step: output buffer too small");
  // scatter into the fixed device layout
  const int32_t* src = step + 4;
  if (p.sampleInts) {  // sampling rows (all zeros, i.e. greedy, when the step has none)
    if (sampling) std::memcpy(p.stepHost, src + 3 * nT + nL + (size_t)nSeqs * p.maxBlocksPerSeq, (size_t)nL * kSampleInts * 4);
    else std::memset(p.stepHost, 0, (size_t)nL * kSampleInts * 4);
  }
  int* h = p.stepHost + p.sampleInts;
  std::memcpy(h, src, nT * 4);                                   // tokens
  std::memcpy(h + p.maxTokens, src + nT, nT * 4);                // positions
  std::memcpy(h + 2 * p.maxTokens, src + 2 * nT, nT * 4);        // seqIndex
  std::memcpy(h + 3 * p.maxTokens, src + 3 * nT, nL * 4);        // logitRows
  std::memcpy(h + 3 * p.maxTokens + p.maxLogitRows, src + 3 * nT + nL, (size_t)nSeqs * p.maxBlocksPerSeq * 4);
  TRY(cudaMemcpyAsync(p.stepDev, p.stepHost, p.stepInts * 4, cudaMemcpyHostToDevice, g_stream), "step upload");
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
  if (out && nL) {
    TRY(cudaMemcpyAsync(p.outHost, p.out, (size_t)nL * p.outRowBytes, cudaMemcpyDeviceToHost, g_stream), "output copy");
  }
  TRY(cudaStreamSynchronize(g_stream), "step");
  if (out && nL) std::memcpy(out, p.outHost, (size_t)nL * p.outRowBytes);
  return LLAMA_TS_OK;
}

int32_t llama_ts_program_destroy(uint64_t program) {
  if (int32_t s = need_init()) return s;
  if (program) {
    cudaStreamSynchronize(g_stream);
    destroy((Program*)(uintptr_t)program);
    profile_flush();
  }
  return LLAMA_TS_OK;
}

}  // extern "C"
