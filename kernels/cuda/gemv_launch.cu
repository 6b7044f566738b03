// Host side of the decode-time GEMV (kernels in gemv.cu, with the design notes; gemv.cuh: what the two
// share): validation of a call, the per-device launch cache (kernel attributes, occupancy), launch_gemv
// and the public gemv / gemv_multi / gemv_gateup / gemv_max_rows of kernels.cuh.
#include "gemv.cuh"
#include "device_util.cuh"

#include <climits>
#include <map>
#include <mutex>
#include <tuple>

namespace llama_ts {
namespace {

constexpr int kSmemBudget = 220 * 1024;  // dynamic shared memory the GEMV may use at most (H100: 227 KB
                                         // opt-in per block; the device's own limit applies when lower)

#ifndef LLAMA_TS_GEMV_NORM_SMEM
// 1: the RMSNorm weight is staged into shared memory with x (one cp.async round trip) where it fits; 0: read
// from L2 during staging (the A/B baseline of that change, bench/RESULTS.md 2026-11-26).
#define LLAMA_TS_GEMV_NORM_SMEM 1
#endif

inline int round_up_int(int a, int b) { return (a + b - 1) / b * b; }

// Bytes of dynamic shared memory: nr rows of x padded to kp = roundup(k, 32) floats, plus (int4 sum trick)
// one float per 32 elements per row.
inline size_t gemv_smem_bytes(int fmt, int nr, int k) {
  const int kp = round_up_int(k, 32);
  size_t perRow = (size_t)x_row_floats(kp) * 4;
  if (fmt == WF_I4) perRow += (size_t)(kp / 32) * 4;
  return perRow * (size_t)nr;
}

int vec_elems(int fmt) {
  switch (fmt) {
    case WF_F32: return 4;
    case WF_F16: case WF_BF16: return 8;
    case WF_I8: return 16;
    default: return 32;
  }
}

size_t elem_bits(int fmt) {
  switch (fmt) {
    case WF_F32: return 32;
    case WF_F16: case WF_BF16: return 16;
    case WF_I8: return 8;
    default: return 4;
  }
}

bool is_quant(int fmt) { return fmt == WF_I8 || fmt == WF_I4; }

// Internal tuning (used by the check program only through gemv_debug_set_tuning).
int g_blocksPerSmCap = 1;
bool g_pdl = true;

struct LaunchCache {
  std::mutex mu;
  std::map<std::pair<int, const void*>, int> configured;  // (device, kernel) -> maxDynSmem set
  std::map<std::tuple<int, const void*, size_t>, int> occ;  // (device, kernel, smem) -> blocks per SM
};
LaunchCache& cache() {
  static LaunchCache c;
  return c;
}

// Blocks per SM for this kernel and shared memory size (0 on error); sets the kernel's attributes once.
cudaError_t prepare_kernel(KernelFn fn, size_t smem, int* blocksPerSm, int* numSms, bool* pdl) {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  DeviceProps dp;
  e = device_props(dp);
  if (e != cudaSuccess) return e;
  LaunchCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  *numSms = dp.sms;
  *pdl = dp.ccMajor >= 9;  // griddepcontrol exists from sm_90
  const void* key = reinterpret_cast<const void*>(fn);
  auto ck = std::make_pair(dev, key);
  if (c.configured.find(ck) == c.configured.end()) {
    const int optin = dp.smemOptin;
    cudaFuncAttributes fa;
    e = cudaFuncGetAttributes(&fa, fn);
    if (e != cudaSuccess) return e;
    int maxDyn = optin - (int)fa.sharedSizeBytes;
    if (maxDyn > kSmemBudget) maxDyn = kSmemBudget;
    e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, maxDyn);
    if (e != cudaSuccess) return e;
    e = cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout, (int)cudaSharedmemCarveoutMaxShared);
    if (e != cudaSuccess) return e;
    c.configured[ck] = maxDyn;
  }
  if ((long long)smem > (long long)c.configured[ck]) return cudaErrorInvalidValue;
  auto ok = std::make_tuple(dev, key, smem);
  auto it = c.occ.find(ok);
  if (it == c.occ.end()) {
    int nb = 0;
    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, kThreads, smem);
    if (e != cudaSuccess) return e;
    it = c.occ.emplace(ok, nb).first;
  }
  *blocksPerSm = it->second;
  return cudaSuccess;
}

