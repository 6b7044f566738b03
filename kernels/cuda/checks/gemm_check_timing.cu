// Timing part of the GEMM check (see gemm_check.cu): LLaMA-7B prefill shapes on each tensor-core path, decode
// batches on the rows kernel against split-K tiles, and one layer's decode-batch GEMMs at each k-range width.
#include "gemm_check.cuh"

#include <string>

using namespace llama_ts;
using namespace gemm_check;

// ---- timing ------------------------------------------------------------------------------------------
// Median of reps runs; "cold": a 256 MB memset before each run evicts L2 (W, x come from HBM, as in a
// real forward pass where every layer has its own weights), outside the timed events.
template <class F>
static double time_cold_us(F fn, void* flush, size_t flushBytes, int reps = 30) {
  for (int i = 0; i < 3; i++) fn();
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t(reps);
  for (int i = 0; i < reps; i++) {
    CK(cudaMemsetAsync(flush, i & 0xFF, flushBytes));
    CK(cudaEventRecord(a));
    fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return t[reps / 2] * 1000.0;
}

static const char* kPathName[6] = {"auto", "simt", "x32 3-stage 2 blk/SM", "x32 4-stage 1 blk/SM",
                                   "xh 3-stage 2 blk/SM", "xh 4-stage 2 blk/SM"};

void gemm_check::timing() {
  struct TShape {
    int nRows, m, k;
  };
  const TShape tshapes[] = {{512, 4096, 4096}, {512, 11008, 4096}, {512, 4096, 11008}, {512, 32000, 4096}};
  struct TFmt {
    int fmt, group;
    const char* name;
  };
  const TFmt tfmts[] = {{WF_F16, 0, "f16"}, {WF_I8, -1, "i8/ch"}, {WF_I4, 128, "i4/g128"}};
  const size_t flushBytes = 256u << 20;
  void* flush = nullptr;
  CK(cudaMalloc(&flush, flushBytes));
  std::vector<std::string> table;
  char line[256];
  std::snprintf(line, sizeof line, "%-22s %-8s %-22s %10s %10s %9s %9s", "shape (rows x m x k)", "format", "path",
                "cold us", "warm us", "TF cold", "TF warm");
  table.push_back(line);
  for (const TShape& ts : tshapes) {
    std::vector<float> hx = check::rand_vec((size_t)ts.nRows * ts.k, 77);
    float* dx = check::to_dev(hx);
    float* dy = nullptr;
    CK(cudaMalloc(&dy, (size_t)ts.nRows * ts.m * sizeof(float)));
    for (const TFmt& tf : tfmts) {
      const int group = tf.group < 0 ? ts.k : tf.group;
      HostW w = make_weight(tf.fmt, group, ts.m, ts.k, 4242);
      DevW dw = upload(w);
      const double flop = 2.0 * ts.nRows * (double)ts.m * ts.k;
      void* ws = nullptr;
      const size_t wsBytes = gemm_workspace_bytes(dw.ref, ts.nRows);
      if (wsBytes) CK(cudaMalloc(&ws, wsBytes));
      for (int path = 2; path <= 5; path++) {
        gemm_set_path(path);
        void* wsArg = path >= 4 ? ws : nullptr;
        if (gemm_path_for(dx, ts.k, ts.nRows, dw.ref, wsArg) != path) {
          std::printf("timing: path %d not taken\n", path);
          check::g_failures++;
        }
        auto fn = [&] { CK(gemm(dx, ts.k, ts.nRows, dw.ref, dy, ts.m, nullptr, wsArg, 0)); };
        const double cold = time_cold_us(fn, flush, flushBytes);
        const double warm = check::time_us(fn, 30, 3);
        char shp[64];
        std::snprintf(shp, sizeof shp, "%dx%dx%d", ts.nRows, ts.m, ts.k);
        std::snprintf(line, sizeof line, "%-22s %-8s %-22s %10.1f %10.1f %9.1f %9.1f", shp, tf.name,
                      kPathName[path], cold, warm, flop / cold * 1e-6,
                      flop / warm * 1e-6);
        table.push_back(line);
        std::printf("%s\n", line);
        std::fflush(stdout);
      }
      if (ts.m == 4096 && ts.k == 4096 && tf.fmt == WF_F16) {
        gemm_set_path(1);
        auto fn = [&] { CK(gemm(dx, ts.k, ts.nRows, dw.ref, dy, ts.m, nullptr, nullptr, 0)); };
        const double warm = check::time_us(fn, 5, 1);
        std::snprintf(line, sizeof line, "%-22s %-8s %-22s %10s %10.1f %9s %9.1f", "512x4096x4096", tf.name,
                      "simt fallback", "-", warm, "-", flop / warm * 1e-6);
        table.push_back(line);
      }
      gemm_set_path(0);
      if (ws) CK(cudaFree(ws));
      release(dw);
    }
    CK(cudaFree(dx));
    CK(cudaFree(dy));
  }
  // decode batches (auto path, workspace, split-K where it applies), int8 per channel
  {
    const TShape dshapes[] = {{9, 4096, 4096},   {16, 4096, 4096},  {32, 4096, 4096},   {64, 4096, 4096},
                              {64, 11008, 4096}, {64, 4096, 11008}, {16, 11008, 4096}, {64, 32000, 4096}};
    for (const TShape& ts : dshapes) {
      std::vector<float> hx = check::rand_vec((size_t)ts.nRows * ts.k, 78);
      float* dx = check::to_dev(hx);
      float* dy = nullptr;
      CK(cudaMalloc(&dy, (size_t)ts.nRows * ts.m * sizeof(float)));
      HostW w = make_weight(WF_I8, ts.k, ts.m, ts.k, 4343);
      DevW dw = upload(w);
      void* ws = nullptr;
      const size_t wsBytes = gemm_workspace_bytes(dw.ref, ts.nRows);
      if (wsBytes) CK(cudaMalloc(&ws, wsBytes));
      const double flop = 2.0 * ts.nRows * (double)ts.m * ts.k, bytes = (double)ts.m * ts.k;
      // A: rows kernel (default, gemm_rows.cu), B: 128 x 128 tiles with split-K up to 8, C: up to 4 ways
      auto fn = [&] { CK(gemm(dx, ts.k, ts.nRows, dw.ref, dy, ts.m, nullptr, ws, 0)); };
      const double usA = time_cold_us(fn, flush, flushBytes);
      gemm_set_rows_kernel(0);
      const int spB = gemm_splits_for(ts.nRows, dw.ref);
      const double usB = time_cold_us(fn, flush, flushBytes);
      gemm_set_max_splits(4);
      const int spC = gemm_splits_for(ts.nRows, dw.ref);
      const double usC = time_cold_us(fn, flush, flushBytes);
      gemm_set_max_splits(8);
      gemm_set_rows_kernel(1);
      char shp[64];
      std::snprintf(shp, sizeof shp, "%dx%dx%d", ts.nRows, ts.m, ts.k);
      std::snprintf(line, sizeof line,
                    "%-18s i8/ch rows kernel %7.1f us (%5.0f GB/s, %5.1f TF) | tiles %d splits %7.1f us | %d splits %7.1f us",
                    shp, usA, bytes / usA * 1e-3, flop / usA * 1e-6, spB, usB, spC, usC);
      table.push_back(line);
      std::printf("%s\n", line);
      if (ws) CK(cudaFree(ws));
      release(dw);
      CK(cudaFree(dx));
      CK(cudaFree(dy));
    }
  }
  // one LLaMA-7B layer's decode-batch GEMMs on the rows kernel (QKV and gate/up as one launch each, as the
  // runtime runs them) at each k-range width: the planner's choice ("auto") against fixed widths
  {
    const int K = 4096, H = 11008;
    DevW wq = upload(make_weight(WF_I8, K, K, K, 51)), wk = upload(make_weight(WF_I8, K, K, K, 52));
    DevW wv = upload(make_weight(WF_I8, K, K, K, 53)), wo = upload(make_weight(WF_I8, K, K, K, 54));
    DevW w1 = upload(make_weight(WF_I8, K, H, K, 55)), w3 = upload(make_weight(WF_I8, K, H, K, 56));
    DevW w2 = upload(make_weight(WF_I8, H, K, H, 57));
    const size_t wsb = std::max(3 * gemm_rows_workspace_bytes(wq.ref, 64),
                                std::max(2 * gemm_rows_workspace_bytes(w1.ref, 64), gemm_rows_workspace_bytes(w2.ref, 64)));
    void* ws = nullptr;
    CK(cudaMalloc(&ws, wsb));
    float* dx = check::to_dev(check::rand_vec((size_t)64 * H, 79));
    float *y0 = nullptr, *y1 = nullptr, *y2 = nullptr;
    for (float** b : {&y0, &y1, &y2}) CK(cudaMalloc(b, (size_t)64 * H * sizeof(float)));
    const WeightRef qkv[3] = {wq.ref, wk.ref, wv.ref}, gu[2] = {w1.ref, w3.ref};
    float* yq[3] = {y0, y1, y2};
    const int ldq[3] = {K, K, K}, ldg[2] = {H, H};
    const int kbs[] = {0, 512, 768, 1024, 1408, 1536};
    for (int rows : {16, 64}) {
      double tot[6] = {0};
      char hdr[160];
      std::snprintf(hdr, sizeof hdr, "7B layer, %d rows, us (cold) by k-range width: auto / 512 / 768 / 1024 / 1408 / 1536",
                    rows);
      table.push_back(hdr);
      std::printf("%s\n", hdr);
      for (int op = 0; op < 4; op++) {
        double us[6];
        for (int i = 0; i < 6; i++) {
          gemm_set_rows_kb(kbs[i]);
          auto fn = [&] {
            if (op == 0) CK(gemm_rows_multi(dx, K, rows, qkv, yq, ldq, nullptr, 3, false, ws, 0));
            if (op == 1) CK(gemm_rows(dx, K, rows, wo.ref, y0, K, y1, ws, 0));
            if (op == 2) CK(gemm_rows_multi(dx, K, rows, gu, yq, ldg, nullptr, 2, true, ws, 0));
            if (op == 3) CK(gemm_rows(dx, H, rows, w2.ref, y0, K, y1, ws, 0));
          };
          us[i] = time_cold_us(fn, flush, flushBytes);
          tot[i] += us[i];
        }
        static const char* names[4] = {"qkv 3x4096x4096", "wo 4096x4096", "gate/up 2x11008x4096", "w2 4096x11008"};
        std::snprintf(line, sizeof line, "  %-22s %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f", names[op], us[0], us[1], us[2],
                      us[3], us[4], us[5]);
        table.push_back(line);
        std::printf("%s\n", line);
      }
      std::snprintf(line, sizeof line, "  %-22s %7.1f %7.1f %7.1f %7.1f %7.1f %7.1f", "layer", tot[0], tot[1], tot[2],
                    tot[3], tot[4], tot[5]);
      table.push_back(line);
      std::printf("%s\n", line);
    }
    gemm_set_rows_kb(0);
    for (DevW* d : {&wq, &wk, &wv, &wo, &w1, &w3, &w2}) release(*d);
    for (float* b : {y0, y1, y2, dx}) CK(cudaFree(b));
    CK(cudaFree(ws));
  }
  CK(cudaFree(flush));
  CK(cudaGetLastError());
  std::printf("\n");
  for (const std::string& l : table) std::printf("%s\n", l.c_str());
}
