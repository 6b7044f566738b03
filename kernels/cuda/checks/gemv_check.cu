// Check of gemv.cu: gemv / gemv_multi / gemv_gateup for every weight format against a CPU double reference
// (on exactly the dequantized values the kernel sees), repack_q8_0 / repack_q4_0 (exact), quantize_weight
// (exact against a CPU quantizer + quantization error bounds), then a timing table for LLaMA-7B shapes.
// Build (from kernels/cuda): nvcc -O3 -std=c++17 -arch=sm_90 -o gemv_check checks/gemv_check.cu gemv.cu
#include "../kernels.cuh"
#include "check_util.cuh"

#include <cstring>
#include <string>

using namespace llama_ts;

namespace llama_ts {
void gemv_debug_set_tuning(int blocksPerSmCap, bool pdl);  // gemv.cu, check-only hook
}

namespace {

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

// Host copy of a weight: raw device bytes plus dequantized values for the reference.
struct HostW {
  int fmt = 0, m = 0, k = 0, group = 0;
  std::vector<uint8_t> q;
  std::vector<uint16_t> scales;
  std::vector<float> deq;  // m*k dequantized values (exact in float)
};

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

struct DevW {
  uint8_t* q = nullptr;
  __half* s = nullptr;
  WeightRef ref{};
  void upload(const HostW& h) {
    q = check::to_dev(h.q);
    if (!h.scales.empty()) s = reinterpret_cast<__half*>(check::to_dev(h.scales));
    ref = WeightRef{q, s, h.fmt, h.group, h.m, h.k};
  }
  void free_() {
    if (q) CK(cudaFree(q));
    if (s) CK(cudaFree(s));
    q = nullptr; s = nullptr;
  }
};

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

// ---- repack --------------------------------------------------------------------------------------------
void test_repack(bool q8, int m, int k, int srcOffset, uint64_t seed) {
  const int nb = m * (k / 32);
  const int bs = q8 ? 34 : 18;
  std::vector<uint8_t> src((size_t)nb * bs + srcOffset);
  check::Rng r(seed);
  for (auto& b : src) { b = (uint8_t)(r.s >> 24); r.next(); }
  std::vector<float> d(nb);
  for (int b = 0; b < nb; b++) {  // valid (finite) half scales, both signs
    const float v = r.next() * 0.05f;
    const uint16_t h = f2h(v);
    src[srcOffset + (size_t)b * bs] = (uint8_t)(h & 255);
    src[srcOffset + (size_t)b * bs + 1] = (uint8_t)(h >> 8);
  }
  uint8_t* dsrc = check::to_dev(src);
  uint8_t* dq;
  __half* ds;
  const size_t qBytes = q8 ? (size_t)m * k : (size_t)m * k / 2;
  CK(cudaMalloc(&dq, qBytes));
  CK(cudaMalloc(&ds, (size_t)nb * 2));
  check::poison(dq, qBytes);
  check::poison(ds, (size_t)nb * 2);
  if (q8) CK(repack_q8_0(dsrc + srcOffset, m, k, reinterpret_cast<int8_t*>(dq), ds, 0));
  else CK(repack_q4_0(dsrc + srcOffset, m, k, dq, ds, 0));
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> gq = check::from_dev(dq, qBytes);
  std::vector<uint16_t> gs = check::from_dev(reinterpret_cast<uint16_t*>(ds), nb);
  // Compare the dequantized values element by element (and hence the bytes): ggml block semantics.
  size_t bad = 0;
  std::vector<float> got((size_t)m * k);
  std::vector<double> want((size_t)m * k);
  for (int b = 0; b < nb; b++) {
    const uint8_t* blk = &src[srcOffset + (size_t)b * bs];
    const float dd = h2f((uint16_t)(blk[0] | (blk[1] << 8)));
    if (gs[b] != (uint16_t)(blk[0] | (blk[1] << 8))) bad++;
    for (int j = 0; j < 32; j++) {
      const size_t e = (size_t)b * 32 + j;  // element index in the row-major m x k matrix
      double wv;
      if (q8) wv = dd * (double)(int8_t)blk[2 + j];
      else wv = dd * (double)((j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4)) - 8);
      want[e] = wv;
      float gv;
      const float gsc = h2f(gs[b]);
      if (q8) gv = gsc * (float)(int8_t)gq[e];
      else {
        const uint8_t byte = gq[(size_t)b * 16 + (j % 16)];
        gv = gsc * (float)((j < 16 ? (byte & 15) : (byte >> 4)) - 8);
      }
      got[e] = gv;
      if ((double)gv != wv) bad++;
    }
  }
  char nm[128];
  std::snprintf(nm, sizeof nm, "repack_%s m=%d k=%d src+%d (mismatches: %zu)", q8 ? "q8_0" : "q4_0", m, k, srcOffset, bad);
  check::expect(nm, bad ? 1.0 : check::nmse(got.data(), want.data(), want.size()), 0.0);
  CK(cudaFree(dsrc));
  CK(cudaFree(dq));
  CK(cudaFree(ds));
}

