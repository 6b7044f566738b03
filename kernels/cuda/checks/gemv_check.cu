// Check of gemv.cu: gemv / gemv_multi / gemv_gateup for every weight format against a CPU double reference
// (on exactly the dequantized values the kernel sees), repack_q8_0 / repack_q4_0 (exact), quantize_weight
// (exact against a CPU quantizer + quantization error bounds), then a timing table for LLaMA-7B shapes.
// Build (from kernels/cuda):
//   nvcc -O3 -std=c++17 -arch=sm_90 -o gemv_check checks/gemv_check*.cu gemv.cu gemv_launch.cu weight_prepare.cu
// The program's files: this one (helpers, gemv / gemv_multi / gemv_gateup cases, main), gemv_check_prepare.cu
// (repack, quantize), gemv_check_timing.cu (timing table); gemv_check.cuh declares what they share.
#include "gemv_check.cuh"

#include <cstring>
#include <string>

using namespace llama_ts;

namespace llama_ts {
void gemv_debug_set_tuning(int blocksPerSmCap, bool pdl);  // gemv.cu, check-only hook
}

namespace gemv_check {

uint16_t f2h(float f) { return __half_raw(__float2half_rn(f)).x; }
float h2f(uint16_t b) { __half_raw r; r.x = b; return __half2float(__half(r)); }
uint16_t f2bf(float f) { return __nv_bfloat16_raw(__float2bfloat16_rn(f)).x; }
float bf2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; std::memcpy(&f, &u, 4); return f; }

const char* fmt_name(int f) {
  switch (f) {
    case WF_F32: return "f32";
    case WF_F16: return "f16";
    case WF_BF16: return "bf16";
    case WF_I8: return "i8";
    case WF_I4: return "i4";
  }
  return "?";
}

HostW make_weight(int fmt, int m, int k, int group, uint64_t seed) {
  HostW w;
  w.fmt = fmt; w.m = m; w.k = k; w.group = group;
  check::Rng r(seed);
  const size_t n = (size_t)m * k;
  w.deq.resize(n);
  if (fmt == WF_F32) {
    w.q.resize(n * 4);
    for (size_t i = 0; i < n; i++) { float v = r.next(); std::memcpy(&w.q[i * 4], &v, 4); w.deq[i] = v; }
  } else if (fmt == WF_F16 || fmt == WF_BF16) {
    w.q.resize(n * 2);
    for (size_t i = 0; i < n; i++) {
      uint16_t b = fmt == WF_F16 ? f2h(r.next()) : f2bf(r.next());
      std::memcpy(&w.q[i * 2], &b, 2);
      w.deq[i] = fmt == WF_F16 ? h2f(b) : bf2f(b);
    }
  } else {
    const int ng = k / group;
    w.scales.resize((size_t)m * ng);
    for (auto& s : w.scales) {
      float u = r.next();
      float mag = 0.002f + 0.018f * std::fabs(u);
      s = f2h(u < 0 ? -mag : mag);
    }
    if (fmt == WF_I8) {
      w.q.resize(n);
      for (size_t i = 0; i < n; i++) w.q[i] = (uint8_t)(r.s >> 24), r.next();
      for (int j = 0; j < m; j++)
        for (int i = 0; i < k; i++)
          w.deq[(size_t)j * k + i] = h2f(w.scales[(size_t)j * ng + i / group]) * (float)(int8_t)w.q[(size_t)j * k + i];
    } else {
      w.q.resize(n / 2);
      for (size_t i = 0; i < n / 2; i++) w.q[i] = (uint8_t)(r.s >> 24), r.next();
      for (int j = 0; j < m; j++)
        for (int i = 0; i < k; i++) {
          const int nib = check::q4_code(w.q.data() + ((size_t)j * k) / 2, i);
          w.deq[(size_t)j * k + i] = h2f(w.scales[(size_t)j * ng + i / group]) * (float)(nib - 8);
        }
    }
  }
  return w;
}

