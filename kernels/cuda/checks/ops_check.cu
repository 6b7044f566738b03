// Check of kernels/cuda/ops.cu against CPU double-precision references: embed, rms_norm, add, silu_mul,
// gather_rows, rope, kv_write, rope_kv_write, attention (+ CUDA-graph replay with new step data), and a
// timing table. Build (from kernels/cuda):
//   nvcc -O3 -std=c++17 -arch=sm_90 -o ops_check checks/ops_check*.cu ops.cu attention.cu attention_launch.cu
//     attention_decode.cu kv_int8.cu
// Exit status non-zero on any failure.
// The program's files: this one (shared helpers, embed, rms_norm, add, silu_mul, gather_rows, rope, main),
// ops_check_cache.cu (kv_write, rope_kv_write, attention), ops_check_timing.cu (timing, --profile);
// ops_check.cuh declares what they share.
#include "ops_check.cuh"
#include <cstring>
#include <string>

using namespace llama_ts;
using check::Rng;

namespace ops_check {

int g_cases = 0;
bool g_small = false;

std::vector<int> or_zero(const std::vector<int>& v) { return v.empty() ? std::vector<int>{0} : v; }

DevStep make_step(const std::vector<int>& tokens, const std::vector<int>& positions, const std::vector<int>& seqIndex,
                  const std::vector<int>& logitRows, const std::vector<int>& bt, int mbps) {
  DevStep d;
  d.tokens = check::to_dev(or_zero(tokens));
  d.positions = check::to_dev(or_zero(positions));
  d.seqIndex = check::to_dev(or_zero(seqIndex));
  d.logitRows = check::to_dev(or_zero(logitRows));
  d.bt = check::to_dev(or_zero(bt));
  d.mbps = mbps;
  return d;
}

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
// All of x[0..n) NaN and none of them the 0xFFFFFFFF poison pattern (so they were written).
bool all_written_nan(const float* x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!std::isnan(x[i]) || bits(x[i]) == 0xFFFFFFFFu) return false;
  return true;
}

void expect_true(const char* what, bool ok) {
  std::printf("%-60s %s\n", what, ok ? "ok" : "FAIL");
  if (!ok) check::g_failures++;
}

std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

std::vector<float> inv_freq(int hd, double theta) {
  std::vector<float> f(hd / 2);
  for (int j = 0; j < hd / 2; j++) f[j] = (float)std::pow(theta, -2.0 * j / hd);
  return f;
}

// Reference rope of one row slice in place (as ref_ops.ts: double math, one rounding to f32).
void ref_rope_row(float* x, int nHeads, int hd, int style, const float* f, int pos) {
  const int half = hd / 2;
  for (int h = 0; h < nHeads; h++) {
    float* b = x + (size_t)h * hd;
    for (int j = 0; j < half; j++) {
      const double a = (double)pos * (double)f[j], c = std::cos(a), s = std::sin(a);
      const int i0 = style == ROPE_INTERLEAVED ? 2 * j : j, i1 = style == ROPE_INTERLEAVED ? i0 + 1 : j + half;
      const double v0 = b[i0], v1 = b[i1];
      b[i0] = (float)(v0 * c - v1 * s);
      b[i1] = (float)(v0 * s + v1 * c);
    }
  }
}

long long ref_slot(const std::vector<int>& bt, int mbps, int seq, int pos, int bs) {
  if (pos < 0 || seq < 0) return -1;
  const int lb = pos / bs;
  if (lb >= mbps) return -1;
  const int phys = bt[(size_t)seq * mbps + lb];
  if (phys < 0) return -1;
  return (long long)phys * bs + pos % bs;
}

// Shuffled physical blocks: seq s, logical block b -> perm[s * mbps + b] (nBlocks >= nSeqs * mbps).
std::vector<int> shuffled_tables(int nSeqs, int mbps, int nBlocks, uint64_t seed) {
  std::vector<int> perm(nBlocks);
  for (int i = 0; i < nBlocks; i++) perm[i] = i;
  Rng r(seed);
  for (int i = nBlocks - 1; i > 0; i--) {
    int j = (int)((r.next() * 0.5f + 0.5f) * (i + 1));
    j = std::min(std::max(j, 0), i);
    std::swap(perm[i], perm[j]);
  }
  perm.resize((size_t)nSeqs * mbps);
  return perm;
}

}  // namespace ops_check

using namespace ops_check;

