// Internal contract between the llama.ts CUDA runtime (runtime.cu) and its kernel files.
// Not part of the C ABI (that is llama_ts_cuda.h). Glossary as everywhere: dim, hiddenDim, nHeads,
// nKvHeads, headDim, kvDim, pos. Activations are f32, row-major, one row per token. Every launcher
// returns cudaGetLastError() after its launch(es) and never synchronizes.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <string>

namespace llama_ts {

// ---- weights -----------------------------------------------------------------------------------------
// Device weight layouts. Quantized layouts keep quants and scales in separate arrays so every row's
// quants start 16-byte aligned (GGUF's interleaved 34/18-byte blocks are repacked at load).
enum WeightFormat : int {
  WF_F32 = 0,   // q: float[m*k]
  WF_F16 = 1,   // q: __half[m*k]
  WF_BF16 = 2,  // q: __nv_bfloat16[m*k]
  WF_I8 = 3,    // q: int8[m*k]; scales: __half[m*(k/group)]; x = scale * q   (group 32 = q8_0, group k = per-channel)
  WF_I4 = 4,    // q: uint8[m*k/2]; scales: __half[m*(k/group)]; x = scale * (nibble - 8)
                //    nibble order per 32 elements (16 bytes), as ggml q4_0: byte j holds element j (low
                //    nibble) and element j+16 (high nibble); group 32 = q4_0, group 128 = int4 g128
};

struct WeightRef {
  const void* q;
  const __half* scales;  // null for float formats
  int fmt;               // WeightFormat
  int group;             // elements per scale (quantized formats), multiple of 32 dividing k
  int m;                 // rows (output features)
  int k;                 // columns (input features), multiple of 32 for quantized formats
};

// ---- per-step data in device memory (written by the runtime before each step) -------------------------
struct StepDev {
  const int* tokens;       // [nTokens]
  const int* positions;    // [nTokens]
  const int* seqIndex;     // [nTokens]
  const int* logitRows;    // [nLogitRows]
  const int* blockTables;  // [nSeqs * maxBlocksPerSeq]
  int maxBlocksPerSeq;
};

// ---- GEMV (decode, few rows) --------------------------------------------------------------------------
// For r < nRows, j < w.m:  y[r*ldy + j] = (res ? res[r*ldy + j] : 0) + sum_i xn[r, i] * W[j, i]
// where xn[r] = normW ? x[r] * rsqrt(mean(x[r]^2) + eps) * normW : x[r] (x row stride ldx).
// res may alias y. Reads each weight byte once for all nRows rows.
struct GemvArgs {
  const float* x; int ldx; int nRows;
  WeightRef w;
  float* y; int ldy;
  const float* res;
  const float* normW; float eps;
};
cudaError_t gemv(const GemvArgs& a, cudaStream_t s);
// Up to 3 weights sharing one (normed) input, e.g. wq/wk/wv, in ONE launch; ys[i] has stride w[i].m.
cudaError_t gemv_multi(const float* x, int ldx, int nRows, const WeightRef* w, float* const* ys, int n,
                       const float* normW, float eps, cudaStream_t s);
// y[r*ldy + j] = silu(W1[j]·xn[r]) * (W3[j]·xn[r]) in one launch (w1, w3 same shape).
cudaError_t gemv_gateup(const float* x, int ldx, int nRows, WeightRef w1, WeightRef w3, float* y, int ldy,
                        const float* normW, float eps, cudaStream_t s);
// Most rows the GEMV kernels take for input width k (the runtime uses GEMM above it).
int gemv_max_rows(int k);

// ---- GEMM (prefill, many rows; tensor cores) ----------------------------------------------------------
// y[r*ldy + j] = (res ? res[r*ldy + j] : 0) + sum_i x[r*ldx + i] * W[j, i], any nRows >= 1, any format.
// workspace: at least gemm_workspace_bytes(w) bytes of device scratch (e.g. a dequantized f16 copy).
cudaError_t gemm(const float* x, int ldx, int nRows, WeightRef w, float* y, int ldy, const float* res,
                 void* workspace, cudaStream_t s);
size_t gemm_workspace_bytes(const WeightRef& w, int maxRows);
// Decode batches of per-channel int8 weights (gemm_rows.cu; gemm() takes it for 1..64 rows when usable).
// gemm_rows: y as gemm(); part: gemm_rows_workspace_bytes(w, nRows) bytes of scratch.
// gemm_rows_multi: n (1..3) weights of the same k over one x, y_i[r*ldys[i] + j] = (res ? res[i] : 0) + x W_i^T;
// gateup (n == 2): y_0 = silu(x W_0^T) * (x W_1^T), y_1 unused; part: the sum of the weights' bytes.
bool gemm_rows_usable(const float* x, int ldx, int nRows, const WeightRef& w);
size_t gemm_rows_workspace_bytes(const WeightRef& w, int maxRows);
cudaError_t gemm_rows(const float* x, int ldx, int nRows, const WeightRef& w, float* y, int ldy, const float* res,
                      void* part, cudaStream_t s);
cudaError_t gemm_rows_multi(const float* x, int ldx, int nRows, const WeightRef* ws, float* const* ys,
                            const int* ldys, const float* const* res, int n, bool gateup, void* part,
                            cudaStream_t s);

// ---- step profiler (profile.cu): env LLAMA_TS_CUDA_PROFILE=FILE; the runtime then runs steps uncaptured,
// calling profile_begin, profile_mark after each op record (its label) and profile_end(rows) ----------------
bool profile_enabled();
cudaError_t profile_begin(cudaStream_t s);
cudaError_t profile_mark(cudaStream_t s, const std::string& label);
cudaError_t profile_end(cudaStream_t s, int rows);
void profile_flush();
// ---- step times (profile.cu): env LLAMA_TS_CUDA_STEP_TIMES=FILE; per step shape, the device time of a step
// (event before its upload to event after its output copy) against the host's time from one run's entry to
// the next run's entry: the difference is what the device idles between steps. The runtime calls
// step_times_enter at run entry, step_times_mark(s, 0) before the upload, (s, 1) after the output copy, and
// step_times_leave(rows) after its synchronize. Steps stay captured; two events per step is the only cost. ----
bool step_times_enabled();
void step_times_enter();
cudaError_t step_times_mark(cudaStream_t s, int i);
cudaError_t step_times_leave(int rows);

// ---- W8A8: per-token int8 activations x int8 / int4 block weights (w8a8.cu) ---------------------------
// Each row r < nRows of xn = normW ? rms_norm(x, normW, eps) : x (row stride ldx, width k % 32 == 0) is
// quantized: sx = f32(max|xn| / 127), qx = clamp(roundf(xn * f32(1 / sx)), -127, 127) (0 when sx == 0);
// then per weight i (WF_I8 or WF_I4, group 32: q8_0 / q4_0):
//   mode 0: y_i[r*ldy_i + j] = (res_i ? res_i[r*ldy_i + j] : 0) + sx_r * sum_b d_jb * (exact int32 block dot)
//   mode 1 (nW = 2, gate/up): y_0 = silu(gate) * up with gate, up the two products; y_1 is scratch
//          (written when nRows > a8_gemv_max_rows(k); ldy_0 = ldy_1 = m there).
// workspace: matmul_a8_workspace_bytes(maxRows, k) bytes, 16-byte aligned (qx and sx).
struct A8Args {
  const float* x; int ldx; int nRows; int k;
  const float* normW; float eps;
  int mode; int nW;
  WeightRef w[3]; float* y[3]; int ldy[3]; const float* res[3];
};
cudaError_t matmul_a8(const A8Args& a, void* workspace, cudaStream_t s);
size_t matmul_a8_workspace_bytes(int maxRows, int k);
// Most rows the W8A8 GEMV takes for width k (more rows run on int8 tensor cores).
int a8_gemv_max_rows(int k);

// ---- weight preparation (at load) ---------------------------------------------------------------------
// ggml block bytes (q8_0: 34-byte blocks, q4_0: 18-byte blocks) -> WF_I8 / WF_I4 group 32.
cudaError_t repack_q8_0(const uint8_t* src, int m, int k, int8_t* q, __half* scales, cudaStream_t s);
cudaError_t repack_q4_0(const uint8_t* src, int m, int k, uint8_t* q, __half* scales, cudaStream_t s);
// Float weights (WF_F32/F16/BF16 in `src`) -> symmetric WF_I8 (group = k: per-channel, TensorRT-LLM's
// weight-only int8: scale = absmax/127) or WF_I4 (group 128: scale = absmax/7, q = round(x/scale)+8 clamped to 0..15).
cudaError_t quantize_weight(WeightRef src, int dstFmt, int group, void* q, __half* scales, cudaStream_t s);

// ---- elementwise and small ops ------------------------------------------------------------------------
// out[r*dim..] = dequant(table row tokens[r]) (table formats as WeightRef, table.m = vocab, table.k = dim).
cudaError_t embed(WeightRef table, float* out, int nTokens, StepDev st, cudaStream_t s);
cudaError_t rms_norm(const float* x, const float* w, float* out, int nRows, int n, float eps, cudaStream_t s);
cudaError_t add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s);
cudaError_t silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s);
// out[i*n..] = x[logitRows[i]*n..]
cudaError_t gather_rows(const float* x, float* out, int nOut, int n, StepDev st, cudaStream_t s);

