// Standalone check of gemm() (kernels/cuda/gemm.cu): every weight format, with and without res (also
// res aliasing y), odd shapes and strides; each case runs the tensor-core path with the workspace (f16 x
// copy, paths 4/5), without it (f32 x, paths 2/3) and the SIMT fallback (path 1), against a CPU double
// reference; then a timing table for LLaMA-7B prefill shapes (gemm() calls, x conversion included).
//   nvcc -O3 -std=c++17 -arch=sm_90 -o gemm_check checks/gemm_check*.cu gemm.cu gemm_tc.cu gemm_rows.cu
//     (from kernels/cuda)
// The program's files: this one (helpers, correctness cases, main), gemm_check_timing.cu (timing tables);
// gemm_check.cuh declares what they share.
//
// References and tolerances (NMSE = sum (got - ref)^2 / sum ref^2 over the checked entries):
//  * tensor-core path vs "consumed" reference: double sum over f16(x) * f16(dequant W), i.e. the exact
//    values the kernel feeds the mma (bf16 -> f16 rounded, i8/i4 -> f16(scale * q)). Only the f32
//    accumulation order differs: relative error ~ sqrt(k/16) * 2^-24 per output, NMSE < 1e-10 even with
//    truncating accumulation; tolerance 1e-8 (any indexing / scale / pipeline bug is >= 1e-4).
//  * tensor-core path vs exact reference (f32 x, exact dequantized W): adds the f16 rounding of x (and
//    of the dequantized W): per-element relative error uniform in +-2^-11 -> NMSE ~ 2^-22/3 ~ 8e-8 per
//    rounded operand, ~2e-7 total; tolerance 1e-5 (the brief's bound; 50x margin).
//  * SIMT path (f32 x, f32 dequantized W, which is exact for every format) vs exact reference: f32
//    accumulation only; tolerance 1e-9.
// Every output entry outside [nRows x m] (row/column padding, a spare row) must be left untouched and
// every entry inside must be finite (outputs are poisoned with NaN first). Big shapes compare a random
// sample of entries (plus corners); small ones compare all entries.
#include "gemm_check.cuh"

#include <cstring>
#include <string>

using namespace llama_ts;
using namespace gemm_check;

static const char* fmt_name(int f) {
  switch (f) {
    case WF_F32: return "f32";
    case WF_F16: return "f16";
    case WF_BF16: return "bf16";
    case WF_I8: return "i8";
    case WF_I4: return "i4";
  }
  return "?";
}

static float h2f(__half h) { return __half2float(h); }
static float round_h(float v) { return __half2float(__float2half_rn(v)); }

static size_t q_bytes(int fmt, int m, int k) {
  switch (fmt) {
    case WF_F32: return (size_t)m * k * 4;
    case WF_F16:
    case WF_BF16: return (size_t)m * k * 2;
    case WF_I8: return (size_t)m * k;
    default: return (size_t)m * k / 2;
  }
}

HostW gemm_check::make_weight(int fmt, int group, int m, int k, uint64_t seed) {
  HostW w;
  w.fmt = fmt;
  w.group = group;
  w.m = m;
  w.k = k;
  w.q.resize(q_bytes(fmt, m, k));
  check::Rng r(seed);
  const size_t n = (size_t)m * k;
  if (fmt == WF_F32) {
    float* p = reinterpret_cast<float*>(w.q.data());
    for (size_t i = 0; i < n; i++) p[i] = r.next();
  } else if (fmt == WF_F16) {
    __half* p = reinterpret_cast<__half*>(w.q.data());
    for (size_t i = 0; i < n; i++) p[i] = __float2half_rn(r.next());
  } else if (fmt == WF_BF16) {
    __nv_bfloat16* p = reinterpret_cast<__nv_bfloat16*>(w.q.data());
    for (size_t i = 0; i < n; i++) p[i] = __float2bfloat16_rn(r.next());
  } else {
    // raw random bytes: i8 covers -128..127, i4 all nibbles
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; i < w.q.size(); i++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      w.q[i] = (uint8_t)(s >> 24);
    }
    const size_t ns = (size_t)m * (k / group);
    w.sc.resize(ns);
    // |w| up to ~1.5: i8 scale in [0.004, 0.012], i4 scale in [0.05, 0.15]
    const float base = fmt == WF_I8 ? 0.008f : 0.1f;
    for (size_t i = 0; i < ns; i++) w.sc[i] = __float2half_rn(base * (1.f + 0.5f * r.next()));
  }
  return w;
}