namespace {

// --------------------------------------------------------------------------------------------------
// embed
// --------------------------------------------------------------------------------------------------
void test_embed(int fmt, int group, int vocab, int dim, const char* name) {
  g_cases++;
  const std::vector<int> tokens = {3, 0, vocab - 1, 17 % vocab, -1, vocab, 7 % vocab};
  const int nTok = (int)tokens.size();
  std::vector<float> want((size_t)nTok * dim);
  Rng rng(100 + fmt * 7 + dim);
  const size_t n = (size_t)vocab * dim;
  std::vector<float> deq(n);
  void* dq = nullptr;
  __half* ds = nullptr;
  if (fmt == WF_F32) {
    std::vector<float> t(n);
    for (size_t i = 0; i < n; i++) deq[i] = t[i] = rng.next();
    dq = check::to_dev(t);
  } else if (fmt == WF_F16) {
    std::vector<__half> t(n);
    for (size_t i = 0; i < n; i++) { t[i] = __float2half_rn(rng.next()); deq[i] = __half2float(t[i]); }
    dq = check::to_dev(t);
  } else if (fmt == WF_BF16) {
    std::vector<__nv_bfloat16> t(n);
    for (size_t i = 0; i < n; i++) { t[i] = __float2bfloat16_rn(rng.next()); deq[i] = __bfloat162float(t[i]); }
    dq = check::to_dev(t);
  } else {
    const int ng = dim / group;
    std::vector<__half> sc((size_t)vocab * ng);
    for (auto& s : sc) s = __float2half_rn(0.01f + 0.05f * std::fabs(rng.next()));
    ds = check::to_dev(sc);
    if (fmt == WF_I8) {
      std::vector<int8_t> q(n);
      for (size_t i = 0; i < n; i++) {
        q[i] = (int8_t)std::lround(rng.next() * 127.f);
        deq[i] = __half2float(sc[(i / dim) * ng + (i % dim) / group]) * (float)q[i];
      }
      dq = check::to_dev(q);
    } else {
      std::vector<uint8_t> q(n / 2);
      for (auto& b : q) b = (uint8_t)((int)((rng.next() * 0.5f + 0.5f) * 255.99f) & 255);
      for (size_t i = 0; i < n; i++) {
        const size_t row = i / dim, e = i % dim;
        deq[i] = __half2float(sc[row * ng + e / group]) * (float)(check::q4_code(q.data() + row * dim / 2, e) - 8);
      }
      dq = check::to_dev(q);
    }
  }
  for (int r = 0; r < nTok; r++)
    if (tokens[r] >= 0 && tokens[r] < vocab)
      std::memcpy(&want[(size_t)r * dim], &deq[(size_t)tokens[r] * dim], dim * 4);
  DevStep st = make_step(tokens, {}, {}, {}, {}, 1);
  float* out;
  CK(cudaMalloc(&out, want.size() * 4));
  check::poison(out, want.size() * 4);
  WeightRef w{dq, ds, fmt, group, vocab, dim};
  CK(embed(w, out, nTok, st.sd(), 0));
  CK(cudaDeviceSynchronize());
  auto got = check::from_dev(out, want.size());
  std::vector<float> gv, wv;
  bool nanOk = true;
  for (int r = 0; r < nTok; r++) {
    const float* g = &got[(size_t)r * dim];
    if (tokens[r] >= 0 && tokens[r] < vocab) {
      gv.insert(gv.end(), g, g + dim);
      wv.insert(wv.end(), &want[(size_t)r * dim], &want[(size_t)r * dim] + dim);
    } else {
      nanOk = nanOk && all_written_nan(g, dim);
    }
  }
  auto wd = to_double(wv);
  check::expect(name, check::nmse(gv.data(), wd.data(), gv.size()), 1e-14);
  expect_true((std::string(name) + ": bad token ids -> NaN rows").c_str(), nanOk);
  CK(cudaFree(out));
  CK(cudaFree(dq));
  if (ds) CK(cudaFree(ds));
  st.free_all();
}

// --------------------------------------------------------------------------------------------------
// rms_norm, add, silu_mul, gather_rows
// --------------------------------------------------------------------------------------------------
void test_rms(int rows, int n, bool inplace, int offset) {
  g_cases++;
  auto x = check::rand_vec((size_t)rows * n + offset, 200 + n, 2.f);
  auto w = check::rand_vec(n + offset, 201 + n);
  std::vector<double> want((size_t)rows * n);
  for (int r = 0; r < rows; r++) {
    const float* xr = &x[offset + (size_t)r * n];
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
    const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int i = 0; i < n; i++) want[(size_t)r * n + i] = (double)w[offset + i] * (inv * xr[i]);
  }
  float* dx = check::to_dev(x);
  float* dw = check::to_dev(w);
  float* dout = dx + offset;
  float* dbuf = nullptr;
  if (!inplace) {
    CK(cudaMalloc(&dbuf, ((size_t)rows * n + offset) * 4));
    check::poison(dbuf, ((size_t)rows * n + offset) * 4);
    dout = dbuf + offset;
  }
  CK(rms_norm(dx + offset, dw + offset, dout, rows, n, 1e-5f, 0));
  CK(cudaDeviceSynchronize());
  auto got = check::from_dev(dout, (size_t)rows * n);
  char name[128];
  std::snprintf(name, sizeof name, "rms_norm rows %d n %d%s%s", rows, n, inplace ? " in-place" : "",
                offset ? " misaligned" : "");
  check::expect(name, check::nmse(got.data(), want.data(), got.size()), 1e-10);
  CK(cudaFree(dx));
  CK(cudaFree(dw));
  if (dbuf) CK(cudaFree(dbuf));
}