// ---- RoPE, KV cache, attention ------------------------------------------------------------------------
enum KvFormat : int { KV_F32 = 0, KV_F16 = 1, KV_I8 = 2 };  // KV_I8: kv_int8.cu (kv8_*) and attention()
enum RopeStyle : int { ROPE_INTERLEAVED = 0, ROPE_HALF = 1 };
// In-place RoPE of nHeads heads in each of nTokens rows (row stride ldx) at positions[r].
cudaError_t rope(float* x, int ldx, int nTokens, int nHeads, int headDim, int style, const float* invFreq,
                 StepDev st, cudaStream_t s);
// Cache row of token r: slot = blockTables[seqIndex[r]*maxBlocksPerSeq + pos/blockSize]*blockSize + pos%blockSize.
cudaError_t kv_write(const float* k, const float* v, int nTokens, int kvDim, void* cacheK, void* cacheV, int kvFmt,
                     int blockSize, StepDev st, cudaStream_t s);
// Fused: rope(q), rope(k), kv_write(k, v) in one launch.
cudaError_t rope_kv_write(float* q, float* k, const float* v, int nTokens, int nHeads, int nKvHeads, int headDim,
                          int style, const float* invFreq, void* cacheK, void* cacheV, int kvFmt, int blockSize,
                          StepDev st, cudaStream_t s);
