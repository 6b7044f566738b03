// Check of w8a8.cu: matmul_a8 (per-token int8 activations x q8_0 / q4_0 weights) against a CPU double
// reference, for the GEMV (rows <= a8_gemv_max_rows) and the int8 tensor-core GEMM, modes plain / residual /
// three weights / gate-up, with and without the fused RMSNorm, odd sizes. Two references per case:
//   * "dot": from the kernel's own qx / sx (read back from the workspace): checks the integer block dots,
//     scales and epilogues alone (f32 accumulation only: tolerance 1e-10);
//   * "quant": qx / sx compared with a CPU quantizer (exact without the norm; with it the norm's f32 sum
//     order differs, so a few codes may differ by one).
// Then timings on LLaMA-7B shapes: the W8A8 GEMV at batch 1 (quantize + GEMV) next to the weight-only int8
// GEMV (gemv.cu, q8_0 layout and per-channel), and the W8A8 GEMM at 512 rows next to the weight-only int8 GEMM
// (gemm.cu, f16 tensor cores).
// Build: deno task build:cuda --checks (build/w8a8_check).
#include "../kernels.cuh"
#include "check_util.cuh"

#include <cstring>
#include <string>

using namespace llama_ts;

namespace {

uint16_t f2h(float f) { return __half_raw(__float2half_rn(f)).x; }
float h2f(uint16_t b) { __half_raw r; r.x = b; return __half2float(__half(r)); }
size_t a256(size_t n) { return (n + 255) / 256 * 256; }

struct HostW {
  int fmt = 0, m = 0, k = 0;
  std::vector<uint8_t> q;        // device layout
  std::vector<uint16_t> scales;  // m x k/32
  std::vector<int8_t> codes;     // m x k integer codes (q, or nibble - 8)
};

HostW make_weight(int fmt, int m, int k, uint64_t seed) {
  HostW w;
  w.fmt = fmt; w.m = m; w.k = k;
  check::Rng r(seed);
  const int nb = k / 32;
  w.scales.resize((size_t)m * nb);
  for (auto& s : w.scales) s = f2h((0.002f + 0.02f * std::fabs(r.next())) * (r.next() < 0 ? -1.f : 1.f));
  w.codes.resize((size_t)m * k);
  if (fmt == WF_I8) {
    w.q.resize((size_t)m * k);
    for (size_t i = 0; i < w.q.size(); i++) {
      const int c = (int)std::lround(r.next() * 127.f);
      w.codes[i] = (int8_t)c;
      w.q[i] = (uint8_t)(int8_t)c;
    }
  } else {
    w.q.resize((size_t)m * k / 2);
    for (auto& b : w.q) b = (uint8_t)(r.s >> 24), r.next();
    for (int j = 0; j < m; j++)
      for (int i = 0; i < k; i++) {
        w.codes[(size_t)j * k + i] = (int8_t)(check::q4_code(w.q.data() + ((size_t)j * k) / 2, i) - 8);
      }
  }
  return w;
}

struct DevW {
  void* q = nullptr;
  __half* s = nullptr;
  WeightRef ref{};
  explicit DevW(const HostW& h) {
    q = check::to_dev(h.q);
    s = reinterpret_cast<__half*>(check::to_dev(h.scales));
    ref = WeightRef{q, s, h.fmt, 32, h.m, h.k};
  }
  ~DevW() {
    cudaFree(q);
    cudaFree(s);
  }
};

// CPU quantization of one row (as the kernel: f32 arithmetic; norm sum in sequential f32).
void quantize_row(const float* x, int k, const float* normW, float eps, int8_t* q, float* sx) {
  float inv = 1.f;
  if (normW) {
    float ss = 0.f;
    for (int i = 0; i < k; i++) ss = std::fmaf(x[i], x[i], ss);
    inv = 1.0f / std::sqrt(ss / (float)k + eps);
  }
  float amax = 0.f;
  std::vector<float> xn(k);
  for (int i = 0; i < k; i++) {
    xn[i] = normW ? normW[i] * (inv * x[i]) : x[i];
    amax = std::max(amax, std::fabs(xn[i]));
  }
  const float s = amax / 127.f, is = s > 0 ? 1.f / s : 0.f;
  for (int i = 0; i < k; i++) q[i] = (int8_t)std::max(-127.f, std::min(127.f, std::round(xn[i] * is)));
  *sx = s;
}

double ref_dot(const HostW& w, int j, const int8_t* q, double sx) {
  const int nb = w.k / 32;
  double acc = 0;
  for (int b = 0; b < nb; b++) {
    long dot = 0;
    for (int i = b * 32; i < b * 32 + 32; i++) dot += (long)w.codes[(size_t)j * w.k + i] * q[i];
    acc += (double)h2f(w.scales[(size_t)j * nb + b]) * (double)dot;
  }
  return acc * sx;
}

// One case: mode 0 with nW weights (residual on the first when res), or mode 1 (gate/up).
void run_case(int fmt, int nRows, int k, std::vector<int> ms, int mode, bool norm, bool res) {
  const int nW = (int)ms.size();
  std::vector<HostW> hw;
  for (int i = 0; i < nW; i++) hw.push_back(make_weight(fmt, ms[i], k, 100 + 7 * i + k + ms[i] + fmt));
  std::vector<DevW*> dw;
  for (auto& h : hw) dw.push_back(new DevW(h));
  const int ldx = k + 32;  // a strided x
  std::vector<float> xh = check::rand_vec((size_t)nRows * ldx, 5 + nRows + k, 2.f);
  if (nRows > 2) xh[(size_t)2 * ldx + 5] = 40.f;                               // an outlier channel
  if (nRows > 3) std::fill(xh.begin() + (size_t)3 * ldx, xh.begin() + (size_t)3 * ldx + k, 0.f);  // a zero row
  std::vector<float> nwh = check::rand_vec(k, 9, 1.f);
  float* x = check::to_dev(xh);
  float* nw = check::to_dev(nwh);
  A8Args a{};
  a.x = x; a.ldx = ldx; a.nRows = nRows; a.k = k;
  a.normW = norm ? nw : nullptr; a.eps = 1e-5f;
  a.mode = mode; a.nW = nW;
  std::vector<float*> ys(nW);
  std::vector<std::vector<float>> resh(nW);
  for (int i = 0; i < nW; i++) {
    const size_t n = (size_t)nRows * ms[i];
    CK(cudaMalloc(&ys[i], n * 4));
    check::poison(ys[i], n * 4);
    a.w[i] = dw[i]->ref;
    a.y[i] = ys[i];
    a.ldy[i] = ms[i];
    a.res[i] = nullptr;
    if (res && i == 0 && mode == 0) {
      resh[i] = check::rand_vec(n, 33, 1.f);
      CK(cudaMemcpy(ys[i], resh[i].data(), n * 4, cudaMemcpyHostToDevice));
      a.res[i] = ys[i];  // aliases y, as the runtime's fused residual does
    }
  }
  const size_t wsBytes = matmul_a8_workspace_bytes(nRows, k);
  void* ws;
  CK(cudaMalloc(&ws, wsBytes));
  CK(matmul_a8(a, ws, 0));
  CK(cudaDeviceSynchronize());
  // the kernel's quantization, read back
  std::vector<int8_t> qg = check::from_dev(static_cast<int8_t*>(ws), (size_t)nRows * k);
  std::vector<float> sg = check::from_dev(reinterpret_cast<float*>(static_cast<char*>(ws) + a256((size_t)nRows * k)), nRows);
  std::vector<int8_t> qc((size_t)nRows * k);
  std::vector<float> sc(nRows);
  int mism = 0, big = 0;
  double sdiff = 0;
  for (int r = 0; r < nRows; r++) {
    quantize_row(&xh[(size_t)r * ldx], k, norm ? nwh.data() : nullptr, 1e-5f, &qc[(size_t)r * k], &sc[r]);
    sdiff = std::max(sdiff, (double)std::fabs(sc[r] - sg[r]) / std::max(1e-30, (double)std::fabs(sc[r])));
    for (int i = 0; i < k; i++) {
      const int d = std::abs((int)qc[(size_t)r * k + i] - (int)qg[(size_t)r * k + i]);
      mism += d != 0;
      big += d > 1;
    }
  }
  char nm[200];
  std::snprintf(nm, sizeof nm, "%s rows=%d k=%d m=%d nW=%d mode=%d%s%s", fmt == WF_I8 ? "q8_0" : "q4_0", nRows, k,
                ms[0], nW, mode, norm ? " +norm" : "", res ? " +res" : "");
  const bool quantOk = norm ? (big == 0 && mism <= std::max(2, nRows * k / 1000) && sdiff < 1e-5)
                            : (mism == 0 && sdiff == 0);
  std::printf("%-60s quant: %d codes differ (max 1: %s), sx rel diff %.1e %s\n", nm, mism, big ? "no" : "yes", sdiff,
              quantOk ? "ok" : "FAIL");
  if (!quantOk) check::g_failures++;
  // outputs against the double reference on the kernel's own qx / sx
  std::vector<std::vector<float>> got(nW);
  for (int i = 0; i < nW; i++) got[i] = check::from_dev(ys[i], (size_t)nRows * ms[i]);
  const int nOut = mode == 1 ? 1 : nW;
  for (int i = 0; i < nOut; i++) {
    const int m = ms[i];
    std::vector<double> want((size_t)nRows * m);
    for (int r = 0; r < nRows; r++)
      for (int j = 0; j < m; j++) {
        const int8_t* q = &qg[(size_t)r * k];
        double v = ref_dot(hw[i], j, q, sg[r]);
        if (mode == 1) {
          const double u = ref_dot(hw[1], j, q, sg[r]);
          v = v / (1.0 + std::exp(-v)) * u;
        }
        if (!resh[i].empty()) v += resh[i][(size_t)r * m + j];
        want[(size_t)r * m + j] = v;
      }
    std::string what = std::string(nm) + " y" + std::to_string(i);
    check::expect(what.c_str(), check::nmse(got[i].data(), want.data(), want.size()), 1e-10);
    if (nRows > 3 && resh[i].empty()) {  // the zero row gives exact zeros
      bool zero = true;
      for (int j = 0; j < m; j++) zero = zero && got[i][(size_t)3 * m + j] == 0.f;
      if (!zero) {
        std::printf("%-60s zero row not zero FAIL\n", what.c_str());
        check::g_failures++;
      }
    }
  }
  CK(cudaFree(ws));
  CK(cudaFree(x));
  CK(cudaFree(nw));
  for (auto p : ys) CK(cudaFree(p));
  for (auto p : dw) delete p;
}

// ---- timing -------------------------------------------------------------------------------------------

constexpr int kCalls = 20;

// Per-call GPU time (us) of launch(stream): kCalls calls captured in a CUDA graph, median of 15 replays.
template <class F>
double graph_us(F launch) {
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  launch(s);  // outside capture: one-time kernel attributes
  CK(cudaStreamSynchronize(s));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kCalls; i++) launch(s);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; i++) CK(cudaGraphLaunch(ge, s));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t(15);
  for (auto& ti : t) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&ti, a, b));
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaStreamDestroy(s));
  return t[t.size() / 2] * 1000.0 / kCalls;
}