// Row j of W dequantized: exact (what the SIMT kernel uses; exact in f32 for every format) or as the
// tensor-core path consumes it (rounded to f16).
static void deq_row(const HostW& w, int j, bool tc, float* out) {
  const int k = w.k;
  const size_t o = (size_t)j * k;
  switch (w.fmt) {
    case WF_F32: {
      const float* p = reinterpret_cast<const float*>(w.q.data()) + o;
      for (int i = 0; i < k; i++) out[i] = p[i];
      break;
    }
    case WF_F16: {
      const __half* p = reinterpret_cast<const __half*>(w.q.data()) + o;
      for (int i = 0; i < k; i++) out[i] = h2f(p[i]);
      break;
    }
    case WF_BF16: {
      const __nv_bfloat16* p = reinterpret_cast<const __nv_bfloat16*>(w.q.data()) + o;
      for (int i = 0; i < k; i++) {
        const float v = __bfloat162float(p[i]);
        out[i] = tc ? round_h(v) : v;
      }
      break;
    }
    case WF_I8: {
      const int8_t* p = reinterpret_cast<const int8_t*>(w.q.data()) + o;
      const __half* s = w.sc.data() + (size_t)j * (k / w.group);
      for (int i = 0; i < k; i++) {
        const float v = h2f(s[i / w.group]) * (float)p[i];  // exact in f32
        out[i] = tc ? round_h(v) : v;
      }
      break;
    }
    case WF_I4: {
      const uint8_t* p = w.q.data() + (size_t)j * (k / 2);
      const __half* s = w.sc.data() + (size_t)j * (k / w.group);
      for (int i = 0; i < k; i++) {
        const float v = h2f(s[i / w.group]) * (float)(check::q4_code(p, i) - 8);
        out[i] = tc ? round_h(v) : v;
      }
      break;
    }
  }
}

DevW gemm_check::upload(const HostW& w) {
  DevW d;
  d.q = check::to_dev(w.q);
  if (!w.sc.empty()) d.sc = check::to_dev(w.sc);
  d.ref.q = d.q;
  d.ref.scales = d.sc;
  d.ref.fmt = w.fmt;
  d.ref.group = (w.fmt == WF_I8 || w.fmt == WF_I4) ? w.group : 0;
  d.ref.m = w.m;
  d.ref.k = w.k;
  return d;
}
void gemm_check::release(DevW& d) {
  CK(cudaFree(d.q));
  if (d.sc) CK(cudaFree(d.sc));
  d.q = nullptr;
  d.sc = nullptr;
}

// ---- one correctness case --------------------------------------------------------------------------------
// resMode: 0 = no res, 1 = separate res, 2 = res aliases y (y pre-filled with res)
struct Case {
  int fmt, group, nRows, m, k, ldx, ldy, resMode;
  int xOffset;  // floats added to the x pointer (1 -> misaligned x: forces the SIMT path)
};

static int rowsCases = 0;  // correctness runs that took gemm_rows.cu

static const char* res_name(int r) { return r == 0 ? "nores" : r == 1 ? "res" : "res=y"; }