// Causal GQA attention of each row's q (nTokens x nHeads*headDim) over its sequence's cache positions
// 0..positions[r]; out is nTokens x nHeads*headDim. Split-K over the context (flash-decoding): the grid is
// sized from maxCtx (fixed, so the launch can be captured in a CUDA graph and replayed at any position);
// blocks past a row's length exit early; partial results go to `scratch` and are combined by a second kernel.
// rowsOwnSeq: a hint that the rows are decode rows, each of its own sequence (every row has a logit row):
// up to 64 of them then take the register decode kernel, one block row per step row (any rows stay correct
// there; rows of one sequence would each re-read its context, which the default prefill path shares).
// kvFmt KV_I8 (the int8 cache of kv8_write, scales kScale / vScale as below) takes the pipelined shared-K/V
// kernel for any rows; it returns cudaErrorNotSupported when headDim % 4 != 0 (kv8_attention takes those).
// rope (optional): RoPE and the KV-cache write fused in (rope_kv_write's work, done by the decode kernel): q
// and rope->k / rope->v (nTokens x kvDim) are the step's raw rows; q and k stay unrotated in memory, the
// cache gets the rotated row. cudaErrorNotSupported, before anything is launched, where the decode kernel
// does not take the rows (int8 cache, prefill rows, other head dims) or LLAMA_TS_ATTN_FUSE=0: run
// rope_kv_write, then attention() without it. The decode kernel also merges its splits in-kernel then (no
// combine kernel).
struct AttnRope {
  const float* k;
  const float* v;
  const float* invFreq;
  int style;
};
cudaError_t attention(const float* q, const void* cacheK, const void* cacheV, int kvFmt, float* out, int nTokens,
                      int nHeads, int nKvHeads, int headDim, float scale, int blockSize, int maxCtx, float* scratch,
                      StepDev st, cudaStream_t s, bool rowsOwnSeq = false, const float* kScale = nullptr,
                      const float* vScale = nullptr, const AttnRope* rope = nullptr);
size_t attention_scratch_bytes(int maxTokens, int nHeads, int headDim, int maxCtx);

// ---- int8 KV cache (kv_int8.cu) -----------------------------------------------------------------------
// Cache k/v int8 (nBlocks*blockSize, kvDim) with f32 scales (nBlocks*blockSize, nKvHeads):
// scale = max|x| / 127 per (row, kv head), q = roundf(x / scale). With rope != 0 this is the fused
// rope(q) + rope(k) + write (q, invFreq, style used); else a plain write of k and v (q may be null).
cudaError_t kv8_write(float* q, float* k, const float* v, int nTokens, int nHeads, int nKvHeads, int headDim,
                      int rope, int style, const float* invFreq, int8_t* cacheK, int8_t* cacheV, float* kScale,
                      float* vScale, int blockSize, StepDev st, cudaStream_t s);
// attention() over an int8 cache: same semantics, scratch, validation; any even head dim <= 256. The runtime
// uses it where attention()'s int8 path cannot (headDim % 4 != 0) and under LLAMA_TS_KV8_ATTN=kv8.
cudaError_t kv8_attention(const float* q, const int8_t* cacheK, const int8_t* cacheV, const float* kScale,
                          const float* vScale, float* out, int nTokens, int nHeads, int nKvHeads, int headDim,
                          float scale, int blockSize, int maxCtx, float* scratch, StepDev st, cudaStream_t s);
size_t kv8_attention_scratch_bytes(int maxTokens, int nHeads, int headDim, int maxCtx);

// ---- greedy sampling ----------------------------------------------------------------------------------
// out[r] = argmax of x's row r (n values; lowest index on ties), -1 when the row holds NaN.
cudaError_t argmax_rows(const float* x, int* out, int nRows, int n, cudaStream_t s);

// ---- device sampling (sample.cu) ----------------------------------------------------------------------
// out[r] = the token of x's row r by src/sample/pick.ts's rule, with params[5r..5r+4] = temperature,
// topK, topP, minP, u (f64; temperature 0 = argmax); -1 for a row holding NaN, -2 for a row of only
// -Infinity. params null: every row greedy. scratch: sample_scratch_bytes(nRows, n) (f64 weights).
cudaError_t sample_rows(const float* x, int* out, const double* params, double* scratch, int nRows, int n,
                        cudaStream_t s);
size_t sample_scratch_bytes(int maxRows, int n);

}  // namespace llama_ts