__global__ void fill_bytes(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    p[i] = (uint8_t)(h >> 24);
  }
}
__global__ void fill_scales(__half* p, size_t n) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    p[i] = __float2half(0.01f + 0.001f * (float)(i % 7));
}

// Enough copies of an (m, k) int8 / int4 weight (group = 32 or k) to exceed L2 (rotated per call).
struct WSet {
  std::vector<WeightRef> ws;
  size_t bytes = 0;
  WSet(int fmt, int m, int k, int group) {
    const size_t qb = fmt == WF_I8 ? (size_t)m * k : (size_t)m * k / 2, sn = (size_t)m * (k / group);
    bytes = qb + sn * 2;
    const int n = (int)std::max<size_t>(4, ((size_t)160 << 20) / bytes + 1);
    for (int i = 0; i < n; i++) {
      void* q;
      __half* s;
      CK(cudaMalloc(&q, qb));
      CK(cudaMalloc(&s, sn * 2));
      fill_bytes<<<1024, 256>>>(static_cast<uint8_t*>(q), qb, 77u + i);
      fill_scales<<<256, 256>>>(s, sn);
      CK(cudaGetLastError());
      ws.push_back(WeightRef{q, s, fmt, group, m, k});
    }
    CK(cudaDeviceSynchronize());
  }
  ~WSet() {
    for (auto& w : ws) {
      cudaFree(const_cast<void*>(w.q));
      cudaFree(const_cast<__half*>(w.scales));
    }
  }
};