// Dynamic shared memory budget of the current device: min(kSmemBudget, opt-in limit - 2 KB for static data).
int smem_budget() {
  DeviceProps d;
  if (device_props(d) != cudaSuccess) return 0;
  const int b = d.smemOptin - 2048;
  return b < kSmemBudget ? b : kSmemBudget;
}

// Magic for v / d with v * d < 2^40: (v * M) >> 40, M = ceil(2^40 / d).
unsigned long long div_magic(unsigned d) { return ((1ull << 40) + d - 1) / d; }

struct WDesc {
  WeightRef w;
  float* y;
  int ldy;
};

bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

// Validates and launches one GEMV kernel over 1..3 weights of identical format/k/group.
cudaError_t launch_gemv(const float* x, int ldx, int nRows, const WDesc* wd, int n, const float* res,
                        const float* normW, float eps, int mode, cudaStream_t s) {
  if (n < 1 || n > 3 || x == nullptr) return cudaErrorInvalidValue;
  const WeightRef& w0 = wd[0].w;
  const int k = w0.k;
  int fmt = w0.fmt;
  if (k < 1 || nRows < 1 || nRows > gemv_max_rows(k) || (nRows > 1 && ldx < k)) return cudaErrorInvalidValue;
  if (fmt < WF_F32 || fmt > WF_I4) return cudaErrorInvalidValue;
  for (int i = 0; i < n; i++) {
    const WeightRef& w = wd[i].w;
    if (w.fmt != fmt || w.k != k || w.m < 0 || w.q == nullptr || wd[i].y == nullptr) return cudaErrorInvalidValue;
    if (nRows > 1 && wd[i].ldy < w.m) return cudaErrorInvalidValue;
    if (is_quant(fmt)) {
      if (w.group != w0.group || w.scales == nullptr || !aligned16(w.q)) return cudaErrorInvalidValue;
    }
  }
  if (is_quant(fmt)) {
    if (k % 32 != 0 || w0.group < 32 || w0.group % 32 != 0 || k % w0.group != 0) return cudaErrorInvalidValue;
  }
  const int vecE = vec_elems(fmt);
  bool scalarW = false;
  if (!is_quant(fmt)) {
    scalarW = (k % vecE) != 0;
    for (int i = 0; i < n; i++) scalarW = scalarW || !aligned16(wd[i].w.q);
  }

  GemvParams p;
  p.x = x;
  p.ldx = ldx;
  p.k = k;
  p.kp = round_up_int(k, 32);
  p.kv = k / vecE;
  p.rowBytes = (int)((size_t)k * elem_bits(fmt) / 8);
  p.groupsPerRow = is_quant(fmt) ? k / w0.group : 0;
  p.gdivMagic = is_quant(fmt) ? div_magic((unsigned)(w0.group / vecE)) : 0;
  int pairs = 0;
  for (int i = 0; i < 3; i++) {
    if (i < n) {
      const WeightRef& w = wd[i].w;
      p.w[i].q = static_cast<const uint8_t*>(w.q);
      p.w[i].scales = w.scales;
      p.w[i].m = w.m;
      p.w[i].pairBegin = pairs;
      p.w[i].y = wd[i].y;
      p.w[i].ldy = wd[i].ldy;
      if (mode == 0) pairs += (w.m + 1) / 2;
    } else {
      p.w[i] = GemvW{nullptr, nullptr, 0, INT_MAX, nullptr, 0};
    }
  }
  if (mode == 1) {
    pairs = w0.m;
    p.w[1].pairBegin = INT_MAX;  // both weights share the pair space of w[0]
  }
  p.nw = (mode == 1) ? 1 : n;
  p.totalPairs = pairs;
  p.res = res;
  p.normW = normW;
  p.eps = eps;
  p.mode = mode;
  p.xVec = (aligned16(x) && ldx % 4 == 0 && k % 4 == 0) ? 1 : 0;
  p.scalarW = scalarW ? 1 : 0;
  if (pairs == 0) return cudaGetLastError();

  KernelFn fn = kernel_for(fmt, nRows);
  size_t smem = gemv_smem_bytes(fmt, nRows, k);
  p.normSmem = 0;
  if (LLAMA_TS_GEMV_NORM_SMEM && normW && p.xVec && aligned16(normW)) {
    // the norm weight comes into shared memory with x in the same cp.async round trip, where it fits
    const size_t withNorm = (size_t)(norm_smem_offset(nRows, p.kp, fmt == WF_I4) + p.kp) * 4;
    if (withNorm <= (size_t)smem_budget()) {
      smem = withNorm;
      p.normSmem = 1;
    }
  }
  int bps = 0, nsm = 0;
  bool pdl = false;
  cudaError_t e = prepare_kernel(fn, smem, &bps, &nsm, &pdl);
  if (e != cudaSuccess) return e;
  if (bps < 1) return cudaErrorInvalidConfiguration;
  if (bps > g_blocksPerSmCap) bps = g_blocksPerSmCap;
  long long grid = (long long)nsm * bps;
  if (grid > pairs) grid = pairs;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((unsigned)grid);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = (pdl && g_pdl) ? 1 : 0;
  const cudaError_t le = cudaLaunchKernelEx(&cfg, fn, p);
  const cudaError_t ge = cudaGetLastError();
  return le != cudaSuccess ? le : ge;
}

}  // namespace