void test_ew(int op, int64_t n, bool inplace, int offset) {
  g_cases++;
  auto a = check::rand_vec(n + offset, 300 + n, 6.f);
  auto b = check::rand_vec(n + offset, 301 + n, 2.f);
  std::vector<double> want(n);
  for (int64_t i = 0; i < n; i++) {
    const double g = a[offset + i], u = b[offset + i];
    want[i] = op == 0 ? g + u : g / (1.0 + std::exp(-g)) * u;
  }
  float* da = check::to_dev(a);
  float* db = check::to_dev(b);
  float* dout = da + offset;
  float* dbuf = nullptr;
  if (!inplace) {
    CK(cudaMalloc(&dbuf, (n + offset) * 4));
    check::poison(dbuf, (n + offset) * 4);
    dout = dbuf + offset;
  }
  if (op == 0) CK(add(da + offset, db + offset, dout, n, 0));
  else CK(silu_mul(da + offset, db + offset, dout, n, 0));
  CK(cudaDeviceSynchronize());
  auto got = check::from_dev(dout, n);
  char name[128];
  std::snprintf(name, sizeof name, "%s n %lld%s%s", op == 0 ? "add" : "silu_mul", (long long)n,
                inplace ? " in-place" : "", offset ? " misaligned" : "");
  check::expect(name, check::nmse(got.data(), want.data(), n), 1e-10);
  CK(cudaFree(da));
  CK(cudaFree(db));
  if (dbuf) CK(cudaFree(dbuf));
}

void test_gather() {
  g_cases++;
  const int rows = 6, n = 4099;
  auto x = check::rand_vec((size_t)rows * n, 400);
  const std::vector<int> lr = {5, 0, 3, -1, 3};
  DevStep st = make_step({}, {}, {}, lr, {}, 1);
  float* dx = check::to_dev(x);
  float* dout;
  CK(cudaMalloc(&dout, lr.size() * n * 4));
  check::poison(dout, lr.size() * n * 4);
  CK(gather_rows(dx, dout, (int)lr.size(), n, st.sd(), 0));
  CK(cudaDeviceSynchronize());
  auto got = check::from_dev(dout, lr.size() * n);
  std::vector<float> gv;
  std::vector<double> wv;
  bool nanOk = true;
  for (size_t i = 0; i < lr.size(); i++) {
    if (lr[i] < 0) { nanOk = nanOk && all_written_nan(&got[i * n], n); continue; }
    gv.insert(gv.end(), &got[i * n], &got[i * n] + n);
    for (int j = 0; j < n; j++) wv.push_back(x[(size_t)lr[i] * n + j]);
  }
  check::expect("gather_rows 5 of 6 rows, n 4099", check::nmse(gv.data(), wv.data(), gv.size()), 1e-14);
  expect_true("gather_rows: negative row -> NaN", nanOk);
  CK(cudaFree(dx));
  CK(cudaFree(dout));
  st.free_all();
}