void time_shape(int m, int k) {
  const int rowsMax = 512;
  float* x = check::to_dev(check::rand_vec((size_t)rowsMax * k, 3, 1.f));
  float* y;
  CK(cudaMalloc(&y, (size_t)rowsMax * m * 4));
  void* ws;
  WSet q8(WF_I8, m, k, 32), pc(WF_I8, m, k, k), q4(WF_I4, m, k, 32);
  const size_t wsBytes = std::max(matmul_a8_workspace_bytes(rowsMax, k), gemm_workspace_bytes(q8.ws[0], rowsMax));
  CK(cudaMalloc(&ws, wsBytes));
  int it = 0;
  int* itp = &it;
  auto a8 = [=](const WSet& setRef, int rows) {
    const WSet* set = &setRef;
    return [=](cudaStream_t s) {
      A8Args a{};
      a.x = x; a.ldx = k; a.nRows = rows; a.k = k; a.mode = 0; a.nW = 1;
      a.w[0] = set->ws[(*itp)++ % set->ws.size()];
      a.y[0] = y; a.ldy[0] = m;
      CK(matmul_a8(a, ws, s));
    };
  };
  auto wo = [=](const WSet& setRef, int rows) {
    const WSet* set = &setRef;
    return [=](cudaStream_t s) {
      const WeightRef w = set->ws[(*itp)++ % set->ws.size()];
      if (rows <= gemv_max_rows(k)) {
        GemvArgs g{x, k, rows, w, y, m, nullptr, nullptr, 0.f};
        CK(gemv(g, s));
      } else {
        CK(gemm(x, k, rows, w, y, m, nullptr, ws, s));
      }
    };
  };
  auto row = [&](const char* name, const WSet& set, double us, int rows) {
    const double gbs = (double)set.bytes / (us * 1e-6) / 1e9;
    const double tf = 2.0 * rows * (double)m * k / (us * 1e-6) / 1e12;
    std::printf("  %-44s %5dx%-5d rows=%-3d %9.2f us %7.0f GB/s %7.1f TFLOP/s\n", name, m, k, rows, us, gbs, tf);
  };
  row("w8a8 q8_0 (quantize + dp4a GEMV)", q8, graph_us(a8(q8, 1)), 1);
  row("w8a8 q4_0 (quantize + dp4a GEMV)", q4, graph_us(a8(q4, 1)), 1);
  row("weight-only int8 GEMV, q8_0 layout", q8, graph_us(wo(q8, 1)), 1);
  row("weight-only int8 GEMV, per channel", pc, graph_us(wo(pc, 1)), 1);
  row("w8a8 q8_0 (quantize + dp4a GEMV)", q8, graph_us(a8(q8, 8)), 8);
  row("weight-only int8 GEMV, q8_0 layout", q8, graph_us(wo(q8, 8)), 8);
  row("w8a8 q8_0 (quantize + int8 mma GEMM)", q8, graph_us(a8(q8, 512)), 512);
  row("w8a8 q4_0 (quantize + int8 mma GEMM)", q4, graph_us(a8(q4, 512)), 512);
  row("weight-only int8 GEMM (f16 mma), q8_0", q8, graph_us(wo(q8, 512)), 512);
  row("weight-only int8 GEMM (f16 mma), per ch.", pc, graph_us(wo(pc, 512)), 512);
  CK(cudaFree(ws));
  CK(cudaFree(x));
  CK(cudaFree(y));
}

}  // namespace

