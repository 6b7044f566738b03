// The runtime's program records (see runtime.cuh): validated once at create time so launch_all can trust
// them, the workspace and attention scratch they need, and a program's teardown.
#include "runtime.cuh"
#include <algorithm>

namespace llama_ts {
namespace rt {

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
  for (auto& q : p->queue) {
    if (q.host) cudaFreeHost(q.host);
    if (q.ids) cudaFreeHost(q.ids);
    if (q.done) cudaEventDestroy(q.done);
  }
  delete p;
}

}  // namespace rt
}  // namespace llama_ts