// xn rows (double) from x (nRows x ldx) with optional RMSNorm.
std::vector<double> ref_xn(const std::vector<float>& x, int ldx, int nRows, int k, const float* normW, float eps) {
  std::vector<double> xn((size_t)nRows * k);
  for (int r = 0; r < nRows; r++) {
    double ss = 0;
    for (int i = 0; i < k; i++) ss += (double)x[(size_t)r * ldx + i] * x[(size_t)r * ldx + i];
    const double inv = normW ? 1.0 / std::sqrt(ss / k + (double)eps) : 1.0;
    for (int i = 0; i < k; i++)
      xn[(size_t)r * k + i] = (double)x[(size_t)r * ldx + i] * inv * (normW ? (double)normW[i] : 1.0);
  }
  return xn;
}

double dotw(const HostW& w, int j, const double* xr) {
  double s = 0;
  const float* wr = &w.deq[(size_t)j * w.k];
  for (int i = 0; i < w.k; i++) s += (double)wr[i] * xr[i];
  return s;
}

}  // namespace gemv_check

using namespace gemv_check;

namespace {

double tol_for(int fmt) { return fmt == WF_I4 ? 1e-9 : 1e-10; }

// Worst NMSE per named group of cases, reported once per group.
struct Worst {
  std::string name;
  double worst = 0;
  double tol = 0;
  int cases = 0;
  void add(double e, const std::string& what) {
    cases++;
    if (!(e <= worst)) worst = e;  // NaN/inf propagate
    if (!(e <= tol)) std::printf("  FAIL detail: %s nmse %.3e\n", what.c_str(), e);
  }
  void report() {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s (%d cases, worst)", name.c_str(), cases);
    check::expect(buf, worst, tol);
  }
};

void check_api(const char* what, cudaError_t got, cudaError_t want) {
  const bool ok = got == want;
  std::printf("%-60s %s (%s)\n", what, ok ? "ok" : "FAIL", cudaGetErrorString(got));
  if (!ok) check::g_failures++;
}

// ---- gemv --------------------------------------------------------------------------------------------
void test_gemv(int fmt, int m, int k, int group, uint64_t seed) {
  char nm[128];
  std::snprintf(nm, sizeof nm, "gemv %s m=%d k=%d g=%d", fmt_name(fmt), m, k, group);
  Worst W{nm, 0, tol_for(fmt)};
  HostW hw = make_weight(fmt, m, k, group, seed);
  DevW dw;
  dw.upload(hw);
  const int maxR = gemv_max_rows(k);
  const int rowsList[3] = {1, 3, maxR};
  const float eps = 1e-5f;
  std::vector<float> normW = check::rand_vec(k, seed + 7);
  for (auto& v : normW) v = 1.0f + 0.5f * v;
  float* dNorm = check::to_dev(normW);
  for (int ri = 0; ri < 3; ri++) {
    const int nR = rowsList[ri];
    if (nR > maxR || (ri == 2 && maxR == 3) || (ri == 1 && maxR < 3)) continue;
    for (int variant = 0; variant < 8; variant++) {
      const bool useNorm = variant & 1;
      const int resMode = (variant >> 1) % 3;  // 0 none, 1 separate, 2 alias (res == y)
      if ((variant >> 1) >= 3) continue;
      const bool oddStrides = (variant + ri) & 1;
      const int ldx = (nR > 1 && oddStrides) ? k + 3 : k;
      const int ldy = (nR > 1 && oddStrides) ? m + 5 : m;
      std::vector<float> x = check::rand_vec((size_t)nR * ldx, seed * 31 + variant * 7 + ri);
      std::vector<float> res = check::rand_vec((size_t)nR * ldy, seed * 17 + variant);
      float* dx = check::to_dev(x);
      float* dy = check::to_dev(res);  // prefilled with res (for alias mode)
      float* dres = nullptr;
      if (resMode == 1) { dres = check::to_dev(res); check::poison(dy, res.size() * 4); }
      if (resMode == 0) check::poison(dy, res.size() * 4);
      if (resMode == 2) dres = dy;
      GemvArgs a{dx, ldx, nR, dw.ref, dy, ldy, dres, useNorm ? dNorm : nullptr, eps};
      CK(gemv(a, 0));
      CK(cudaDeviceSynchronize());
      std::vector<float> got = check::from_dev(dy, res.size());
      std::vector<double> xn = ref_xn(x, ldx, nR, k, useNorm ? normW.data() : nullptr, eps);
      std::vector<float> g2;
      std::vector<double> want;
      for (int r = 0; r < nR; r++)
        for (int j = 0; j < m; j++) {
          want.push_back((resMode ? (double)res[(size_t)r * ldy + j] : 0.0) + dotw(hw, j, &xn[(size_t)r * k]));
          g2.push_back(got[(size_t)r * ldy + j]);
        }
      char what[160];
      std::snprintf(what, sizeof what, "%s nRows=%d norm=%d res=%d ldx=%d ldy=%d", nm, nR, useNorm, resMode, ldx, ldy);
      W.add(check::nmse(g2.data(), want.data(), want.size()), what);
      // elements between rows (ldy padding) must be untouched: they hold res/poison, never written
      CK(cudaFree(dx));
      CK(cudaFree(dy));
      if (resMode == 1) CK(cudaFree(dres));
    }
  }
  CK(cudaFree(dNorm));
  dw.free_();
  W.report();
}

// ---- gemv_multi ----------------------------------------------------------------------------------------
void test_multi(const int* fmts, int k, int group, uint64_t seed) {
  const int ms[3] = {64, 17, 24};
  char nm[128];
  std::snprintf(nm, sizeof nm, "gemv_multi %s/%s/%s m=64,17,24 k=%d g=%d", fmt_name(fmts[0]), fmt_name(fmts[1]),
                fmt_name(fmts[2]), k, group);
  double tol = 0;
  for (int i = 0; i < 3; i++) tol = std::max(tol, tol_for(fmts[i]));
  Worst W{nm, 0, tol};
  HostW hw[3];
  DevW dw[3];
  WeightRef refs[3];
  for (int i = 0; i < 3; i++) {
    hw[i] = make_weight(fmts[i], ms[i], k, group, seed + i);
    dw[i].upload(hw[i]);
    refs[i] = dw[i].ref;
  }
  std::vector<float> normW = check::rand_vec(k, seed + 99);
  for (auto& v : normW) v = 1.0f + 0.5f * v;
  float* dNorm = check::to_dev(normW);
  const int rowsList[2] = {1, 3};
  for (int nR : rowsList)
    for (int useNorm = 0; useNorm < 2; useNorm++) {
      std::vector<float> x = check::rand_vec((size_t)nR * k, seed + nR * 5 + useNorm);
      float* dx = check::to_dev(x);
      float* ys[3];
      for (int i = 0; i < 3; i++) {
        CK(cudaMalloc(&ys[i], (size_t)nR * ms[i] * 4));
        check::poison(ys[i], (size_t)nR * ms[i] * 4);
      }
      CK(gemv_multi(dx, k, nR, refs, ys, 3, useNorm ? dNorm : nullptr, 1e-5f, 0));
      CK(cudaDeviceSynchronize());
      std::vector<double> xn = ref_xn(x, k, nR, k, useNorm ? normW.data() : nullptr, 1e-5f);
      for (int i = 0; i < 3; i++) {
        std::vector<float> got = check::from_dev(ys[i], (size_t)nR * ms[i]);
        std::vector<double> want;
        for (int r = 0; r < nR; r++)
          for (int j = 0; j < ms[i]; j++) want.push_back(dotw(hw[i], j, &xn[(size_t)r * k]));
        char what[200];
        std::snprintf(what, sizeof what, "%s out%d nRows=%d norm=%d", nm, i, nR, useNorm);
        W.add(check::nmse(got.data(), want.data(), want.size()), what);
        CK(cudaFree(ys[i]));
      }
      CK(cudaFree(dx));
    }
  for (auto& d : dw) d.free_();
  CK(cudaFree(dNorm));
  W.report();
}

// ---- gemv_gateup ---------------------------------------------------------------------------------------
void test_gateup(int fmt, int m, int k, int group, uint64_t seed) {
  char nm[128];
  std::snprintf(nm, sizeof nm, "gemv_gateup %s m=%d k=%d g=%d", fmt_name(fmt), m, k, group);
  Worst W{nm, 0, tol_for(fmt)};
  HostW h1 = make_weight(fmt, m, k, group, seed), h3 = make_weight(fmt, m, k, group, seed + 1);
  DevW d1, d3;
  d1.upload(h1);
  d3.upload(h3);
  std::vector<float> normW = check::rand_vec(k, seed + 3);
  for (auto& v : normW) v = 1.0f + 0.5f * v;
  float* dNorm = check::to_dev(normW);
  const int rowsList[3] = {1, 4, gemv_max_rows(k)};
  for (int nR : rowsList)
    for (int useNorm = 0; useNorm < 2; useNorm++) {
      const int ldx = nR > 1 ? k + 1 : k, ldy = nR > 1 ? m + 2 : m;
      std::vector<float> x = check::rand_vec((size_t)nR * ldx, seed + nR * 11 + useNorm);
      for (auto& v : x) v *= 3.f;  // make the gate span the interesting range of silu
      float* dx = check::to_dev(x);
      float* dy;
      CK(cudaMalloc(&dy, (size_t)nR * ldy * 4));
      check::poison(dy, (size_t)nR * ldy * 4);
      CK(gemv_gateup(dx, ldx, nR, d1.ref, d3.ref, dy, ldy, useNorm ? dNorm : nullptr, 1e-5f, 0));
      CK(cudaDeviceSynchronize());
      std::vector<float> got = check::from_dev(dy, (size_t)nR * ldy);
      std::vector<double> xn = ref_xn(x, ldx, nR, k, useNorm ? normW.data() : nullptr, 1e-5f);
      std::vector<float> g2;
      std::vector<double> want;
      for (int r = 0; r < nR; r++)
        for (int j = 0; j < m; j++) {
          const double g = dotw(h1, j, &xn[(size_t)r * k]), u = dotw(h3, j, &xn[(size_t)r * k]);
          want.push_back(g / (1.0 + std::exp(-g)) * u);
          g2.push_back(got[(size_t)r * ldy + j]);
        }
      char what[200];
      std::snprintf(what, sizeof what, "%s nRows=%d norm=%d", nm, nR, useNorm);
      W.add(check::nmse(g2.data(), want.data(), want.size()), what);
      CK(cudaFree(dx));
      CK(cudaFree(dy));
    }
  d1.free_();
  d3.free_();
  CK(cudaFree(dNorm));
  W.report();
}

}  // namespace

