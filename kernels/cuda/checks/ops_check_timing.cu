// Timing part of the ops check (see ops_check.cu): the timing table of the attention / KV kernels, and the
// --profile mode (a few decode attention launches for ncu).
#include "ops_check.cuh"

using namespace llama_ts;

namespace {

// --------------------------------------------------------------------------------------------------
// timing
// --------------------------------------------------------------------------------------------------
__global__ void fill_half(__half* p, size_t n, uint32_t seed) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 15; x *= 2246822519u; x ^= x >> 13;
    p[i] = __float2half_rn(((x >> 8) * (1.0f / 16777216.0f)) * 2.f - 1.f);
  }
}

}  // namespace

namespace ops_check {

void timing() {
  std::printf("\n--- timing (median of 200, events; 4 sequences rotated so the cache is not L2-resident) ---\n");
  const int nHeads = 32, hd = 128, maxCtx = 4096, bs = 16, nSeqs = 4;
  const int mbps = maxCtx / bs;
  for (int nKv : {32, 8}) {
    const int kvDim = nKv * hd;
    const int nBlocks = nSeqs * mbps;
    const size_t n = (size_t)nBlocks * bs * kvDim;
    __half *cK, *cV;
    CK(cudaMalloc(&cK, n * 2));
    CK(cudaMalloc(&cV, n * 2));
    fill_half<<<1024, 256>>>(cK, n, 1);
    fill_half<<<1024, 256>>>(cV, n, 2);
    CK(cudaGetLastError());
    auto bt = shuffled_tables(nSeqs, mbps, nBlocks, 5);
    auto q = check::rand_vec((size_t)nHeads * hd, 9);
    float* dq = check::to_dev(q);
    float *dout, *scratch;
    CK(cudaMalloc(&dout, (size_t)nHeads * hd * 4));
    const size_t sb = attention_scratch_bytes(512, nHeads, hd, maxCtx);
    CK(cudaMalloc(&scratch, sb));
    const float scale = 1.f / std::sqrt((float)hd);
    for (int pos : {128, 1024, 4095}) {
      std::vector<DevStep> steps;
      for (int s = 0; s < nSeqs; s++) steps.push_back(make_step({}, {pos}, {s}, {}, bt, mbps));
      int it = 0;
      auto fn = [&] {
        CK(attention(dq, cK, cV, KV_F16, dout, 1, nHeads, nKv, hd, scale, bs, maxCtx, scratch,
                     steps[it++ % nSeqs].sd(), 0));
      };
      const double us = check::time_us(fn, 200, 10);
      // graph of 20 calls, rotating sequences: per-call time without launch gaps
      cudaStream_t s;
      CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
      cudaGraph_t g;
      cudaGraphExec_t ge;
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
      for (int i = 0; i < 20; i++)
        CK(attention(dq, cK, cV, KV_F16, dout, 1, nHeads, nKv, hd, scale, bs, maxCtx, scratch,
                     steps[i % nSeqs].sd(), s));
      CK(cudaStreamEndCapture(s, &g));
      CK(cudaGraphInstantiate(&ge, g, 0));
      auto gfn = [&] { CK(cudaGraphLaunch(ge, 0)); };
      const double gus = check::time_us(gfn, 50, 3) / 20;
      const double bytes = 2.0 * (pos + 1) * kvDim * 2;
      std::printf("attention decode %d/%d/128 f16 maxCtx 4096 pos %4d : %7.2f us (%6.0f GB/s) | in graph %7.2f us "
                  "(%6.0f GB/s)\n",
                  nHeads, nKv, pos, us, bytes / us * 1e-3, gus, bytes / gus * 1e-3);
      CK(cudaGraphExecDestroy(ge));
      CK(cudaGraphDestroy(g));
      CK(cudaStreamDestroy(s));
      for (auto& st : steps) st.free_all();
    }
    if (nKv == 32) {
      // prefill: 512 rows of one sequence at positions 0..511
      std::vector<int> pos(512), seq(512, 0);
      for (int i = 0; i < 512; i++) pos[i] = i;
      DevStep st = make_step({}, pos, seq, {}, bt, mbps);
      auto q2 = check::rand_vec((size_t)512 * nHeads * hd, 10);
      float* dq2 = check::to_dev(q2);
      float* dout2;
      CK(cudaMalloc(&dout2, q2.size() * 4));
      auto fn = [&] {
        CK(attention(dq2, cK, cV, KV_F16, dout2, 512, nHeads, nKv, hd, scale, bs, maxCtx, scratch, st.sd(), 0));
      };
      std::printf("attention prefill 32/32/128 f16 512 rows at pos 0..511       : %7.1f us\n",
                  check::time_us(fn, 20, 3));
      for (int i = 0; i < 512; i++) pos[i] = 3584 + i;
      CK(cudaMemcpy(st.positions, pos.data(), 512 * 4, cudaMemcpyHostToDevice));
      std::printf("attention prefill 32/32/128 f16 512 rows at pos 3584..4095   : %7.1f us\n",
                  check::time_us(fn, 10, 2));
      // a decode batch: 64 rows, one per step sequence (only 4 sequences' caches here, so rows share some
      // cache blocks in L2), register decode kernel (rowsOwnSeq) against the partial kernel
      for (int base : {80, 1000}) {
        std::vector<int> dpos(64), dseq(64);
        for (int i = 0; i < 64; i++) {
          dseq[i] = i % nSeqs;
          dpos[i] = base + (i * 37) % 64;
        }
        DevStep ds = make_step({}, dpos, dseq, {}, bt, mbps);
        for (bool own : {true, false}) {
          auto dfn = [&] {
            CK(attention(dq2, cK, cV, KV_F16, dout2, 64, nHeads, nKv, hd, scale, bs, maxCtx, scratch, ds.sd(), 0,
                         own));
          };
          std::printf("attention decode batch 32/32/128 f16 64 rows at pos ~%4d, %s: %7.1f us\n", base,
                      own ? "decode kernel " : "partial kernel", check::time_us(dfn, 50, 5));
        }
        ds.free_all();
      }
      CK(cudaFree(dq2));
      CK(cudaFree(dout2));
      st.free_all();

      // rope_kv_write, nTokens 1
      std::vector<DevStep> steps;
      for (int s = 0; s < nSeqs; s++) steps.push_back(make_step({}, {1000}, {s}, {}, bt, mbps));
      auto kk = check::rand_vec(kvDim, 11), vv = check::rand_vec(kvDim, 12), ff = inv_freq(hd);
      float *dk = check::to_dev(kk), *dv = check::to_dev(vv), *df = check::to_dev(ff);
      int it = 0;
      auto rfn = [&] {
        CK(rope_kv_write(dq, dk, dv, 1, nHeads, nKv, hd, ROPE_HALF, df, cK, cV, KV_F16, bs,
                         steps[it++ % nSeqs].sd(), 0));
      };
      std::printf("rope_kv_write 32/32/128 f16 nTokens 1                        : %7.2f us\n",
                  check::time_us(rfn, 200, 10));
      auto kfn = [&] { CK(kv_write(dk, dv, 1, kvDim, cK, cV, KV_F16, bs, steps[it++ % nSeqs].sd(), 0)); };
      std::printf("kv_write kvDim 4096 f16 nTokens 1                            : %7.2f us\n",
                  check::time_us(kfn, 200, 10));
      CK(cudaFree(dk));
      CK(cudaFree(dv));
      CK(cudaFree(df));
      for (auto& st2 : steps) st2.free_all();
    }
    CK(cudaFree(cK));
    CK(cudaFree(cV));
    CK(cudaFree(dq));
    CK(cudaFree(dout));
    CK(cudaFree(scratch));
  }
  {
    auto x = check::rand_vec(11008 * 4, 13), w = check::rand_vec(4096, 14);
    float *dx = check::to_dev(x), *dw = check::to_dev(w), *dy;
    CK(cudaMalloc(&dy, x.size() * 4));
    auto fn = [&] { CK(rms_norm(dx, dw, dy, 1, 4096, 1e-5f, 0)); };
    std::printf("rms_norm 1 x 4096                                            : %7.2f us\n",
                check::time_us(fn, 200, 10));
    auto sfn = [&] { CK(silu_mul(dx, dx + 11008, dy, 11008, 0)); };
    std::printf("silu_mul 11008                                               : %7.2f us\n",
                check::time_us(sfn, 200, 10));
    auto afn = [&] { CK(add(dx, dx + 4096, dy, 4096, 0)); };
    std::printf("add 4096                                                     : %7.2f us\n",
                check::time_us(afn, 200, 10));
    CK(cudaFree(dx));
    CK(cudaFree(dw));
    CK(cudaFree(dy));
  }
}

// --profile POS NKV: a few decode attention launches (32/NKV/128 f16, maxCtx 4096) for ncu
void profile_decode(int pos, int nKv) {
  const int nHeads = 32, hd = 128, maxCtx = 4096, bs = 16, mbps = maxCtx / bs, kvDim = nKv * hd;
  const size_t n = (size_t)mbps * bs * kvDim;
  __half *cK, *cV;
  CK(cudaMalloc(&cK, n * 2));
  CK(cudaMalloc(&cV, n * 2));
  fill_half<<<1024, 256>>>(cK, n, 1);
  fill_half<<<1024, 256>>>(cV, n, 2);
  auto bt = shuffled_tables(1, mbps, mbps, 5);
  auto q = check::rand_vec((size_t)nHeads * hd, 9);
  float* dq = check::to_dev(q);
  float *dout, *scratch;
  CK(cudaMalloc(&dout, (size_t)nHeads * hd * 4));
  CK(cudaMalloc(&scratch, attention_scratch_bytes(1, nHeads, hd, maxCtx)));
  DevStep st = make_step({}, {pos}, {0}, {}, bt, mbps);
  for (int i = 0; i < 5; i++)
    CK(attention(dq, cK, cV, KV_F16, dout, 1, nHeads, nKv, hd, 1.f / std::sqrt((float)hd), bs, maxCtx, scratch,
                 st.sd(), 0));
  CK(cudaDeviceSynchronize());
}

}  // namespace ops_check