// ---- quantize ------------------------------------------------------------------------------------------
void test_quantize(int srcFmt, int dstFmt, int m, int k, int group, uint64_t seed) {
  std::vector<float> v = check::rand_vec((size_t)m * k, seed);
  for (int i = 0; i < k; i++) v[(size_t)3 * k + i] = 0.f;                 // zero row
  for (int i = 0; i < std::min(group, k); i++) v[(size_t)5 * k + i] = 0.f;  // zero first group of row 5
  for (int i = 0; i < k; i++) v[(size_t)7 * k + i] *= 1e-3f;               // small row
  // Exact source values (as the kernel reads them) and source bytes.
  std::vector<uint8_t> sb;
  std::vector<float> sv((size_t)m * k);
  if (srcFmt == WF_F32) {
    sb.resize(v.size() * 4);
    std::memcpy(sb.data(), v.data(), sb.size());
    sv = v;
  } else {
    sb.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); i++) {
      uint16_t b = srcFmt == WF_F16 ? f2h(v[i]) : f2bf(v[i]);
      std::memcpy(&sb[i * 2], &b, 2);
      sv[i] = srcFmt == WF_F16 ? h2f(b) : bf2f(b);
    }
  }
  uint8_t* dsrc = check::to_dev(sb);
  const size_t qBytes = dstFmt == WF_I8 ? (size_t)m * k : (size_t)m * k / 2;
  const int ng = k / group;
  uint8_t* dq;
  __half* ds;
  CK(cudaMalloc(&dq, qBytes));
  CK(cudaMalloc(&ds, (size_t)m * ng * 2));
  check::poison(dq, qBytes);
  check::poison(ds, (size_t)m * ng * 2);
  WeightRef src{dsrc, nullptr, srcFmt, 0, m, k};
  CK(quantize_weight(src, dstFmt, group, dq, ds, 0));
  CK(cudaDeviceSynchronize());
  std::vector<uint8_t> gq = check::from_dev(dq, qBytes);
  std::vector<uint16_t> gs = check::from_dev(reinterpret_cast<uint16_t*>(ds), (size_t)m * ng);
  // CPU quantizer (same float operations).
  std::vector<uint8_t> cq(qBytes, 0);
  std::vector<uint16_t> cs((size_t)m * ng);
  for (int j = 0; j < m; j++)
    for (int g = 0; g < ng; g++) {
      const float* xs = &sv[(size_t)j * k + (size_t)g * group];
      float amax = 0.f;
      for (int i = 0; i < group; i++) amax = std::max(amax, std::fabs(xs[i]));
      const float qmax = dstFmt == WF_I8 ? 127.f : 7.f;
      volatile float sdiv = amax / qmax;
      const uint16_t sh = f2h(sdiv);
      const float sf = h2f(sh);
      cs[(size_t)j * ng + g] = sh;
      for (int i = 0; i < group; i++) {
        const size_t e = (size_t)j * k + (size_t)g * group + i;
        volatile float qd = sf != 0.f ? xs[i] / sf : 0.f;
        if (dstFmt == WF_I8) {
          const int qi = sf != 0.f ? (int)std::min(std::max(std::round((float)qd), -127.f), 127.f) : 0;
          cq[e] = (uint8_t)(int8_t)qi;
        } else {
          const int qi = sf != 0.f ? (int)std::min(std::max(std::round((float)qd) + 8.f, 0.f), 15.f) : 8;
          const size_t sbk = e / 32, pos = e % 32;
          cq[sbk * 16 + (pos % 16)] |= (uint8_t)(pos < 16 ? qi : (qi << 4));
        }
      }
    }
  size_t badQ = 0, badS = 0;
  for (size_t i = 0; i < qBytes; i++) badQ += gq[i] != cq[i];
  for (size_t i = 0; i < cs.size(); i++) badS += gs[i] != cs[i];
  // Dequantized GPU result vs the original values.
  std::vector<float> deq((size_t)m * k);
  std::vector<double> want((size_t)m * k);
  for (int j = 0; j < m; j++)
    for (int i = 0; i < k; i++) {
      const size_t e = (size_t)j * k + i;
      const float sc = h2f(gs[(size_t)j * ng + i / group]);
      int qv;
      if (dstFmt == WF_I8) qv = (int8_t)gq[e];
      else qv = check::q4_code(gq.data(), e) - 8;
      deq[e] = sc * (float)qv;
      want[e] = sv[e];
    }
  char nm[160];
  std::snprintf(nm, sizeof nm, "quantize %s->%s g=%d m=%d k=%d exact vs CPU (bad q %zu, bad scales %zu)", fmt_name(srcFmt),
                fmt_name(dstFmt), group, m, k, badQ, badS);
  check::expect(nm, (double)(badQ + badS), 0.0);
  std::snprintf(nm, sizeof nm, "quantize %s->%s g=%d m=%d k=%d dequant error", fmt_name(srcFmt), fmt_name(dstFmt), group, m, k);
  check::expect(nm, check::nmse(deq.data(), want.data(), want.size()), dstFmt == WF_I8 ? 1e-4 : 1e-2);
  // zero row / zero group: scale 0 and q = 0 (I8) or 8 (I4)
  bool zok = gs[(size_t)3 * ng] == 0 && gs[(size_t)5 * ng] == 0;
  for (int i = 0; i < k; i++) {
    const size_t e = (size_t)3 * k + i;
    if (dstFmt == WF_I8) zok = zok && gq[e] == 0;
    else zok = zok && gq[(e / 32) * 16 + (e % 32) % 16] == 0x88;
  }
  std::snprintf(nm, sizeof nm, "quantize %s->%s zero row/group", fmt_name(srcFmt), fmt_name(dstFmt));
  check::expect(nm, zok ? 0.0 : 1.0, 0.0);
  CK(cudaFree(dsrc));
  CK(cudaFree(dq));
  CK(cudaFree(ds));
}