int main(int argc, char** argv) {
  bool doTiming = true, layerOnly = false;  // --layer-timing: of the timing, only the layer rows
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--no-timing")) doTiming = false;
    if (!std::strcmp(argv[i], "--layer-timing")) layerOnly = true;
    if (!std::strcmp(argv[i], "--floor")) {  // the layer's GEMVs beside read-only kernel chains; no checks
      for (int f : {WF_F16, WF_I8, WF_I4}) {
        const int g = f == WF_I8 ? 4096 : f == WF_I4 ? 128 : 0;
        time_layer(f, g);
        floor_layer(f, g);
      }
      return 0;
    }
#if LLAMA_TS_GEMV_TRACE
    if (!std::strcmp(argv[i], "--trace")) {
      for (int f : {WF_F16, WF_I8, WF_I4}) trace_layer(f, f == WF_I8 ? 4096 : f == WF_I4 ? 128 : 0, 24);
      return 0;
    }
#endif
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::printf("gemv_max_rows: k=64 %d, k=172 %d, k=4096 %d, k=5120 %d, k=8192 %d, k=11008 %d, k=14336 %d, k=16384 %d, k=28672 %d, k=65536 %d\n",
              gemv_max_rows(64), gemv_max_rows(172), gemv_max_rows(4096), gemv_max_rows(5120), gemv_max_rows(8192),
              gemv_max_rows(11008), gemv_max_rows(14336), gemv_max_rows(16384), gemv_max_rows(28672), gemv_max_rows(65536));

  // ---- correctness ----
  {
    const uint64_t sd = 100;
    for (int fmt : {WF_F32, WF_F16, WF_BF16}) {
      test_gemv(fmt, 67, 4096, 0, sd + fmt);
      test_gemv(fmt, 33, 320, 0, sd + 10 + fmt);
      test_gemv(fmt, 1, 96, 0, sd + 20 + fmt);
      test_gemv(fmt, 29, 100, 0, sd + 30 + fmt);   // f32 vector path, f16/bf16 scalar path
      test_gemv(fmt, 35, 172, 0, sd + 40 + fmt);   // TinyStories w2 width
      test_gemv(fmt, 13, 37, 0, sd + 50 + fmt);    // odd k: scalar path
      test_gemv(fmt, 5, 1, 0, sd + 60 + fmt);
      test_gemv(fmt, 64, 64, 0, sd + 70 + fmt);
      test_gemv(fmt, 19, 1000, 0, sd + 80 + fmt);  // k % 32 != 0 with vector path (f32, f16, bf16)
    }
    test_gemv(WF_F16, 300, 11008, 0, sd + 90);
    test_gemv(WF_I8, 67, 4096, 32, sd + 100);
    test_gemv(WF_I8, 67, 4096, 4096, sd + 101);
    test_gemv(WF_I8, 33, 320, 64, sd + 102);
    test_gemv(WF_I8, 33, 320, 320, sd + 103);
    test_gemv(WF_I8, 1, 96, 32, sd + 104);
    test_gemv(WF_I8, 300, 11008, 11008, sd + 105);
    test_gemv(WF_I8, 21, 1056, 96, sd + 106);       // group not a power of two
    test_gemv(WF_I4, 67, 4096, 32, sd + 110);
    test_gemv(WF_I4, 67, 4096, 128, sd + 111);
    test_gemv(WF_I4, 33, 320, 32, sd + 112);
    test_gemv(WF_I4, 33, 384, 128, sd + 113);
    test_gemv(WF_I4, 1, 96, 32, sd + 114);
    test_gemv(WF_I4, 300, 11008, 32, sd + 115);
    test_gemv(WF_I4, 5, 1024, 1024, sd + 116);
    for (int fmt : {WF_F32, WF_F16, WF_BF16, WF_I8, WF_I4}) {
      const int f3[3] = {fmt, fmt, fmt};
      test_multi(f3, 256, fmt == WF_I4 ? 128 : 32, sd + 200 + fmt);
      test_gateup(fmt, 45, fmt == WF_I4 ? 384 : 320, fmt == WF_I4 ? 128 : 64, sd + 300 + fmt);
    }
    const int mixed[3] = {WF_F16, WF_I8, WF_I4};
    test_multi(mixed, 256, 32, sd + 250);
    const int f4[3] = {WF_F16, WF_F16, WF_F16};
    test_multi(f4, 4096, 32, sd + 260);
    test_gateup(WF_I4, 301, 4096, 32, sd + 310);
    test_gateup(WF_F16, 64, 100, 0, sd + 320);  // scalar weight path
    // same cases without programmatic dependent launch (plain stream ordering)
    gemv_debug_set_tuning(1, false);
    test_gemv(WF_F16, 67, 4096, 0, sd + 400);
    test_gemv(WF_I4, 67, 4096, 32, sd + 401);
    gemv_debug_set_tuning(1, true);
  }
  // A chain of dependent launches without host syncs: gemv -> gateup -> gemv (w2, res = y in place) ->
  // multi, each reading the previous output, checked at the end (PDL ordering across kernels).
  {
    const int k = 512, hid = 1376, m3 = 96;
    HostW wa = make_weight(WF_I4, k, k, 32, 901), w1 = make_weight(WF_I8, hid, k, 32, 902),
          w3 = make_weight(WF_I8, hid, k, 32, 903), w2 = make_weight(WF_F16, k, hid, 0, 904),
          wq = make_weight(WF_BF16, m3, k, 0, 905);
    DevW da, d1, d3, d2, dq;
    da.upload(wa); d1.upload(w1); d3.upload(w3); d2.upload(w2); dq.upload(wq);
    std::vector<float> x = check::rand_vec(2 * k, 906), nw = check::rand_vec(k, 907);
    for (auto& v : nw) v = 1.f + 0.5f * v;
    float* dx = check::to_dev(x);
    float* dnw = check::to_dev(nw);
    float *h, *g, *q;
    CK(cudaMalloc(&h, 2 * k * 4));
    CK(cudaMalloc(&g, 2 * hid * 4));
    CK(cudaMalloc(&q, 2 * m3 * 4));
    check::poison(h, 2 * k * 4);
    check::poison(g, 2 * hid * 4);
    check::poison(q, 2 * m3 * 4);
    CK(cudaDeviceSynchronize());
    GemvArgs a1{dx, k, 2, da.ref, h, k, nullptr, nullptr, 1e-5f};
    CK(gemv(a1, 0));                                                 // h = Wa x
    CK(gemv_gateup(h, k, 2, d1.ref, d3.ref, g, hid, dnw, 1e-5f, 0));  // g = silu(W1 n(h)) * W3 n(h)
    GemvArgs a2{g, hid, 2, d2.ref, h, k, h, nullptr, 1e-5f};
    CK(gemv(a2, 0));                                                 // h += W2 g
    float* ys[1] = {q};
    CK(gemv_multi(h, k, 2, &dq.ref, ys, 1, dnw, 1e-5f, 0));           // q = Wq n(h)
    CK(cudaDeviceSynchronize());
    // reference
    std::vector<double> xd = ref_xn(x, k, 2, k, nullptr, 0.f), hd(2 * k), gd(2 * hid), qd(2 * m3);
    for (int r = 0; r < 2; r++)
      for (int j = 0; j < k; j++) hd[r * k + j] = dotw(wa, j, &xd[r * k]);
    std::vector<float> hf(hd.begin(), hd.end());
    std::vector<double> hn = ref_xn(hf, k, 2, k, nw.data(), 1e-5f);
    for (int r = 0; r < 2; r++)
      for (int j = 0; j < hid; j++) {
        const double a = dotw(w1, j, &hn[r * k]), b = dotw(w3, j, &hn[r * k]);
        gd[r * hid + j] = a / (1 + std::exp(-a)) * b;
      }
    for (int r = 0; r < 2; r++)
      for (int j = 0; j < k; j++) hd[r * k + j] += dotw(w2, j, &gd[r * hid]);
    hf.assign(hd.begin(), hd.end());
    hn = ref_xn(hf, k, 2, k, nw.data(), 1e-5f);
    for (int r = 0; r < 2; r++)
      for (int j = 0; j < m3; j++) qd[r * m3 + j] = dotw(wq, j, &hn[r * k]);
    std::vector<float> qg = check::from_dev(q, 2 * m3);
    check::expect("chain gemv -> gateup -> gemv(res in place) -> multi, no syncs", check::nmse(qg.data(), qd.data(), qd.size()), 1e-8);
    CK(cudaFree(dx)); CK(cudaFree(dnw)); CK(cudaFree(h)); CK(cudaFree(g)); CK(cudaFree(q));
    da.free_(); d1.free_(); d3.free_(); d2.free_(); dq.free_();
  }

  // API errors (no launch, no sticky error)
  {
    float* d;
    CK(cudaMalloc(&d, 1 << 20));
    WeightRef w{d, reinterpret_cast<__half*>(d), WF_I8, 32, 8, 80};  // k % 32 != 0
    GemvArgs a{d, 80, 1, w, d, 8, nullptr, nullptr, 1e-5f};
    check_api("gemv I8 k=80 rejected", gemv(a, 0), cudaErrorInvalidValue);
    WeightRef w2{d, nullptr, WF_F16, 0, 8, 4096};
    GemvArgs b{d, 4096, gemv_max_rows(4096) + 1, w2, d, 8, nullptr, nullptr, 1e-5f};
    check_api("gemv nRows > gemv_max_rows rejected", gemv(b, 0), cudaErrorInvalidValue);
    check_api("no sticky error afterwards", cudaDeviceSynchronize(), cudaSuccess);
    CK(cudaFree(d));
  }

  // repack / quantize
  test_repack(true, 37, 320, 0, 501);
  test_repack(true, 37, 320, 1, 502);
  test_repack(false, 37, 320, 0, 503);
  test_repack(false, 41, 4096, 3, 504);
  for (int sf : {WF_F32, WF_F16, WF_BF16}) {
    test_quantize(sf, WF_I8, 40, 4096, 4096, 600 + sf);
    test_quantize(sf, WF_I4, 40, 4096, 128, 610 + sf);
  }
  test_quantize(WF_F32, WF_I8, 12, 320, 320, 620);
  test_quantize(WF_F32, WF_I4, 12, 384, 128, 621);
  test_quantize(WF_F16, WF_I8, 12, 256, 32, 622);
  test_quantize(WF_F16, WF_I4, 12, 256, 32, 623);

  if (doTiming && layerOnly) {
    for (int f : {WF_F16, WF_I8, WF_I4}) time_layer(f, f == WF_I8 ? 4096 : f == WF_I4 ? 128 : 0);
  } else if (doTiming) {
    std::printf("\n-- timing (median of 30 samples of %d calls; weights rotated over >= 160 MB, >= 4 buffers) --\n",
                kLaunchesPerRep);
    const double cbw = copy_bandwidth();
    std::printf("  device-to-device copy: %.0f GB/s (read + write)\n", cbw);
    const int shapes[4][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {32000, 4096}};
    struct F { int fmt, group; };
    const F fmts[] = {{WF_F16, 0}, {WF_BF16, 0}, {WF_F32, 0}, {WF_I8, -1}, {WF_I8, 32}, {WF_I4, 32}, {WF_I4, 128}};
    for (const F& f : fmts)
      for (auto& sh : shapes) {
        const int g = f.group < 0 ? sh[1] : f.group;
        time_gemv(f.fmt, sh[0], sh[1], g, 1, false);
      }
    for (auto& sh : shapes) time_gemv(WF_F16, sh[0], sh[1], 0, 4, false);
    for (auto& sh : shapes) time_gemv(WF_I4, sh[0], sh[1], 32, 4, false);
    time_gemv(WF_F16, 4096, 4096, 0, 8, false);
    time_gemv(WF_F16, 4096, 4096, 0, 1, true);
    time_gemv(WF_I4, 4096, 4096, 32, 1, true);
    gemv_debug_set_tuning(1, false);
    time_gemv(WF_F16, 4096, 4096, 0, 1, false, "(no PDL)");
    time_gemv(WF_I8, 4096, 4096, 4096, 1, false, "(no PDL)");
    time_gemv(WF_I4, 4096, 4096, 32, 1, false, "(no PDL)");
    time_gemv(WF_I4, 32000, 4096, 32, 1, false, "(no PDL)");
    gemv_debug_set_tuning(1, true);
    time_gateup(WF_F16, 11008, 4096, 0);
    time_gateup(WF_I8, 11008, 4096, 4096);
    time_gateup(WF_I4, 11008, 4096, 32);
    time_multi(WF_F16, 4096, 4096, 0);
    time_multi(WF_I4, 4096, 4096, 32);
    time_layer(WF_F16, 0);
    time_layer(WF_I8, 4096);
    time_layer(WF_I4, 128);

    std::printf("\nGPU time per call from CUDA-graph replay of %d calls; 'eager' = same calls launched one by one.\n",
                kLaunchesPerRep);
    std::printf("%-50s %8s %7s %6s %8s\n", "case", "us", "GB/s", "%3000", "eager us");
    for (auto& r : g_rows)
      std::printf("%-50s %8.2f %7.0f %5.1f%% %8.2f\n", r.name.c_str(), r.us, r.gbs, r.gbs / 30.0, r.eager);
  }
  return check::finish("gemv_check");
}
