// The runtime's launcher (see runtime.cuh): one step's kernel launches, record by record, choosing per
// matmul record between the GEMV (few rows), the fused int8 decode-batch GEMM (gemm_rows.cu) and the GEMM.
// Runs directly or under CUDA-graph capture (runtime.cu's llama_ts_program_run), and marks each record for
// the step profiler (profile.cu) when asked.
#include "runtime.cuh"
#include <cstdio>
#include <cstdlib>

namespace llama_ts {
namespace rt {
namespace {

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

// Ablation for benchmarks only: LLAMA_TS_CUDA_SKIP_OPS=rope_kv,attention,... launches nothing for the records
// of those ops (op_name spelling) in one-row steps (batch-1 decode; prefill runs them, so the buffers the
// skipped ops would write hold finite values), so a timed decode step shows what they cost inside a
// captured step. The generated tokens are wrong while it is set. Bit i of the mask: opcode i. Read at each
// launch, like LLAMA_TS_KV8_ATTN.
uint32_t skipped_ops() {
  const char* e = std::getenv("LLAMA_TS_CUDA_SKIP_OPS");
  if (e == nullptr || *e == 0) return 0;
  const std::string list = std::string(",") + e + ",";
  uint32_t m = 0;
  for (int64_t op = 1; op <= kLastOp; op++)
    if (list.find(std::string(",") + op_name(op) + ",") != std::string::npos) m |= 1u << op;
  return m;
}

}  // namespace

// Launch every record for a step of nT rows (nL logit rows); prof: mark each record for the profiler.
cudaError_t launch_all(Program& p, int nT, int nL, bool prof) {
  const StepDev st = p.st;
  const uint32_t skip = nT == 1 ? skipped_ops() : 0;
  // A ROPE_KV record right before an ATTENTION record is held back and handed to attention() (AttnRope): the
  // decode kernel applies RoPE and writes the cache row itself; where it does not, both launch as before.
  // q and k then stay unrotated in memory: as in the webgpu backend's same fold, this relies on nothing after
  // the attention reading them (true of src/model/llama.ts's graph: q feeds only attention, k only the cache).
  struct HeldRope {
    float* q;
    float* k;
    const float* v;
    int nHeads, nKvHeads, headDim, style;
    const float* invFreq;
    void* ck;
    void* cv;
    int kvFmt, blockSize;
  } held{};
  bool holding = false;
  auto flush = [&](bool& h) -> cudaError_t {  // launch a held ROPE_KV as its own kernel
    if (!h) return cudaSuccess;
    h = false;
    return rope_kv_write(held.q, held.k, held.v, nT, held.nHeads, held.nKvHeads, held.headDim, held.style,
                         held.invFreq, held.ck, held.cv, held.kvFmt, held.blockSize, st, g_stream);
  };
  const int nRec = (int)p.starts.size();
  for (int ri = 0; ri < nRec; ri++) {
    const int start = p.starts[ri];
    Reader r{p.words.data(), start};
    const int64_t op = r.i64();
    r.i64();  // length
    if (skip & (1u << op)) continue;
    if (holding && op != OP_ATTENTION) {  // (only when the ATTENTION record is skipped by the ablation)
      const cudaError_t fe = flush(holding);
      if (fe != cudaSuccess) return fe;
    }
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
        if (kvFmt != KV_I8 && !prof && ri + 1 < nRec && p.words[p.starts[ri + 1]] == OP_ATTENTION) {
          held = HeldRope{q, k, v, nHeads, nKvHeads, headDim, style, invFreq, ck, cv, kvFmt, blockSize};
          holding = true;  // launched by the ATTENTION record (fused, or before it)
          break;
        }
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
          e = flush(holding);
          if (e != cudaSuccess) break;
          e = cudaErrorNotSupported;
          if (!kv8_forced())
            e = attention(q, ck, cv, KV_I8, out, nT, nHeads, nKvHeads, headDim, scale, blockSize, maxCtx, p.attnScratch,
                          st, g_stream, false, ks, vs);
          if (e == cudaErrorNotSupported)
            e = kv8_attention(q, static_cast<const int8_t*>(ck), static_cast<const int8_t*>(cv), ks, vs, out, nT,
                              nHeads, nKvHeads, headDim, scale, blockSize, maxCtx, p.attnScratch, st, g_stream);
        } else {
          const bool own = nL == nT;  // a logit row per token: decode rows of distinct sequences
          if (holding && held.q == q && held.ck == ck && held.cv == cv && held.nHeads == nHeads &&
              held.nKvHeads == nKvHeads && held.headDim == headDim && held.kvFmt == kvFmt &&
              held.blockSize == blockSize) {
            const AttnRope ar{held.k, held.v, held.invFreq, held.style};
            e = attention(q, ck, cv, kvFmt, out, nT, nHeads, nKvHeads, headDim, scale, blockSize, maxCtx,
                          p.attnScratch, st, g_stream, own, nullptr, nullptr, &ar);
            if (e != cudaErrorNotSupported) {  // fused (or failed): the held record is done
              holding = false;
              break;
            }
          }
          e = flush(holding);
          if (e == cudaSuccess)
            e = attention(q, ck, cv, kvFmt, out, nT, nHeads, nKvHeads, headDim, scale, blockSize, maxCtx,
                          p.attnScratch, st, g_stream, own);
        }
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
  return flush(holding);
}

}  // namespace rt
}  // namespace llama_ts