// ---- timing --------------------------------------------------------------------------------------------
__global__ void fill_kernel(uint8_t* p, size_t n, int fmt, uint64_t seed, bool isScale) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
    const float u = (float)((h >> 40) & 0xFFFFFF) / 16777216.f * 2.f - 1.f;  // [-1, 1)
    if (isScale) {
      reinterpret_cast<__half*>(p)[i] = __float2half(0.002f + 0.01f * fabsf(u));
    } else if (fmt == WF_F32) {
      reinterpret_cast<float*>(p)[i] = u;
    } else if (fmt == WF_F16) {
      reinterpret_cast<__half*>(p)[i] = __float2half(u);
    } else if (fmt == WF_BF16) {
      reinterpret_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(u);
    } else {
      p[i] = (uint8_t)(h >> 8);
    }
  }
}

struct TimingRow {
  std::string name;
  double us, gbs, eager;
};
std::vector<TimingRow> g_rows;

size_t weight_bytes(int fmt, int m, int k) {
  const size_t n = (size_t)m * k;
  return fmt == WF_F32 ? n * 4 : (fmt == WF_F16 || fmt == WF_BF16) ? n * 2 : fmt == WF_I8 ? n : n / 2;
}

// A set of identical-shape random weights, enough (>= 4, >= 160 MB) that L2 holds none between uses.
struct WSet {
  std::vector<DevW> ws;
  size_t bytesEach = 0;
  WSet(int fmt, int m, int k, int group, uint64_t seed, size_t minTotal = (size_t)160 << 20) {
    const size_t qb = weight_bytes(fmt, m, k);
    const size_t sn = (fmt == WF_I8 || fmt == WF_I4) ? (size_t)m * (k / group) : 0;
    bytesEach = qb + sn * 2;
    int n = (int)std::max<size_t>(4, (minTotal + bytesEach - 1) / bytesEach);
    ws.resize(n);
    for (int i = 0; i < n; i++) {
      DevW& d = ws[i];
      CK(cudaMalloc(&d.q, qb));
      const size_t elems = fmt == WF_F32 ? qb / 4 : (fmt == WF_F16 || fmt == WF_BF16) ? qb / 2 : qb;
      fill_kernel<<<1024, 256>>>(d.q, elems, fmt, seed + i, false);
      CK(cudaGetLastError());
      if (sn) {
        CK(cudaMalloc(&d.s, sn * 2));
        fill_kernel<<<256, 256>>>(reinterpret_cast<uint8_t*>(d.s), sn, fmt, seed + 1000 + i, true);
        CK(cudaGetLastError());
      }
      d.ref = WeightRef{d.q, d.s, fmt, group, m, k};
    }
  }
  ~WSet() {
    for (auto& d : ws) d.free_();
  }
};