static void run_case(const Case& c, uint64_t seed, bool sampled, int nSamples = 400) {
  HostW w = make_weight(c.fmt, c.group, c.m, c.k, seed);
  DevW dw = upload(w);
  const size_t xN = (size_t)(c.nRows - 1) * c.ldx + c.k + c.xOffset + 4;
  std::vector<float> hx = check::rand_vec(xN, seed + 1);
  const size_t yN = (size_t)(c.nRows + 1) * c.ldy + 8;  // one spare row: must stay untouched
  std::vector<float> hres = check::rand_vec(yN, seed + 2, 4.f);
  float* dx = check::to_dev(hx);
  float* dres = check::to_dev(hres);
  float* dy = nullptr;
  CK(cudaMalloc(&dy, yN * sizeof(float)));
  const float* xk = dx + c.xOffset;  // x as passed to gemm
  const float* hxk = hx.data() + c.xOffset;

  // samples
  std::vector<std::pair<int, int>> smp;
  if (!sampled) {
    for (int r = 0; r < c.nRows; r++)
      for (int j = 0; j < c.m; j++) smp.push_back({r, j});
  } else {
    check::Rng rr(seed + 3);
    smp.push_back({0, 0});
    smp.push_back({c.nRows - 1, c.m - 1});
    smp.push_back({0, c.m - 1});
    smp.push_back({c.nRows - 1, 0});
    for (int i = 0; i < nSamples; i++) {
      int r = (int)((rr.next() * 0.5f + 0.5f) * c.nRows);
      int j = (int)((rr.next() * 0.5f + 0.5f) * c.m);
      smp.push_back({std::min(r, c.nRows - 1), std::min(j, c.m - 1)});
    }
  }
  // references: exact (f32 x, exact W) and tc-consumed (f16 x, f16 W)
  const bool hasTc = c.fmt != WF_F32;
  // refRw: f16 x, exact W (what gemm_rows.cu computes: exact int8 codes, f32 sums, row scale at the end)
  std::vector<double> refEx(smp.size()), refTc(smp.size()), refRw(smp.size());
  {
    std::vector<float> wex(c.k), wtc(c.k);
    std::vector<float> hxr(hx.size());  // f16-rounded x, as the tensor-core path consumes it
    for (size_t i = 0; i < hx.size(); i++) hxr[i] = round_h(hx[i]);
    const float* hxrk = hxr.data() + c.xOffset;
    // group samples by column j to dequantize each row once
    std::vector<size_t> order(smp.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return smp[a].second < smp[b].second; });
    int lastJ = -1;
    for (size_t oi : order) {
      const int r = smp[oi].first, j = smp[oi].second;
      if (j != lastJ) {
        deq_row(w, j, false, wex.data());
        if (hasTc) deq_row(w, j, true, wtc.data());
        lastJ = j;
      }
      const float* xrow = hxk + (size_t)r * c.ldx;
      const float* xrowr = hxrk + (size_t)r * c.ldx;
      double se = 0, st = 0, sr = 0;
      for (int i = 0; i < c.k; i++) se += (double)xrow[i] * wex[i];
      for (int i = 0; i < c.k; i++) sr += (double)xrowr[i] * wex[i];
      if (hasTc)
        for (int i = 0; i < c.k; i++) st += (double)xrowr[i] * wtc[i];
      const double base = c.resMode ? (double)hres[(size_t)r * c.ldy + j] : 0.0;
      refEx[oi] = base + se;
      refTc[oi] = base + st;
      refRw[oi] = base + sr;
    }
  }

  const size_t wsBytes = gemm_workspace_bytes(dw.ref, c.nRows);
  void* ws = nullptr;
  if (wsBytes) CK(cudaMalloc(&ws, wsBytes));

  // expected paths, derived independently of gemm.cu: with the workspace (f16 copy of x) the tensor
  // cores take any x; without it x must be 16-byte aligned with ldx % 4 == 0
  const bool quant = c.fmt == WF_I8 || c.fmt == WF_I4;
  const bool wTc = c.fmt != WF_F32 && (quant ? (c.group % 32 == 0) : (c.k % 8 == 0));
  const bool expectTcWs = wTc;
  const bool expectTcNoWs = wTc && c.xOffset % 4 == 0 && c.ldx % 4 == 0;

  // mode 0: auto with workspace (paths 4/5), 1: auto without workspace (paths 2/3), 2: forced SIMT
  for (int mode = 0; mode < 3; mode++) {
    if (mode == 1 && !wsBytes) continue;  // same as mode 0
    gemm_set_path(mode == 2 ? 1 : 0);
    void* wsArg = mode == 0 ? ws : nullptr;
    const int path = gemm_path_for(xk, c.ldx, c.nRows, dw.ref, wsArg);
    const bool tc = path >= 2;
    // gemm() takes gemm_rows.cu for 1..64 rows of per-channel int8 weights when given a workspace
    const bool rowsPath = wsArg && gemm_rows_usable(xk, c.ldx, c.nRows, dw.ref);
    char name[200];
    std::snprintf(name, sizeof name, "%s g%d %dx%dx%d ldx%d ldy%d%s %s [%s%d]", fmt_name(c.fmt), quant ? c.group : 0,
                  c.nRows, c.m, c.k, c.ldx, c.ldy, c.xOffset ? " x+1" : "", res_name(c.resMode),
                  rowsPath ? "rows, p" : "p", path);
    const bool expectTc = mode == 0 ? (wsBytes ? expectTcWs : expectTcNoWs) : mode == 1 ? expectTcNoWs : false;
    if (tc != expectTc || (mode == 0 && tc && path < 4) || (mode == 1 && path > 3)) {
      std::printf("%-60s path %d but expected %s  FAIL\n", name, path, expectTc ? "tensor cores" : "simt");
      check::g_failures++;
    }
    // initial y: poison (NaN) or, for the alias mode, the res values
    std::vector<float> y0(yN);
    if (c.resMode == 2) {
      y0 = hres;
    } else {
      std::memset(y0.data(), 0xFF, yN * sizeof(float));
    }
    CK(cudaMemcpy(dy, y0.data(), yN * sizeof(float), cudaMemcpyHostToDevice));
    const float* resPtr = c.resMode == 0 ? nullptr : c.resMode == 1 ? dres : dy;
    CK(gemm(xk, c.ldx, c.nRows, dw.ref, dy, c.ldy, resPtr, wsArg, 0));
    CK(cudaDeviceSynchronize());
    std::vector<float> hy = check::from_dev(dy, yN);
    // untouched outside, finite inside
    size_t badOut = 0, badIn = 0;
    for (size_t i = 0; i < yN; i++) {
      const size_t r = i / c.ldy, j = i % c.ldy;
      const bool inside = r < (size_t)c.nRows && j < (size_t)c.m;
      if (inside) {
        if (!std::isfinite(hy[i])) badIn++;
      } else if (std::memcmp(&hy[i], &y0[i], 4) != 0) {
        badOut++;
      }
    }
    if (badOut || badIn) {
      std::printf("%-60s %zu entries written outside, %zu non-finite inside  FAIL\n", name, badOut, badIn);
      check::g_failures++;
    }
    std::vector<float> got(smp.size());
    for (size_t i = 0; i < smp.size(); i++) got[i] = hy[(size_t)smp[i].first * c.ldy + smp[i].second];
    const double eEx = check::nmse(got.data(), refEx.data(), got.size());
    if (rowsPath) {
      const double eRw = check::nmse(got.data(), refRw.data(), got.size());
      check::expect((std::string(name) + " vs f16-x").c_str(), eRw, 1e-10);
      check::expect((std::string(name) + " vs exact").c_str(), eEx, 1e-5);
      rowsCases++;
    } else if (tc) {
      const double eTc = check::nmse(got.data(), refTc.data(), got.size());
      check::expect((std::string(name) + " vs f16-in").c_str(), eTc, 1e-8);
      check::expect((std::string(name) + " vs exact").c_str(), eEx, 1e-5);
    } else {
      check::expect((std::string(name) + " vs exact").c_str(), eEx, 1e-9);
    }
  }
  gemm_set_path(0);
  if (ws) CK(cudaFree(ws));
  CK(cudaFree(dx));
  CK(cudaFree(dres));
  CK(cudaFree(dy));
  release(dw);
}