int main(int argc, char** argv) {
  const bool timing = !(argc > 1 && std::strcmp(argv[1], "--no-timing") == 0);
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d), a8_gemv_max_rows(4096) = %d\n", prop.name, prop.major, prop.minor,
              a8_gemv_max_rows(4096));
  for (int fmt : {WF_I8, WF_I4}) {
    for (int rows : {1, 2, 3, 4, 5, 8, 9, 17, 64, 67, 130}) {
      run_case(fmt, rows, 96, {37}, 0, false, false);
      run_case(fmt, rows, 96, {37}, 0, false, true);
    }
    for (int rows : {1, 5, 8, 9, 70}) {
      run_case(fmt, rows, 256, {40, 24, 24}, 0, true, false);  // q/k/v after the norm
      run_case(fmt, rows, 256, {72, 72}, 1, true, false);      // gate/up after the norm
      run_case(fmt, rows, 224, {72, 72}, 1, false, false);     // gate/up without norm, k % 64 == 32
      run_case(fmt, rows, 160, {129}, 0, true, true);          // k % 64 == 32, m past a 128 tile
    }
    run_case(fmt, 1, 4096, {300}, 0, true, false);
    run_case(fmt, 8, 11008, {130}, 0, false, true);
    run_case(fmt, 200, 4096, {260}, 0, false, false);
  }
  if (timing) {
    std::printf("\ntimings (CUDA graph of %d calls; GB/s over weight bytes incl. scales):\n", kCalls);
    time_shape(4096, 4096);
    time_shape(11008, 4096);
    time_shape(4096, 11008);
  }
  return check::finish("w8a8_check");
}
