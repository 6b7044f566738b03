// Internal to attention.cu, attention_launch.cu and attention_decode.cu: the 16-byte K/V unpack and the parameter
// block both attention paths and the combine kernel share, and the two paths' launchers. The contract for everything
// else is kernels.cuh's attention().
#pragma once
#include "kernels.cuh"

namespace llama_ts {

constexpr int kAttnThreads = 128;
constexpr int kQnMax = 16;  // query vectors (rows x heads) per partial block

// 16 bytes of cached K/V (8 halves or 4 floats) -> floats.
template <typename T> __device__ __forceinline__ void unpack16(const uint4& raw, float* f);
template <> __device__ __forceinline__ void unpack16<__half>(const uint4& raw, float* f) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const float2 x = __half22float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}
template <> __device__ __forceinline__ void unpack16<float>(const uint4& raw, float* f) {
  f[0] = __uint_as_float(raw.x); f[1] = __uint_as_float(raw.y);
  f[2] = __uint_as_float(raw.z); f[3] = __uint_as_float(raw.w);
}

struct AttnParams {
  const float* q;
  const char* cacheK;
  const char* cacheV;
  const float* kScale;  // int8 cache: one f32 scale per (cache row, kv head), index = element offset / hd
  const float* vScale;
  float* ml;     // [nTokens][nHeads][nSplits][2]: (m, l), log2 domain
  float* opart;  // [nTokens][nHeads][nSplits][hd]: unnormalized sum_t exp2(s_t - m) v_t
  float* out;
  StepDev st;
  int nTokens, nHeads, nKvHeads, hd, kvDim;
  int G, nSub, GB, R;            // heads per kv head, head sub-blocks per kv head, heads per block, rows per group
  int C, logC, L, nSplits;       // chunk positions, log2(C), positions per split, splits
  int stages;                    // K/V pipeline stages in shared memory (1 when a split is one chunk, else 2)
  int adaptive;                  // nTokens == 1: positions per split chosen in-kernel from the row's position
                                 // (splits of ceil(nChunks(pos) / nSplits) chunks), so short contexts get one
                                 // chunk per block and long ones one wave of pipelined blocks
  int DS;                        // threads per score (power of 2) in q.k
  int HG;                        // decode kernel: adjacent kv heads per block
  int maxCtx, blockSize;
  int NP, KSTR;                  // 16-byte pieces per cached row (padded), shared row stride in bytes
  int cpw;                       // cp.async width for K/V rows (16, 8 or 4)
  float scale2;                  // scale * log2(e)
  int stageBytes, offSlot, offQ, offS, offM, offL, offA, offRow;  // shared-memory layout (bytes)
  int offScale;  // int8 cache: [2 stages][K, V][C] f32 scales of the chunk's positions
  // Decode kernel only (attn_decode_kernel). ropeK != null: q and ropeK / ropeV are the step's raw rows, and
  // the kernel applies RoPE (ropeStyle, invFreq) to q and k and writes the row's K and V to the cache (the
  // rope_kv_write it replaces). counters != null: splits merge in-kernel (the last split of a (row, head
  // block) to finish), so no combine kernel follows.
  const float* ropeK;
  const float* ropeV;
  const float* invFreq;
  int ropeStyle;
  unsigned* counters;  // [nTokens][head blocks] arrival counts, zero between launches
};

// Most rows of a decode batch (attention()'s rowsOwnSeq) the decode kernel takes, one block row per step
// row (a row reads its own context; more rows go to the partial kernel).
constexpr int kDecMaxRows = 64;

// Launches the register decode kernel (attention_decode.cu; headDim p.hd 64 or 128, at most 4 q heads per
// kv head, 16-byte aligned cache rows) over p's rows and sets p.HG, p.C, p.logC, p.nSplits, p.L and p.opart;
// with merge, the splits merge in-kernel where the arrival counts reach (p.counters set, *merged true);
// otherwise (*merged false) attention() launches the combine kernel after it.
cudaError_t attn_decode_launch(AttnParams& p, int kvFmt, bool merge, cudaStream_t s, bool* merged);
// The decode kernel's fusions (RoPE + KV write, in-kernel merge) are on unless LLAMA_TS_ATTN_FUSE=0 (the
// A/B baseline: rope_kv_write and the combine kernel). Read at each launch, so a captured graph keeps the
// choice of its capture.
bool attn_fuse_enabled();

// Launches attn_partial_kernel<T, DT, QPT> (attention.cu; instantiated there for the variants attention()
// uses) over p's rows and sets p's shared-memory layout, p.opart and, when p.adaptive, p.nSplits and p.L;
// attention() launches the combine kernel after it.
template <typename T, int DT, int QPT>
cudaError_t launch_attn(AttnParams& p, int qnCap, cudaStream_t s);

}  // namespace llama_ts
