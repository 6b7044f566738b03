// The `sample` op: each logit row's token chosen on the device, by the rule of src/sample/pick.ts
// (temperature, top-k, top-p, min-p, then a draw with the host's uniform, walking kept tokens in id
// order). Contract: kernels.cuh. The ref backend runs pick.ts itself and is this kernel's oracle.
//
// One 1024-thread block per row; warp w owns the contiguous ids [w*CW, w*CW + CW), CW = ceil(n / 32), and
// reads them 32 at a time, so questions "in id order" (ties among equal logits, the draw) are a scan over
// the 32 warps' counts plus ballots within a warp. Ranking uses the 32-bit order-preserving key of each
// logit (rank order = key desc, id asc); the row's keys are kept in shared memory when they fit (n up to
// ~50k). Cuts (the k-th key of top-k, the key where top-p's mass is reached) are found by radix
// selection, 4 bits per pass, with per-warp histograms in shared memory.
//   * Candidate path: the top-k set (k <= kCand = 1024), or with top-k off the tokens that pass pick.ts's
//     top-p / min-p pre-filter when at most 1024 do, are gathered into shared memory, one per thread;
//     top-p, min-p and the draw run there (bitonic sorts by rank, then by id).
//   * Whole-vocabulary path (no filter, top-k wider than 1024, or more than 1024 survivors of the
//     pre-filter: flat distributions): weights w_i = exp((l_i - max) / T) go to `wbuf` (f64, n per row),
//     top-p selects on their mass, and the draw walks the kept tokens in id order.
// Sums are f64; their order differs from pick.ts's, which matters only when u lands within rounding of a
// boundary between two tokens. H100, 7B-shape int8 decode, 32k vocabulary: ~40 us per sampled step more
// than a greedy one (bench/RESULTS.md).
#include "kernels.cuh"
#include "device_util.cuh"

#include <algorithm>
#include <climits>
#include <mutex>

