// Timing part of the GEMV check (see gemv_check.cu): per-call GPU time of gemv / gemv_gateup / gemv_multi
// for LLaMA-7B shapes, from CUDA-graph replay, with weights rotated so L2 holds none between calls.
#include "gemv_check.cuh"
#include "../device_util.cuh"

#include <algorithm>
#include <map>
#include <string>
#if LLAMA_TS_GEMV_TRACE
#include "../gemv_trace.cuh"
#endif

using namespace llama_ts;

namespace gemv_check {
namespace {

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

}  // namespace

std::vector<TimingRow> g_rows;

namespace {

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

}  // namespace

void time_gemv(int fmt, int m, int k, int group, int nR, bool norm, const char* tag) {
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

// One 7B layer's decode GEMVs (wo, gate/up, w2, QKV) on rotating weights: launch(i, s) runs layer i's four
// launches on s.
struct Layer7B {
  static constexpr int dim = 4096, hid = 11008;
  WSet wo, w1, w3, w2, wq, wk, wv;
  float *a, *nw, *h, *g, *qkv;
  Layer7B(int fmt, int group)
      : wo(fmt, dim, dim, group, 21), w1(fmt, hid, dim, group, 22), w3(fmt, hid, dim, group, 23),
        w2(fmt, dim, hid, group == dim ? hid : group, 24),  // per channel: the group is the row
        wq(fmt, dim, dim, group, 25), wk(fmt, dim, dim, group, 26), wv(fmt, dim, dim, group, 27) {
    a = check::to_dev(check::rand_vec(dim, 81));
    nw = check::to_dev(check::rand_vec(dim, 82));
    CK(cudaMalloc(&h, dim * 4));
    CK(cudaMalloc(&g, hid * 4));
    CK(cudaMalloc(&qkv, 3 * dim * 4));
    CK(cudaMemset(h, 0, dim * 4));
  }
  ~Layer7B() {
    CK(cudaFree(a)); CK(cudaFree(nw)); CK(cudaFree(h)); CK(cudaFree(g)); CK(cudaFree(qkv));
  }
  static WeightRef pick(const WSet& w, int i) { return w.ws[i % w.ws.size()].ref; }
  void launch(int i, cudaStream_t s) {
    float* ys[3] = {qkv, qkv + dim, qkv + 2 * dim};
    const WeightRef w[3] = {pick(wq, i), pick(wk, i), pick(wv, i)};
    GemvArgs ao{a, dim, 1, pick(wo, i), h, dim, h, nullptr, 1e-5f};
    CK(gemv(ao, s));
    CK(gemv_gateup(h, dim, 1, pick(w1, i), pick(w3, i), g, hid, nw, 1e-5f, s));
    GemvArgs a2{g, hid, 1, pick(w2, i), h, dim, h, nullptr, 1e-5f};
    CK(gemv(a2, s));
    CK(gemv_multi(h, dim, 1, w, ys, 3, nw, 1e-5f, s));
  }
  size_t bytes() const { return wo.bytesEach * 4 + 2 * w1.bytesEach + w2.bytesEach; }
};

void time_layer(int fmt, int group) {
  Layer7B L(fmt, group);
  int it = 0;
  const TimePair us = time_per_call([&](cudaStream_t s) { L.launch(it++, s); });
  char nm[128];
  std::snprintf(nm, sizeof nm, "layer %s g=%d wo+gateup+w2+qkv", fmt_name(fmt), group);
  add_row(nm, us, L.bytes());
}

// ---- the decode floor of one launch per dependent op ------------------------------------------------------
// A read-only kernel stands in for each of a 7B layer's GEMVs: it reads exactly that GEMV's weight bytes
// (quants and scales) with 16-byte streaming loads, 8 per thread in flight, over a persistent grid of one
// 512-thread block per SM, and computes nothing. Modes: kFloorWaitAfter issues its first loads, then
// griddepcontrol.wait (as the GEMV does: weights never depend on earlier kernels); kFloorWaitFirst waits
// before any load (the attention stand-in, whose inputs all come from the QKV GEMV); kFloorNoWait never
// waits (no data dependency at all: the kernels only follow each other in the stream). Every mode lets the
// next kernel launch at entry. One block per SM is forced with unused dynamic shared memory (as the GEMV's
// registers force it) unless `coresident`.
constexpr int kFloorNoWait = 0, kFloorWaitAfter = 1, kFloorWaitFirst = 2;
struct FloorRanges {
  const uint4* p[6];
  unsigned long long n[6];  // 16-byte vectors
  int nr;
  unsigned* out;
};

template <int MODE>
__global__ void __launch_bounds__(512, 1) floor_read_kernel(const __grid_constant__ FloorRanges r) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  if (MODE == kFloorWaitFirst) asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  bool waited = MODE != kFloorWaitAfter;
  const size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  unsigned acc = 0;
  for (int i = 0; i < r.nr; i++) {
    const uint4* p = r.p[i];
    const size_t n = r.n[i];
    size_t j = tid;
    for (; j + 7 * stride < n; j += 8 * stride) {
      uint4 v[8];
#pragma unroll
      for (int u = 0; u < 8; u++) v[u] = ld_stream16(p + j + u * stride);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      if (!waited) {
        asm volatile("griddepcontrol.wait;" ::: "memory");
        waited = true;
      }
#endif
#pragma unroll
      for (int u = 0; u < 8; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; j < n; j += stride) {
      const uint4 v = ld_stream16(p + j);
      acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (!waited) asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  if (acc == 0x9E3779B9u) r.out[0] = acc;  // keeps the loads; practically never taken
}

struct FloorLaunch {
  int mode;
  FloorRanges r;
};

void floor_launch(const FloorLaunch& f, bool coresident, cudaStream_t s) {
  using FloorFn = void (*)(FloorRanges);
  static const FloorFn kFns[3] = {floor_read_kernel<kFloorNoWait>, floor_read_kernel<kFloorWaitAfter>,
                                  floor_read_kernel<kFloorWaitFirst>};  // by mode
  constexpr int kBlockSmem = 120 * 1024;  // > half of an SM's shared memory: one block per SM
  static int sms = 0;                     // set, with the kernels' attributes, on the first launch
  if (sms == 0) {
    for (FloorFn fn : kFns) CK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, kBlockSmem));
    int dev = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)sms);
  cfg.blockDim = dim3(512);
  cfg.dynamicSmemBytes = coresident ? 0 : kBlockSmem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CK(cudaLaunchKernelEx(&cfg, kFns[f.mode], f.r));
}

void floor_add(FloorRanges& r, const DevW& d, unsigned* out) {
  const WeightRef& w = d.ref;
  const size_t qb = weight_bytes(w.fmt, w.m, w.k);
  r.p[r.nr] = reinterpret_cast<const uint4*>(w.q);
  r.n[r.nr++] = qb / 16;
  if (w.scales) {
    r.p[r.nr] = reinterpret_cast<const uint4*>(w.scales);
    r.n[r.nr++] = (size_t)w.m * (w.k / w.group) * 2 / 16;
  }
  r.out = out;
}

// Prints one 7B layer's GEMVs (time_layer) beside chains of read-only kernels over the same bytes, and the
// decode step those chains bound: 32 layers plus the LM head read as one more kernel.
void floor_layer(int fmt, int group) {
  Layer7B L(fmt, group);
  WSet head(fmt, 32000, 4096, group, 28, 0);
  unsigned* out;
  CK(cudaMalloc(&out, 4));
  uint8_t* kv;  // the attention stand-in's K/V bytes: 80 positions x 4096 x (K, V) x f16
  const size_t kvBytes = (size_t)80 * 4096 * 2 * 2;
  CK(cudaMalloc(&kv, kvBytes));
  CK(cudaMemset(kv, 0, kvBytes));
  auto layerOps = [&](int i, bool attn, int mode) {
    std::vector<FloorLaunch> ops;
    auto one = [&](std::initializer_list<const DevW*> ws, int m) {
      FloorLaunch f{m, {}};
      for (const DevW* d : ws) floor_add(f.r, *d, out);
      ops.push_back(f);
    };
    auto pick = [&](const WSet& w) { return &w.ws[i % w.ws.size()]; };
    if (attn) {
      FloorLaunch f{mode == kFloorNoWait ? kFloorNoWait : kFloorWaitFirst, {}};
      f.r.p[0] = reinterpret_cast<const uint4*>(kv);
      f.r.n[0] = kvBytes / 16;
      f.r.nr = 1;
      f.r.out = out;
      ops.push_back(f);
    }
    one({pick(L.wo)}, mode);
    one({pick(L.w1), pick(L.w3)}, mode);
    one({pick(L.w2)}, mode);
    one({pick(L.wq), pick(L.wk), pick(L.wv)}, mode);
    return ops;
  };
  char nm[160];
  struct V {
    const char* what;
    bool attn;
    int mode;
    bool coresident;
  };
  const V vs[] = {{"4 reads, wait after first loads", false, kFloorWaitAfter, false},
                  {"4 reads + attention stand-in", true, kFloorWaitAfter, false},
                  {"4 reads + attention, co-resident", true, kFloorWaitAfter, true},
                  {"4 reads + attention, no waits", true, kFloorNoWait, false}};
  double withAttn = 0;
  for (const V& v : vs) {
    int it = 0;
    const TimePair us = time_per_call([&](cudaStream_t s) {
      for (const FloorLaunch& f : layerOps(it++, v.attn, v.mode)) floor_launch(f, v.coresident, s);
    });
    std::snprintf(nm, sizeof nm, "floor %s g=%d: %s", fmt_name(fmt), group, v.what);
    add_row(nm, us, L.bytes());
    if (v.attn && v.mode == kFloorWaitAfter && !v.coresident) withAttn = us.graph;
  }
  int it = 0;
  const TimePair hus = time_per_call([&](cudaStream_t s) {
    FloorLaunch f{kFloorWaitAfter, {}};
    floor_add(f.r, head.ws[it++ % head.ws.size()], out);
    floor_launch(f, false, s);
  });
  std::snprintf(nm, sizeof nm, "floor %s g=%d: LM head read 32000x4096", fmt_name(fmt), group);
  add_row(nm, hus, head.bytesEach);
  const double stepUs = 32 * withAttn + hus.graph;
  std::printf("  => step floor %s: 32 x %.2f + %.2f = %.1f us, at most %.0f tok/s\n", fmt_name(fmt), withAttn,
              hus.graph, stepUs, 1e6 / stepUs);
  CK(cudaFree(out));
  CK(cudaFree(kv));
}

#if LLAMA_TS_GEMV_TRACE
// One 7B layer's GEMVs (as time_layer) launched eagerly for `layers` layers with the trace build's stamps;
// prints, per GEMV of the layer, medians over SMs and launches of: the gap between the previous block's exit
// on the SM and this block's entry, entry -> griddepcontrol.wait returned, wait -> x staged, staged -> exit;
// and per launch (global timer) the spread of block entries and exits and the launch's span.
void trace_layer(int fmt, int group, int layers) {
  Layer7B L(fmt, group);
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  auto layer = [&](int i) { L.launch(i, s); };
  std::vector<GemvTraceRec> rec(LLAMA_TS_GEMV_TRACE);
  for (int i = 0; i < 8; i++) layer(i);
  CK(cudaStreamSynchronize(s));
  gemv_trace_take(rec.data(), (int)rec.size());
  for (int i = 0; i < layers; i++) layer(i);
  CK(cudaStreamSynchronize(s));
  const int n = gemv_trace_take(rec.data(), (int)rec.size());
  rec.resize(n > 0 ? n : 0);
  // per SM, in entry order
  std::map<unsigned, std::vector<GemvTraceRec>> bySm;
  for (auto& r : rec) bySm[r.smid].push_back(r);
  size_t per = 0;
  bool even = true;
  for (auto& kv : bySm) {
    std::sort(kv.second.begin(), kv.second.end(),
              [](const GemvTraceRec& x, const GemvTraceRec& y) { return x.clk[0] < y.clk[0]; });
    if (per == 0) per = kv.second.size();
    even = even && kv.second.size() == per;
  }
  auto name = [](const GemvTraceRec& r) {
    return r.k == 11008 ? "w2" : r.pairs == 2048 ? "wo" : r.pairs == 11008 ? "gate/up" : "qkv";
  };
  std::map<std::string, std::vector<double>> gap, wait, stage, mainl, total;
  for (auto& kv : bySm) {
    const auto& v = kv.second;
    if (v.size() < 2) continue;
    const double cpn = (double)(v.back().clk[3] - v.front().clk[0]) / (double)(v.back().gt3 - v.front().gt0);
    for (size_t i = 1; i < v.size(); i++) {
      const std::string nm = name(v[i]);
      gap[nm].push_back((double)(v[i].clk[0] - v[i - 1].clk[3]) / cpn / 1000.0);
      wait[nm].push_back((double)(v[i].clk[1] - v[i].clk[0]) / cpn / 1000.0);
      stage[nm].push_back((double)(v[i].clk[2] - v[i].clk[1]) / cpn / 1000.0);
      mainl[nm].push_back((double)(v[i].clk[3] - v[i].clk[2]) / cpn / 1000.0);
      total[nm].push_back((double)(v[i].clk[3] - v[i - 1].clk[3]) / cpn / 1000.0);
    }
  }
  auto q = [](std::vector<double> x, double f) {
    std::sort(x.begin(), x.end());
    return x.empty() ? 0.0 : x[(size_t)(f * (x.size() - 1))];
  };
  std::printf("\n-- trace: %s g=%d, %d layers, %d blocks on %zu SMs (%s per SM) --\n", fmt_name(fmt), group,
              layers, n, bySm.size(), even ? "same count" : "UNEVEN count");
  std::printf("per block on its SM, us (median / p10 / p90): prev exit->entry | entry->wait done | staging | main | exit-to-exit\n");
  for (const char* nm : {"wo", "gate/up", "w2", "qkv"}) {
    std::printf("  %-8s", nm);
    for (auto* m : {&gap, &wait, &stage, &mainl, &total})
      std::printf(" | %6.2f %6.2f %6.2f", q((*m)[nm], 0.5), q((*m)[nm], 0.1), q((*m)[nm], 0.9));
    std::printf("\n");
  }
  if (even && per > 1) {
    // launch j = the j-th block on every SM
    std::map<std::string, std::vector<double>> es, xs, span, lgap;
    unsigned long long prevEnd = 0;
    for (size_t j = 0; j < per; j++) {
      unsigned long long e0 = ~0ull, e1 = 0, x0 = ~0ull, x1 = 0;
      std::string nm;
      for (auto& kv : bySm) {
        const auto& r = kv.second[j];
        e0 = std::min(e0, r.gt0); e1 = std::max(e1, r.gt0);
        x0 = std::min(x0, r.gt3); x1 = std::max(x1, r.gt3);
        nm = name(r);
      }
      es[nm].push_back((e1 - e0) / 1000.0);
      xs[nm].push_back((x1 - x0) / 1000.0);
      span[nm].push_back((x1 - e0) / 1000.0);
      if (j > 0) lgap[nm].push_back(((double)e0 - (double)prevEnd) / 1000.0);
      prevEnd = x1;
    }
    std::printf("per launch, global timer, us (median / p10 / p90): entry spread | exit spread | first entry->last exit | prev last exit->first entry\n");
    for (const char* nm : {"wo", "gate/up", "w2", "qkv"}) {
      std::printf("  %-8s", nm);
      for (auto* m : {&es, &xs, &span, &lgap})
        std::printf(" | %6.2f %6.2f %6.2f", q((*m)[nm], 0.5), q((*m)[nm], 0.1), q((*m)[nm], 0.9));
      std::printf("\n");
    }
  }
  CK(cudaStreamDestroy(s));
}
#endif

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

}  // namespace gemv_check