int main(int argc, char** argv) {
  // --quick: small correctness cases only (for compute-sanitizer runs)
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, cc %d.%d, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.major,
              prop.minor, prop.l2CacheSize >> 20);

  // ---- correctness --------------------------------------------------------------------------------------
  struct Shape {
    int nRows, m, k, ldxPad, ldyPad, xOffset;
  };
  const Shape shapes[] = {
      {1, 172, 64, 0, 0, 0},      // single row
      {7, 513, 96, 0, 0, 0},      // odd m, 3 k tiles
      {130, 172, 4096, 0, 0, 0},  // rows straddle a 128-row tile, long k
      {130, 513, 256, 4, 3, 0},   // padded ldx, odd ldy (scalar epilogue)
      {259, 300, 512, 0, 2, 0},   // 3 row tiles, padded even ldy
      {1029, 260, 128, 0, 0, 0},  // many rows
      {64, 4096, 4096, 0, 0, 0},  // decode batch: 32 column blocks < SMs -> split-K (4 splits)
      {100, 1000, 1056, 0, 3, 0}, // split-K with 33 k tiles (uneven splits), odd ldy
  };
  const Shape floatOnly[] = {
      {33, 100, 104, 0, 0, 0},  // k % 8 == 0 but not % 32: partial last k tile on tensor cores
      {33, 100, 100, 0, 0, 0},  // k % 8 != 0: SIMT fallback for f16/bf16
      {5, 50, 37, 0, 1, 0},     // odd k and ldx: SIMT fallback
      {70, 129, 64, 0, 0, 1},   // misaligned x: SIMT fallback
      {64, 136, 40, 4, 0, 0},   // k = 40
  };
  uint64_t seed = 1000;
  int caseNo = 0;
  auto add = [&](int fmt, int group, const Shape& s, bool sampled) {
    Case c{fmt, group, s.nRows, s.m, s.k, s.k + s.ldxPad, s.m + s.ldyPad, caseNo % 3, s.xOffset};
    caseNo++;
    run_case(c, seed += 17, sampled);
  };
  for (const Shape& s : shapes) {
    add(WF_F32, 0, s, false);
    add(WF_F16, 0, s, false);
    add(WF_BF16, 0, s, false);
    add(WF_I8, 32, s, false);
    add(WF_I8, s.k, s, false);  // per-channel
    add(WF_I4, 32, s, false);
    if (s.k % 128 == 0) add(WF_I4, 128, s, false);
    if (s.k % 128 == 0) add(WF_I8, 128, s, false);
  }
  for (const Shape& s : floatOnly) {
    add(WF_F32, 0, s, false);
    add(WF_F16, 0, s, false);
    add(WF_BF16, 0, s, false);
  }
  {  // quantized with misaligned x: SIMT fallback
    const Shape s{9, 77, 64, 0, 0, 1};
    add(WF_I8, 32, s, false);
    add(WF_I4, 32, s, false);
  }
  // Each res mode on a long-k shape for every format (all three modes covered per format above only
  // by rotation): explicitly run the alias mode with f16 and i4 at k = 4096.
  for (int rm = 0; rm < 3; rm++) {
    run_case({WF_F16, 0, 130, 172, 4096, 4096, 172, rm, 0}, seed += 17, false);
    run_case({WF_I4, 128, 130, 172, 4096, 4096, 172, rm, 0}, seed += 17, false);
  }
  // decode-batch rows kernel (gemm_rows.cu): per-channel int8, k % 64 == 0, 1..64 rows; n-tiles of 1/2/4/8,
  // m not a multiple of 16, a short last k-range (1088 = 1024 + 64), every res mode
  {
    const Shape rowsShapes[] = {{1, 4096, 4096, 0, 0, 0}, {9, 1000, 1088, 0, 3, 0}, {16, 172, 64, 4, 0, 0},
                                {17, 520, 2048, 0, 0, 0}, {33, 4096, 4096, 0, 1, 0}, {64, 1000, 3136, 0, 0, 0},
                                {64, 4096, 1024, 0, 2, 0}, {5, 24, 128, 0, 0, 0}};
    for (const Shape& s : rowsShapes)
      for (int rm = 0; rm < 3; rm++)
        run_case({WF_I8, s.k, s.nRows, s.m, s.k, s.k + s.ldxPad, s.m + s.ldyPad, rm, 0}, seed += 17, s.m * s.k > 4e6);
    // fixed k-range widths (the planner's extremes and an odd multiple of 64), one res mode each
    for (int kb : {512, 1344, 1536}) {
      gemm_set_rows_kb(kb);
      for (const Shape& s : rowsShapes)
        run_case({WF_I8, s.k, s.nRows, s.m, s.k, s.k + s.ldxPad, s.m + s.ldyPad, 1, 0}, seed += 17, s.m * s.k > 4e6);
    }
    gemm_set_rows_kb(0);
    // gemm_rows_multi: QKV-like (3 weights, GQA widths) must equal the single-weight calls bit for bit given
    // the same k-ranges (fixed here: the planner may choose other widths for other group counts), same mma and
    // sum order; gate/up against silu(gate) * up of the single calls
    {
      gemm_set_rows_kb(1024);
      const int rows = 24, k = 2048, ms[3] = {1024, 256, 264};
      DevW dw[3];
      WeightRef wr[3];
      size_t wsb = 0;
      for (int i = 0; i < 3; i++) {
        dw[i] = upload(make_weight(WF_I8, k, ms[i], k, 900 + i));
        wr[i] = dw[i].ref;
        wsb += gemm_rows_workspace_bytes(wr[i], rows) + gemm_workspace_bytes(wr[i], rows);
      }
      void* ws = nullptr;
      CK(cudaMalloc(&ws, wsb));
      float* dx = check::to_dev(check::rand_vec((size_t)rows * k, 901));
      float *ys[3], *yr[3];
      int ldys[3];
      for (int i = 0; i < 3; i++) {
        CK(cudaMalloc(&ys[i], (size_t)rows * ms[i] * sizeof(float)));
        CK(cudaMalloc(&yr[i], (size_t)rows * ms[i] * sizeof(float)));
        ldys[i] = ms[i];
      }
      CK(gemm_rows_multi(dx, k, rows, wr, ys, ldys, nullptr, 3, false, ws, 0));
      for (int i = 0; i < 3; i++) CK(gemm(dx, k, rows, wr[i], yr[i], ms[i], nullptr, ws, 0));
      CK(cudaDeviceSynchronize());
      size_t diff = 0;
      for (int i = 0; i < 3; i++) {
        std::vector<float> a = check::from_dev(ys[i], (size_t)rows * ms[i]), b = check::from_dev(yr[i], (size_t)rows * ms[i]);
        for (size_t j = 0; j < a.size(); j++) diff += std::memcmp(&a[j], &b[j], 4) != 0;
      }
      std::printf("rows multi (QKV, m 1024/256/264): %zu of %d outputs differ from single calls%s\n", diff,
                  rows * (1024 + 256 + 264), diff ? "  FAIL" : "");
      if (diff) check::g_failures++;
      // gate/up: two more weights of one shape, own output buffers
      DevW g1 = upload(make_weight(WF_I8, k, 1000, k, 910)), g3 = upload(make_weight(WF_I8, k, 1000, k, 911));
      const WeightRef w13[2] = {g1.ref, g3.ref};
      float *gy = nullptr, *gs = nullptr, *gg = nullptr, *gu = nullptr;
      for (float** b : {&gy, &gs, &gg, &gu}) CK(cudaMalloc(b, (size_t)rows * 1000 * sizeof(float)));
      float* yg[2] = {gy, gs};
      const int ldg[2] = {1000, 1000};
      CK(gemm_rows_multi(dx, k, rows, w13, yg, ldg, nullptr, 2, true, ws, 0));
      CK(gemm(dx, k, rows, g1.ref, gg, 1000, nullptr, ws, 0));
      CK(gemm(dx, k, rows, g3.ref, gu, 1000, nullptr, ws, 0));
      CK(cudaDeviceSynchronize());
      std::vector<float> got = check::from_dev(gy, (size_t)rows * 1000);
      std::vector<float> hg = check::from_dev(gg, (size_t)rows * 1000), hu = check::from_dev(gu, (size_t)rows * 1000);
      std::vector<double> want(got.size());
      for (size_t j = 0; j < want.size(); j++) want[j] = hg[j] / (1.0 + std::exp(-(double)hg[j])) * hu[j];
      check::expect("rows multi gate/up vs silu(gate) * up of single calls", check::nmse(got.data(), want.data(), got.size()),
                    1e-12);
      for (float* b : {gy, gs, gg, gu}) CK(cudaFree(b));
      release(g1);
      release(g3);
      for (int i = 0; i < 3; i++) {
        release(dw[i]);
        CK(cudaFree(ys[i]));
        CK(cudaFree(yr[i]));
      }
      CK(cudaFree(dx));
      CK(cudaFree(ws));
      gemm_set_rows_kb(0);
    }
    if (rowsCases < 48) {
      std::printf("rows kernel: only %d cases took it (expected >= 48)  FAIL\n", rowsCases);
      check::g_failures++;
    }
  }
  if (quick) return check::finish("gemm_check --quick");
  // big sampled shapes (the timed ones), with res
  run_case({WF_F16, 0, 512, 4096, 4096, 4096, 4096, 1, 0}, seed += 17, true);
  run_case({WF_I8, 4096, 512, 4096, 4096, 4096, 4096, 2, 0}, seed += 17, true);
  run_case({WF_I4, 128, 512, 11008, 4096, 4096, 11008, 1, 0}, seed += 17, true);
  run_case({WF_BF16, 0, 512, 4096, 11008, 11008, 4096, 0, 0}, seed += 17, true);
  run_case({WF_I8, 32, 512, 4096, 11008, 11008, 4096, 1, 0}, seed += 17, true);
  run_case({WF_I4, 32, 600, 32000, 4096, 4096, 32000, 0, 0}, seed += 17, true);
  run_case({WF_F16, 0, 4096, 1024, 4096, 4096, 1024, 2, 0}, seed += 17, true);

  timing();
  return check::finish("gemm_check");
}