namespace llama_ts {
namespace {

constexpr int kT = 1024;
constexpr int kW = kT / 32;  // 32 warps: one warp can reduce or scan all warp partials
constexpr int kCand = kT;    // top-k up to this many gathers its candidates, one per thread
constexpr int kBins = 16;    // radix digit: 4 bits

// Order-preserving key of a non-NaN float: larger float, larger key; value_of inverts it.
__device__ __forceinline__ uint32_t key_of(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float value_of(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct Shared {
  double red[kW];
  unsigned long long redq[kW];
  double hist[kW][kBins];  // per-warp radix histograms: mass
  unsigned histN[kW][kBins];  // per-warp radix histograms: counts
  double warpPre[kW];      // per-warp exclusive prefix (ordered passes)
  int nCand;
  uint64_t cKey[kCand];  // candidates: sort key
  int cId[kCand];
  double cW[kCand];
};

__device__ __forceinline__ unsigned lane_id() { return threadIdx.x & 31; }
__device__ __forceinline__ unsigned warp_id() { return threadIdx.x >> 5; }

// Sum over the block; every thread gets it. The leading barrier lets sh be reused back to back.
__device__ __forceinline__ double block_sum(double v, double* sh) {
  v = warp_sum(v);
  __syncthreads();
  if (lane_id() == 0) sh[warp_id()] = v;
  __syncthreads();
  return warp_sum(sh[lane_id()]);
}

__device__ __forceinline__ unsigned long long block_min_u64(unsigned long long v, unsigned long long* sh) {
#pragma unroll
  for (int o = 16; o; o >>= 1) v = min(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();
  if (lane_id() == 0) sh[warp_id()] = v;
  __syncthreads();
  v = sh[lane_id()];
#pragma unroll
  for (int o = 16; o; o >>= 1) v = min(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// Inclusive prefix sum over the block in thread order; total to every thread.
__device__ __forceinline__ double block_inclusive(double v, double* sh, double& total) {
  const int lane = lane_id(), w = warp_id();
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, v, o);
    if (lane >= o) v += y;
  }
  __syncthreads();
  if (lane == 31) sh[w] = v;
  __syncthreads();
  double s = sh[lane];
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, s, o);
    if (lane >= o) s += y;
  }
  total = __shfl_sync(kFull, s, 31);
  const double before = __shfl_sync(kFull, s, (w + 31) & 31);
  return (w ? before : 0.0) + v;
}

// Per-warp values (lane 0 of each warp passes its warp's) to exclusive prefixes in sh.warpPre; returns the
// total. Every thread must call it.
__device__ __forceinline__ double warps_exclusive(double mine, Shared& sh) {
  __syncthreads();
  if (lane_id() == 0) sh.warpPre[warp_id()] = mine;
  __syncthreads();
  double s = sh.warpPre[lane_id()], x = s;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const double y = __shfl_up_sync(kFull, x, o);
    if ((int)lane_id() >= o) x += y;
  }
  const double total = __shfl_sync(kFull, x, 31);
  __syncthreads();
  if (warp_id() == 0) sh.warpPre[lane_id()] = x - s;  // exclusive (integer counts and the draw's sums)
  __syncthreads();
  return total;
}

// Radix selection: the largest key c with f(c) >= goal, where f(c) = sum over tokens with key >= c of their
// value: 1 each (COUNT) or the mass `val(i)` (0 excludes a token). Returns the cut key and, in `rest`, goal
// minus the value of the tokens strictly above the cut (what the cut key's tokens must supply). Counts go
// to integer histograms, one shared atomic per digit group of a warp (__match_any_sync): shared f64
// atomics are compare-and-swap loops, which serialize when a warp's lanes share a digit.
template <bool COUNT, class Key, class Val>
__device__ uint32_t radix_cut(Key keyAt, int n, int CW, Val val, double goal, double& rest, Shared& sh) {
  uint32_t prefix = 0, mask = 0;
  const int lo = warp_id() * CW, hi = min(n, lo + CW), lane = lane_id(), wid = warp_id();
  for (int shift = 28; shift >= 0; shift -= 4) {
    __syncthreads();
    if (lane < kBins) {
      sh.hist[wid][lane] = 0;
      sh.histN[wid][lane] = 0;
    }
    __syncwarp();
    for (int base = lo; base < hi; base += 32) {
      const int i = base + lane;
      const uint32_t k = i < hi ? keyAt(i) : 0;
      const bool in = i < hi && (k & mask) == prefix;
      const unsigned dig = (k >> shift) & (kBins - 1);
      if constexpr (COUNT) {
        const unsigned active = __ballot_sync(kFull, in);
        if (in) {
          const unsigned grp = __match_any_sync(active, dig);
          if (lane == __ffs(grp) - 1) atomicAdd(&sh.histN[wid][dig], (unsigned)__popc(grp));
        }
      } else if (in) {
        const double v = val(i);
        if (v != 0) atomicAdd(&sh.hist[wid][dig], v);
      }
    }
    __syncthreads();
    // warp 0: bin totals, then the digit from the top where the running sum reaches the goal
    if (wid == 0) {
      double b = 0;
      if (lane < kBins)
        for (int w = 0; w < kW; w++) b += COUNT ? (double)sh.histN[w][lane] : sh.hist[w][lane];
      // suffix sums over bins (bin 15 highest): lanes 0..15 hold bins; reverse so a prefix scan works
      double x = __shfl_sync(kFull, b, (kBins - 1 - (int)lane_id()) & 31);
      if (lane_id() >= kBins) x = 0;
      double inc = x;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(kFull, inc, o);
        if ((int)lane_id() >= o) inc += y;
      }
      // lane j now covers bin 15 - j: inc = value of bins >= 15 - j; pick the first j with inc >= goal
      const unsigned hit = __ballot_sync(kFull, lane_id() < kBins && inc >= goal);
      const int j = hit ? __ffs(hit) - 1 : kBins - 1;  // rounding left the goal unmet: the lowest bin
      const double above = __shfl_sync(kFull, inc - x, j);
      if (lane_id() == 0) {
        sh.red[0] = (double)(kBins - 1 - j);
        sh.red[1] = above;
      }
    }
    __syncthreads();
    const uint32_t d = (uint32_t)sh.red[0];
    goal -= sh.red[1];
    prefix |= d << shift;
    mask |= (uint32_t)(kBins - 1) << shift;
  }
  rest = goal;
  return prefix;
}

// Bitonic sort of the first P (a power of two <= kCand) entries of sh.cKey (with cId, cW) ascending, one per
// thread; entries from P on must already be sentinels (~0).
__device__ void bitonic(Shared& sh, int P) {
  const int t = threadIdx.x;
  for (int size = 2; size <= P; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      const int p = t ^ stride;
      if (p > t) {
        const bool up = (t & size) == 0;
        const uint64_t a = sh.cKey[t], b = sh.cKey[p];
        if ((a > b) == up) {
          sh.cKey[t] = b;
          sh.cKey[p] = a;
          const int ti = sh.cId[t];
          sh.cId[t] = sh.cId[p];
          sh.cId[p] = ti;
          const double tw = sh.cW[t];
          sh.cW[t] = sh.cW[p];
          sh.cW[p] = tw;
        }
      }
    }
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kT) sample_kernel(const float* __restrict__ x, int* __restrict__ out,
                                                    const double* __restrict__ prm, double* __restrict__ wbuf,
                                                    int n, int cacheKeys) {
  pdl_enter();  // see device_util.cuh: before any read or early return
  __shared__ Shared sh;
  extern __shared__ uint32_t skeys[];  // cacheKeys: the row's keys, read by every later pass
  const int r = blockIdx.x, lane = lane_id(), wid = warp_id();
  const float* l = x + (size_t)r * n;
  const int CW = (n + kW - 1) / kW, lo = wid * CW, hi = min(n, lo + CW);
  auto keyAt = [&](int i) -> uint32_t { return cacheKeys ? skeys[i] : key_of(l[i]); };

  // 1. max (lowest id on ties), NaN, all -Infinity: packed (~key, id), min-reduced
  unsigned long long best = ~0ull;
  bool nan = false;
  for (int i = threadIdx.x; i < n; i += kT) {
    const float v = l[i];
    nan = nan || v != v;
    if (cacheKeys) skeys[i] = key_of(v);
    if (v != v || v == -INFINITY) continue;
    best = min(best, ((unsigned long long)(~key_of(v)) << 32) | (unsigned)i);
  }
  if (__syncthreads_or(nan)) {
    if (threadIdx.x == 0) out[r] = -1;
    return;
  }
  best = block_min_u64(best, sh.redq);
  if (best == ~0ull) {
    if (threadIdx.x == 0) out[r] = -2;
    return;
  }
  const int bestId = (int)(best & 0xffffffffu);
  const double T = prm ? prm[r * 5] : 0.0;
  if (!(T > 0)) {
    if (threadIdx.x == 0) out[r] = bestId;
    return;
  }
  const int topK = (int)prm[r * 5 + 1];
  const double topP = prm[r * 5 + 2], minP = prm[r * 5 + 3], u = prm[r * 5 + 4];
  const float mx = l[bestId];
  const bool inf = mx == INFINITY;  // the +Infinity tokens weigh 1, all others 0
  auto weight = [&](float v) -> double {
    return inf ? (v == INFINITY ? 1.0 : 0.0) : exp(((double)v - (double)mx) / T);
  };
  auto weightAt = [&](int i) -> double { return weight(cacheKeys ? value_of(skeys[i]) : l[i]); };
  const bool useK = topK > 0 && topK < n;

  // 2. top-k: the k-th key, and how many tokens of that key (the lowest ids) stay
  uint32_t kth = 0;
  long long kthTake = LLONG_MAX;
  if (useK) {
    double rest;
    kth = radix_cut<true>(keyAt, n, CW, [](int) { return 1.0; }, (double)topK, rest, sh);
    kthTake = (long long)rest;
  }
  // ranks in id order among the tokens for which tied(i) holds: this warp's first rank (per-warp counts,
  // scanned); the ordered passes then add ballots within the warp
  auto tieBase = [&](auto tied) -> double {
    double c = 0;
    for (int base = lo; base < hi; base += 32) {
      const int i = base + lane;
      c += __popc(__ballot_sync(kFull, i < hi && tied(i)));
    }
    warps_exclusive(lane == 0 ? c : 0, sh);
    return sh.warpPre[wid];
  };

  // Candidates in shared memory, one per thread: the top-k set (k <= kCand), or, with top-k off and top-p /
  // min-p on, the tokens pick.ts's pre-filter keeps (w >= max(minP, (1 - topP) / (2n) * z): nothing below
  // can be in the nucleus or pass min-p) when at most kCand pass it.
  double* wr = wbuf + (size_t)r * n;
  bool cand = false, wrDone = false;
  double zNucleus = -1;  // top-p's z: the whole vocabulary's (pre-filter), or the candidates' (-1, top-k)
  auto addCand = [&](int i, uint32_t k, double w) {
    const int s = atomicAdd(&sh.nCand, 1);
    sh.cKey[s] = ((uint64_t)(~k) << 32) | (uint32_t)i;  // rank order: key desc, id asc
    sh.cId[s] = i;
    sh.cW[s] = w;
  };
  if (threadIdx.x == 0) sh.nCand = 0;
  sh.cKey[threadIdx.x] = ~0ull;
  sh.cW[threadIdx.x] = 0;
  if (useK && topK <= kCand) {
    cand = true;
    double tie = tieBase([&](int i) { return keyAt(i) == kth; });  // (syncs inside)
    for (int base = lo; base < hi; base += 32) {
      const int i = base + lane;
      const uint32_t k = i < hi ? keyAt(i) : 0;
      const bool eq = i < hi && k == kth;
      const unsigned eqMask = __ballot_sync(kFull, eq);
      const bool take = i < hi && (k > kth || (eq && tie + __popc(eqMask & ((1u << lane) - 1)) < kthTake));
      tie += __popc(eqMask);
      if (take) addCand(i, k, weightAt(i));
    }
  } else if (!useK && (topP < 1 || minP > 0)) {
    double z = 0;
    for (int i = threadIdx.x; i < n; i += kT) z += wr[i] = weightAt(i);
    z = block_sum(z, sh.red);
    wrDone = true;
    const double thr = max(minP, topP < 1 ? (1 - topP) / (2.0 * n) * z : 0.0);
    double m = 0;
    for (int i = threadIdx.x; i < n; i += kT) m += (wr[i] >= thr && wr[i] > 0) ? 1 : 0;
    if (block_sum(m, sh.red) <= kCand) {
      cand = true;
      zNucleus = z;
      for (int i = threadIdx.x; i < n; i += kT)
        if (wr[i] >= thr && wr[i] > 0) addCand(i, keyAt(i), wr[i]);
    }
  }
  if (cand) {
    __syncthreads();
    int P = 2;
    while (P < sh.nCand) P <<= 1;
    bitonic(sh, P);
    const int t = threadIdx.x;
    double w = sh.cW[t];  // 0 past the candidates
    if (topP < 1) {
      double z;
      const double inc = block_inclusive(w, sh.red, z);
      if (zNucleus >= 0) z = zNucleus;
      // the shortest rank-order prefix reaching topP * z: keep while the mass before this one falls short
      if (inc - w >= topP * z && t > 0) w = 0;
    }
    if (minP > 0 && w < minP) w = 0;
    // the draw, in id order
    __syncthreads();
    sh.cKey[t] = w > 0 ? (uint64_t)sh.cId[t] : ~0ull;
    sh.cW[t] = w;
    bitonic(sh, P);
    w = sh.cW[t];
    double total;
    const double inc = block_inclusive(w, sh.red, total);
    const double goal = u * total;
    unsigned long long pick = (w > 0 && inc > goal) ? (unsigned long long)t : ~0ull;
    unsigned long long last = w > 0 ? (unsigned long long)(kCand - 1 - t) : ~0ull;
    pick = block_min_u64(pick, sh.redq);
    last = block_min_u64(last, sh.redq);
    const int slot = pick != ~0ull ? (int)pick : kCand - 1 - (int)last;  // rounding: the last kept token
    if (threadIdx.x == 0) out[r] = sh.cId[slot];
    return;
  }

  // ---- whole-vocabulary path: weights to wbuf ----
  __syncthreads();
  if (!wrDone) {
    double tie = useK ? tieBase([&](int i) { return keyAt(i) == kth; }) : 0;
    for (int base = lo; base < hi; base += 32) {
      const int i = base + lane;
      const uint32_t k = i < hi ? keyAt(i) : 0;
      const bool eq = useK && i < hi && k == kth;
      const unsigned eqMask = __ballot_sync(kFull, eq);
      const bool keep = !useK || k > kth || (eq && tie + __popc(eqMask & ((1u << lane) - 1)) < kthTake);
      tie += __popc(eqMask);
      if (i < hi) wr[i] = keep ? weightAt(i) : 0.0;
    }
  }
  __syncthreads();  // wr written by other warps is read below (all accesses of a token are by its warp,
                    // but the radix passes read every token from every warp)
  uint32_t cut = 0;
  long long cutTake = LLONG_MAX;
  if (topP < 1) {
    double z = 0;
    for (int i = threadIdx.x; i < n; i += kT) z += wr[i];
    z = block_sum(z, sh.red);
    double rest;
    cut = radix_cut<false>(keyAt, n, CW, [&](int i) { return wr[i]; }, topP * z, rest, sh);
    // the cut key's tokens weigh the same (equal logits): as many as the remaining mass needs, lowest ids
    // first (pick.ts: max(1, ceil(need / weight)))
    const double pw = weight(value_of(cut));
    cutTake = pw > 0 ? max(1ll, (long long)ceil(rest / pw)) : 1;
  }
  // mask (top-p cut, min-p) and the draw's per-warp sums, in id order
  double tie = topP < 1 ? tieBase([&](int i) { return keyAt(i) == cut && wr[i] > 0; }) : 0, mine = 0;
  int lastKept = -1;
  for (int base = lo; base < hi; base += 32) {
    const int i = base + lane;
    const uint32_t k = i < hi ? keyAt(i) : 0;
    const bool eq = topP < 1 && i < hi && k == cut && wr[i] > 0;
    const unsigned eqMask = __ballot_sync(kFull, eq);
    if (i < hi) {
      double w = wr[i];
      if (topP < 1 && (k < cut || (eq && tie + __popc(eqMask & ((1u << lane) - 1)) >= cutTake))) w = 0;
      if (minP > 0 && w < minP) w = 0;
      wr[i] = w;
      mine += w;
      if (w > 0) lastKept = i;
    }
    tie += __popc(eqMask);
  }
  mine = warp_sum(mine);
  const double total = warps_exclusive(lane == 0 ? mine : 0, sh);
  const double goal = u * total;
  // the warp whose range holds the crossing walks it 32 at a time with a warp scan; the first crossing wins
  double run = sh.warpPre[wid];
  unsigned long long pick = ~0ull;
  if (run + mine > goal && mine > 0) {
    for (int base = lo; base < hi && pick == ~0ull; base += 32) {
      const int i = base + lane;
      double v = i < hi ? wr[i] : 0.0, inc = v;
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(kFull, inc, o);
        if ((int)lane >= o) inc += y;
      }
      const unsigned hit = __ballot_sync(kFull, v > 0 && run + inc > goal);
      if (hit) pick = (unsigned long long)(base + __ffs(hit) - 1);
      run += __shfl_sync(kFull, inc, 31);
    }
  }
  pick = block_min_u64(pick, sh.redq);
  const unsigned long long last = block_min_u64(lastKept >= 0 ? ~(unsigned long long)lastKept : ~0ull, sh.redq);
  if (threadIdx.x == 0) out[r] = pick != ~0ull ? (int)pick : (int)~last;  // rounding: the last kept token
}

}  // namespace