// Check-program hook (not part of the contract): blocks per SM cap, programmatic dependent launch on/off.
void gemv_debug_set_tuning(int blocksPerSmCap, bool pdl) {
  g_blocksPerSmCap = blocksPerSmCap < 1 ? 1 : blocksPerSmCap;
  g_pdl = pdl;
}

int gemv_max_rows(int k) {
  if (k < 1) return 0;
  // Largest format footprint (int4: x plus one sum per 32 elements) within this device's shared memory.
  const size_t perRow = gemv_smem_bytes(WF_I4, 1, k);
  size_t n = (size_t)smem_budget() / perRow;
  if (n > (size_t)kMaxNR) n = kMaxNR;
  return (int)n;
}

cudaError_t gemv(const GemvArgs& a, cudaStream_t s) {
  WDesc d{a.w, a.y, a.ldy};
  return launch_gemv(a.x, a.ldx, a.nRows, &d, 1, a.res, a.normW, a.eps, 0, s);
}

cudaError_t gemv_multi(const float* x, int ldx, int nRows, const WeightRef* w, float* const* ys, int n,
                       const float* normW, float eps, cudaStream_t s) {
  if (n < 1 || n > 3 || w == nullptr || ys == nullptr) return cudaErrorInvalidValue;
  WDesc d[3];
  bool same = true;
  for (int i = 0; i < n; i++) {
    d[i] = WDesc{w[i], ys[i], w[i].m};
    if (w[i].fmt != w[0].fmt || w[i].k != w[0].k ||
        (is_quant(w[0].fmt) && w[i].group != w[0].group))
      same = false;
  }
  if (same) return launch_gemv(x, ldx, nRows, d, n, nullptr, normW, eps, 0, s);
  // Mixed formats: one launch per weight (each recomputes the norm; same results).
  for (int i = 0; i < n; i++) {
    cudaError_t e = launch_gemv(x, ldx, nRows, &d[i], 1, nullptr, normW, eps, 0, s);
    if (e != cudaSuccess) return e;
  }
  return cudaGetLastError();
}

cudaError_t gemv_gateup(const float* x, int ldx, int nRows, WeightRef w1, WeightRef w3, float* y, int ldy,
                        const float* normW, float eps, cudaStream_t s) {
  if (w1.fmt != w3.fmt || w1.k != w3.k || w1.m != w3.m || (is_quant(w1.fmt) && w1.group != w3.group))
    return cudaErrorInvalidValue;
  WDesc d[2] = {WDesc{w1, y, ldy}, WDesc{w3, y, ldy}};
  return launch_gemv(x, ldx, nRows, d, 2, nullptr, normW, eps, 1, s);
}

}  // namespace llama_ts