// --------------------------------------------------------------------------------------------------
// rope
// --------------------------------------------------------------------------------------------------
void test_rope(int nHeads, int hd, int style, int extraCols) {
  g_cases++;
  const std::vector<int> pos = {0, 1, 17, 1000, 4095, 70000};
  const int nTok = (int)pos.size(), ldx = nHeads * hd + extraCols;
  auto x = check::rand_vec((size_t)nTok * ldx, 500 + hd + style);
  auto f = inv_freq(hd, style == ROPE_HALF ? 500000.0 : 10000.0);
  std::vector<float> want = x;
  for (int r = 0; r < nTok; r++) ref_rope_row(&want[(size_t)r * ldx], nHeads, hd, style, f.data(), pos[r]);
  DevStep st = make_step({}, pos, {}, {}, {}, 1);
  float* dx = check::to_dev(x);
  float* df = check::to_dev(f);
  CK(rope(dx, ldx, nTok, nHeads, hd, style, df, st.sd(), 0));
  CK(cudaDeviceSynchronize());
  auto got = check::from_dev(dx, x.size());
  auto wd = to_double(want);
  char name[128];
  std::snprintf(name, sizeof name, "rope %s heads %d hd %d ldx %d (pos up to 70000)",
                style == ROPE_HALF ? "half" : "interleaved", nHeads, hd, ldx);
  check::expect(name, check::nmse(got.data(), wd.data(), got.size()), 1e-10);
  CK(cudaFree(dx));
  CK(cudaFree(df));
  st.free_all();
}

}  // namespace

int main(int argc, char** argv) {
  // --no-timing: checks only; --timing-only: timing table only; --small: skip the large attention cases
  // (for compute-sanitizer racecheck/synccheck)
  bool noTiming = false, timingOnly = false;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--no-timing")) noTiming = true;
    else if (!std::strcmp(argv[i], "--timing-only")) timingOnly = true;
    else if (!std::strcmp(argv[i], "--small")) g_small = true;
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  if (argc > 3 && !std::strcmp(argv[1], "--profile")) {
    profile_decode(std::atoi(argv[2]), std::atoi(argv[3]));
    return 0;
  }
  if (timingOnly) {
    timing();
    return check::finish("ops_check");
  }

  for (int dim : {256, 4096}) {
    test_embed(WF_F32, 0, 50, dim, dim == 256 ? "embed f32 dim 256" : "embed f32 dim 4096");
    test_embed(WF_F16, 0, 50, dim, dim == 256 ? "embed f16 dim 256" : "embed f16 dim 4096");
    test_embed(WF_BF16, 0, 50, dim, dim == 256 ? "embed bf16 dim 256" : "embed bf16 dim 4096");
    test_embed(WF_I8, 32, 50, dim, dim == 256 ? "embed i8 g32 dim 256" : "embed i8 g32 dim 4096");
    test_embed(WF_I8, dim, 50, dim, dim == 256 ? "embed i8 per-row dim 256" : "embed i8 per-row dim 4096");
    test_embed(WF_I4, 32, 50, dim, dim == 256 ? "embed i4 g32 dim 256" : "embed i4 g32 dim 4096");
    test_embed(WF_I4, 128, 50, dim, dim == 256 ? "embed i4 g128 dim 256" : "embed i4 g128 dim 4096");
  }
  test_rms(3, 4096, false, 0);
  test_rms(2, 4096, true, 0);
  test_rms(5, 1001, false, 0);
  test_rms(2, 4096, false, 1);
  test_ew(0, 4096 * 3, false, 0);
  test_ew(0, 4096, true, 0);
  test_ew(0, 1003, false, 0);
  test_ew(0, 4096, false, 1);
  test_ew(1, 11008 * 2, false, 0);
  test_ew(1, 11008, true, 0);
  test_ew(1, 1003, false, 1);
  test_gather();
  for (int style : {ROPE_INTERLEAVED, ROPE_HALF})
    for (int hd : {8, 64, 128}) test_rope(hd == 8 ? 8 : 32, hd, style, hd == 64 ? 6 : 0);
  test_rope(3, 256, ROPE_HALF, 2);
  for (int bs : {16, 5}) {
    run_kv_case<float>(KV_F32, bs, 4, 4, 8, ROPE_INTERLEAVED, false);
    run_kv_case<__half>(KV_F16, bs, 32, 32, 128, ROPE_HALF, false);
    run_kv_case<float>(KV_F32, bs, 8, 4, 8, ROPE_INTERLEAVED, true);
    run_kv_case<__half>(KV_F16, bs, 8, 4, 8, ROPE_HALF, true);
    run_kv_case<float>(KV_F32, bs, 32, 8, 128, ROPE_HALF, true);
    run_kv_case<__half>(KV_F16, bs, 32, 32, 128, ROPE_INTERLEAVED, true);
  }
  attention_cases();
  std::printf("scratch: attention_scratch_bytes(512, 32, 128, 4096) = %zu, (1, 32, 128, 4096) = %zu\n",
              attention_scratch_bytes(512, 32, 128, 4096), attention_scratch_bytes(1, 32, 128, 4096));
  CK(cudaDeviceSynchronize());
  if (!noTiming) timing();
  CK(cudaDeviceSynchronize());
  std::printf("%d test cases\n", g_cases);
  return check::finish("ops_check");
}