size_t sample_scratch_bytes(int maxRows, int n) { return (size_t)maxRows * (size_t)n * sizeof(double); }

cudaError_t sample_rows(const float* x, int* out, const double* params, double* scratch, int nRows, int n,
                        cudaStream_t s) {
  if (nRows < 0 || n <= 0 || !x || !out || (params && !scratch)) return cudaErrorInvalidValue;
  if (nRows == 0) return cudaSuccess;
  // the row's keys in shared memory when they fit beside the static part (32k vocabularies: 128 KB)
  static std::mutex mu;
  static int maxDyn[64] = {};  // per device: dynamic shared memory bytes configured, -1: none possible
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev < 0 || dev >= 64) return cudaErrorInvalidDevice;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!maxDyn[dev]) {
      DeviceProps dp;
      cudaFuncAttributes fa;
      if ((e = device_props(dp)) != cudaSuccess || (e = cudaFuncGetAttributes(&fa, sample_kernel)) != cudaSuccess)
        return e;
      const int bytes = dp.smemOptin - (int)fa.sharedSizeBytes;
      maxDyn[dev] = bytes > 0 && cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                      bytes) == cudaSuccess ? bytes : -1;
      cudaGetLastError();
    }
  }
  const bool cache = (size_t)n * 4 <= (size_t)std::max(maxDyn[dev], 0);
  LAUNCH_PDL(sample_kernel, nRows, kT, cache ? (size_t)n * 4 : 0, s, x, out, params, scratch, n, cache ? 1 : 0);
  return cudaSuccess;
}

}  // namespace llama_ts