constexpr int kLaunchesPerRep = 20;

struct TimePair {
  double graph, stream;
};

// Per-call time of launch(stream): kLaunchesPerRep back-to-back calls captured in a CUDA graph (GPU time, as
// a graph-replayed decode step sees it), and the same calls launched eagerly (includes host launch cost).
template <class F>
TimePair time_per_call(F launch) {
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  launch(s);  // first call outside capture (sets kernel attributes)
  CK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kLaunchesPerRep; i++) launch(s);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  auto timeOn = [&](auto fn) {
    for (int i = 0; i < 3; i++) fn();
    CK(cudaStreamSynchronize(s));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t(30);
    for (auto& ti : t) {
      CK(cudaEventRecord(a, s));
      fn();
      CK(cudaEventRecord(b, s));
      CK(cudaEventSynchronize(b));
      CK(cudaEventElapsedTime(&ti, a, b));
    }
    std::sort(t.begin(), t.end());
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return t[t.size() / 2] * 1000.0 / kLaunchesPerRep;
  };
  TimePair r;
  r.graph = timeOn([&] { CK(cudaGraphLaunch(ge, s)); });
  r.stream = timeOn([&] { for (int i = 0; i < kLaunchesPerRep; i++) launch(s); });
  CK(cudaGetLastError());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaStreamDestroy(s));
  return r;
}

void add_row(const std::string& name, TimePair t, size_t bytes) {
  const double gbs = (double)bytes / (t.graph * 1e-6) / 1e9;
  g_rows.push_back({name, t.graph, gbs, t.stream});
  std::printf("  %-50s %8.2f us %7.0f GB/s %5.1f%%  (eager %.2f us)\n", name.c_str(), t.graph, gbs, gbs / 30.0, t.stream);
}

void time_gemv(int fmt, int m, int k, int group, int nR, bool norm, const char* tag = "") {
  WSet set(fmt, m, k, group, 1234 + m + k + fmt);
  std::vector<float> xh = check::rand_vec((size_t)nR * k, 77);
  float* x = check::to_dev(xh);
  float* nw = check::to_dev(check::rand_vec(k, 78));
  float* y;
  CK(cudaMalloc(&y, (size_t)nR * m * 4));
  int it = 0;
  const TimePair us = time_per_call([&](cudaStream_t s) {
    GemvArgs a{x, k, nR, set.ws[it++ % set.ws.size()].ref, y, m, nullptr, norm ? nw : nullptr, 1e-5f};
    CK(gemv(a, s));
  });
  char nm[128];
  std::snprintf(nm, sizeof nm, "gemv %s%s %dx%d g=%d nRows=%d%s", fmt_name(fmt), tag, m, k,
                (fmt == WF_I8 || fmt == WF_I4) ? group : 0, nR, norm ? " +norm" : "");
  add_row(nm, us, set.bytesEach);
  CK(cudaFree(x));
  CK(cudaFree(nw));
  CK(cudaFree(y));
}

void time_gateup(int fmt, int m, int k, int group) {
  WSet s1(fmt, m, k, group, 555), s3(fmt, m, k, group, 666);
  float* x = check::to_dev(check::rand_vec(k, 79));
  float* y;
  CK(cudaMalloc(&y, (size_t)m * 4));
  int it = 0;
  const TimePair us = time_per_call([&](cudaStream_t s) {
    const int i = it++;
    CK(gemv_gateup(x, k, 1, s1.ws[i % s1.ws.size()].ref, s3.ws[i % s3.ws.size()].ref, y, m, nullptr, 1e-5f, s));
  });
  char nm[128];
  std::snprintf(nm, sizeof nm, "gateup %s 2x %dx%d g=%d nRows=1", fmt_name(fmt), m, k, (fmt >= WF_I8) ? group : 0);
  add_row(nm, us, 2 * s1.bytesEach);
  CK(cudaFree(x));
  CK(cudaFree(y));
}

void time_multi(int fmt, int m, int k, int group) {
  WSet a(fmt, m, k, group, 11), b(fmt, m, k, group, 12), c(fmt, m, k, group, 13);
  float* x = check::to_dev(check::rand_vec(k, 80));
  float* y;
  CK(cudaMalloc(&y, (size_t)3 * m * 4));
  float* ys[3] = {y, y + m, y + 2 * m};
  int it = 0;
  const TimePair us = time_per_call([&](cudaStream_t s) {
    const int i = it++;
    WeightRef w[3] = {a.ws[i % a.ws.size()].ref, b.ws[i % b.ws.size()].ref, c.ws[i % c.ws.size()].ref};
    CK(gemv_multi(x, k, 1, w, ys, 3, nullptr, 1e-5f, s));
  });
  char nm[128];
  std::snprintf(nm, sizeof nm, "multi %s 3x %dx%d g=%d nRows=1", fmt_name(fmt), m, k, (fmt >= WF_I8) ? group : 0);
  add_row(nm, us, 3 * a.bytesEach);
  CK(cudaFree(x));
  CK(cudaFree(y));
}

double copy_bandwidth() {
  const size_t n = (size_t)1 << 30;
  void *a, *b;
  CK(cudaMalloc(&a, n));
  CK(cudaMalloc(&b, n));
  CK(cudaMemset(a, 1, n));
  const double us = check::time_us([&] { CK(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0)); }, 10, 2);
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * n / (us * 1e-6) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  bool doTiming = true;
  for (int i = 1; i < argc; i++)
    if (!std::strcmp(argv[i], "--no-timing")) doTiming = false;
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

  if (doTiming) {
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

    std::printf("\nGPU time per call from CUDA-graph replay of %d calls; 'eager' = same calls launched one by one.\n",
                kLaunchesPerRep);
    std::printf("%-50s %8s %7s %6s %8s\n", "case", "us", "GB/s", "%3000", "eager us");
    for (auto& r : g_rows)
      std::printf("%-50s %8.2f %7.0f %5.1f%% %8.2f\n", r.name.c_str(), r.us, r.gbs, r.gbs / 30.0, r.eager);
  }
  return check::finish("gemv_check");
}
