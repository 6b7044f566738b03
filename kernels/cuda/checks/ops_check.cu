// Check of kernels/cuda/ops.cu against CPU double-precision references: embed, rms_norm, add, silu_mul,
// gather_rows, rope, kv_write, rope_kv_write, attention (+ CUDA-graph replay with new step data), and a
// timing table. Build (from kernels/cuda):
//   nvcc -O3 -std=c++17 -arch=sm_90 -o ops_check checks/ops_check.cu ops.cu attention.cu attention_decode.cu kv_int8.cu
// Exit status non-zero on any failure.
#include "../kernels.cuh"
#include "check_util.cuh"
#include <cstring>
#include <string>

using namespace llama_ts;
using check::Rng;

namespace {

int g_cases = 0;
bool g_small = false;

// --------------------------------------------------------------------------------------------------
// helpers
// --------------------------------------------------------------------------------------------------
struct DevStep {
  int *tokens = nullptr, *positions = nullptr, *seqIndex = nullptr, *logitRows = nullptr, *bt = nullptr;
  int mbps = 1;
  StepDev sd() const { return StepDev{tokens, positions, seqIndex, logitRows, bt, mbps}; }
  void free_all() {
    for (int* p : {tokens, positions, seqIndex, logitRows, bt})
      if (p) CK(cudaFree(p));
  }
};

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

std::vector<float> inv_freq(int hd, double theta = 10000.0) {
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

// --------------------------------------------------------------------------------------------------
// kv_write and rope_kv_write
// --------------------------------------------------------------------------------------------------
struct KvRows {
  std::vector<int> pos, seq, bt;
  int mbps, nBlocks;
};
// Rows of several sequences plus rows that must be skipped (table hole, past the table, negative pos/seq).
KvRows kv_rows(int bs) {
  KvRows k;
  const int nSeqs = 3;
  k.mbps = 6;
  k.nBlocks = nSeqs * k.mbps + 2;
  k.bt = shuffled_tables(nSeqs, k.mbps, k.nBlocks, 77 + bs);
  k.bt[1 * k.mbps + 2] = -1;  // hole: seq 1, logical block 2
  auto add = [&](int s, int p) { k.seq.push_back(s); k.pos.push_back(p); };
  for (int p = 0; p < 5; p++) add(0, 3 * bs - 2 + p);  // prefill rows across a block boundary
  add(1, 0);
  add(1, 2 * bs + 1);     // hole -> skipped
  add(2, 6 * bs - 1);     // last slot of the table
  add(2, 6 * bs);         // past the table -> skipped
  add(2, -1);             // negative position -> skipped
  add(-1, 3);             // negative sequence -> skipped
  add(1, bs + 3);
  return k;
}

template <typename T>
std::vector<float> cache_as_float(const std::vector<T>& c) {
  std::vector<float> f(c.size());
  for (size_t i = 0; i < c.size(); i++) {
    if constexpr (sizeof(T) == 2) f[i] = __half2float(c[i]);
    else f[i] = c[i];
  }
  return f;
}

template <typename T>
void run_kv_case(int fmt, int bs, int nHeads, int nKvHeads, int hd, int style, bool fused) {
  g_cases++;
  const int kvDim = nKvHeads * hd, qDim = nHeads * hd;
  KvRows kr = kv_rows(bs);
  const int nTok = (int)kr.pos.size();
  const size_t cacheElems = (size_t)kr.nBlocks * bs * kvDim;
  auto q = check::rand_vec((size_t)nTok * qDim, 600 + hd);
  auto k = check::rand_vec((size_t)nTok * kvDim, 601 + hd);
  auto v = check::rand_vec((size_t)nTok * kvDim, 602 + hd);
  auto f = inv_freq(hd);
  std::vector<float> qw = q, kw = k;
  if (fused) {
    for (int r = 0; r < nTok; r++) {
      ref_rope_row(&qw[(size_t)r * qDim], nHeads, hd, style, f.data(), kr.pos[r]);
      ref_rope_row(&kw[(size_t)r * kvDim], nKvHeads, hd, style, f.data(), kr.pos[r]);
    }
  }
  // expected caches: poison everywhere except the written slots
  std::vector<uint8_t> expK(cacheElems * sizeof(T), 0xFF), expV(cacheElems * sizeof(T), 0xFF);
  std::vector<char> written(cacheElems / kvDim, 0);
  for (int r = 0; r < nTok; r++) {
    const long long slot = ref_slot(kr.bt, kr.mbps, kr.seq[r], kr.pos[r], bs);
    if (slot < 0) continue;
    written[slot] = 1;
    for (int i = 0; i < kvDim; i++) {
      T kk, vv;
      if constexpr (sizeof(T) == 2) {
        kk = __float2half_rn(kw[(size_t)r * kvDim + i]);
        vv = __float2half_rn(v[(size_t)r * kvDim + i]);
      } else {
        kk = kw[(size_t)r * kvDim + i];
        vv = v[(size_t)r * kvDim + i];
      }
      std::memcpy(&expK[(slot * kvDim + i) * sizeof(T)], &kk, sizeof(T));
      std::memcpy(&expV[(slot * kvDim + i) * sizeof(T)], &vv, sizeof(T));
    }
  }
  DevStep st = make_step({}, kr.pos, kr.seq, {}, kr.bt, kr.mbps);
  float* dq = check::to_dev(q);
  float* dk = check::to_dev(k);
  float* dv = check::to_dev(v);
  float* df = check::to_dev(f);
  void *cK, *cV;
  CK(cudaMalloc(&cK, cacheElems * sizeof(T)));
  CK(cudaMalloc(&cV, cacheElems * sizeof(T)));
  check::poison(cK, cacheElems * sizeof(T));
  check::poison(cV, cacheElems * sizeof(T));
  if (fused)
    CK(rope_kv_write(dq, dk, dv, nTok, nHeads, nKvHeads, hd, style, df, cK, cV, fmt, bs, st.sd(), 0));
  else
    CK(kv_write(dk, dv, nTok, kvDim, cK, cV, fmt, bs, st.sd(), 0));
  CK(cudaDeviceSynchronize());
  auto gK = check::from_dev(static_cast<T*>(cK), cacheElems);
  auto gV = check::from_dev(static_cast<T*>(cV), cacheElems);
  // untouched slots must still hold the poison bytes; V exactly as expected everywhere
  size_t badUntouched = 0, badV = 0;
  const uint8_t* gkb = reinterpret_cast<const uint8_t*>(gK.data());
  const uint8_t* gvb = reinterpret_cast<const uint8_t*>(gV.data());
  for (size_t s = 0; s < written.size(); s++) {
    const size_t b0 = s * kvDim * sizeof(T), nb = kvDim * sizeof(T);
    if (!written[s] && std::memcmp(gkb + b0, expK.data() + b0, nb)) badUntouched++;
    if (std::memcmp(gvb + b0, expV.data() + b0, nb)) badV++;
  }
  // written K slots: exact for kv_write, NMSE for the fused path (device sin/cos may differ by an ulp)
  std::vector<float> gk, wk;
  for (size_t s = 0; s < written.size(); s++) {
    if (!written[s]) continue;
    T tmp;
    for (int i = 0; i < kvDim; i++) {
      std::memcpy(&tmp, &expK[(s * kvDim + i) * sizeof(T)], sizeof(T));
      if constexpr (sizeof(T) == 2) {
        wk.push_back(__half2float(tmp));
        gk.push_back(__half2float(gK[s * kvDim + i]));
      } else {
        wk.push_back(tmp);
        gk.push_back(gK[s * kvDim + i]);
      }
    }
  }
  auto wkd = to_double(wk);
  char name[160];
  const char* fs = fmt == KV_F16 ? "f16" : "f32";
  if (!fused) {
    std::snprintf(name, sizeof name, "kv_write %s bs %d kvDim %d: K slots", fs, bs, kvDim);
    check::expect(name, check::nmse(gk.data(), wkd.data(), gk.size()), 0.0);
  } else {
    std::snprintf(name, sizeof name, "rope_kv_write %s %s %d/%d/%d bs %d: K cache", fs,
                  style == ROPE_HALF ? "half" : "interleaved", nHeads, nKvHeads, hd, bs);
    check::expect(name, check::nmse(gk.data(), wkd.data(), gk.size()), fmt == KV_F16 ? 1e-7 : 1e-10);
    auto gq = check::from_dev(dq, q.size());
    auto gkk = check::from_dev(dk, k.size());
    auto qwd = to_double(qw), kwd = to_double(kw);
    std::snprintf(name, sizeof name, "rope_kv_write %s %d/%d/%d: q in place", fs, nHeads, nKvHeads, hd);
    check::expect(name, check::nmse(gq.data(), qwd.data(), gq.size()), 1e-10);
    std::snprintf(name, sizeof name, "rope_kv_write %s %d/%d/%d: k in place", fs, nHeads, nKvHeads, hd);
    check::expect(name, check::nmse(gkk.data(), kwd.data(), gkk.size()), 1e-10);
  }
  std::snprintf(name, sizeof name, "%s %s bs %d: V exact, skipped rows / other slots untouched",
                fused ? "rope_kv_write" : "kv_write", fs, bs);
  expect_true(name, badUntouched == 0 && badV == 0);
  if (badUntouched || badV) std::printf("    (%zu K slots touched that should not be, %zu V slots differ)\n",
                                        badUntouched, badV);
  for (void* p : {(void*)dq, (void*)dk, (void*)dv, (void*)df, cK, cV}) CK(cudaFree(p));
  st.free_all();
}

// --------------------------------------------------------------------------------------------------
// attention
// --------------------------------------------------------------------------------------------------
struct AttnSpec {
  std::string name;
  int nHeads, nKvHeads, hd, fmt, bs, maxCtx, nSeqs;
  std::vector<std::pair<int, int>> rows;            // (seq, pos)
  std::vector<std::pair<int, int>> holes;           // (seq, logical block) -> -1 in the block table
  int mbps = 0;                                     // 0: ceil(maxCtx / bs)
  float qScale = 1.f;
  std::vector<std::pair<int, int>> graphRows;       // non-empty: also replay a captured graph with these rows
  bool ownSeq = false;                              // attention()'s rowsOwnSeq hint (decode batches)
};

struct AttnData {
  int kvDim, mbps, nBlocks;
  std::vector<int> bt;
  std::vector<float> Kf, Vf;  // cache values as the kernels see them (f16-rounded for KV_F16)
  void *dK = nullptr, *dV = nullptr;
};

AttnData make_attn_data(const AttnSpec& c, uint64_t seed) {
  AttnData d;
  d.kvDim = c.nKvHeads * c.hd;
  d.mbps = c.mbps ? c.mbps : (c.maxCtx + c.bs - 1) / c.bs;
  d.nBlocks = c.nSeqs * d.mbps + 3;
  d.bt = shuffled_tables(c.nSeqs, d.mbps, d.nBlocks, seed);
  for (auto& h : c.holes) d.bt[(size_t)h.first * d.mbps + h.second] = -1;
  const size_t n = (size_t)d.nBlocks * c.bs * d.kvDim;
  d.Kf.resize(n);
  d.Vf.resize(n);
  Rng rk(seed * 3 + 1), rv(seed * 3 + 2);
  if (c.fmt == KV_F16) {
    std::vector<__half> hk(n), hv(n);
    for (size_t i = 0; i < n; i++) {
      hk[i] = __float2half_rn(rk.next());
      hv[i] = __float2half_rn(rv.next());
      d.Kf[i] = __half2float(hk[i]);
      d.Vf[i] = __half2float(hv[i]);
    }
    d.dK = check::to_dev(hk);
    d.dV = check::to_dev(hv);
  } else {
    for (size_t i = 0; i < n; i++) {
      d.Kf[i] = rk.next();
      d.Vf[i] = rv.next();
    }
    d.dK = check::to_dev(d.Kf);
    d.dV = check::to_dev(d.Vf);
  }
  return d;
}

// Reference output rows; nanRow[r] says the row must come out NaN.
void ref_attention(const AttnSpec& c, const AttnData& d, const std::vector<std::pair<int, int>>& rows,
                   const std::vector<float>& q, float scale, std::vector<double>& out, std::vector<char>& nanRow) {
  const int qd = c.nHeads * c.hd, G = c.nHeads / c.nKvHeads, nTok = (int)rows.size();
  out.assign((size_t)nTok * qd, 0.0);
  nanRow.assign(nTok, 0);
  for (int r = 0; r < nTok; r++) {
    const int seq = rows[r].first, pos = rows[r].second;
    if (pos < 0 || pos >= c.maxCtx || seq < 0 || pos / c.bs >= d.mbps) { nanRow[r] = 1; continue; }
    std::vector<long long> slots(pos + 1);
    for (int t = 0; t <= pos; t++) {
      slots[t] = ref_slot(d.bt, d.mbps, seq, t, c.bs);
      if (slots[t] < 0) nanRow[r] = 1;
    }
    if (nanRow[r]) continue;
    std::vector<double> sc(pos + 1);
    for (int h = 0; h < c.nHeads; h++) {
      const float* qv = &q[(size_t)r * qd + (size_t)h * c.hd];
      const size_t ko = (size_t)(h / G) * c.hd;
      double mx = -INFINITY;
      for (int t = 0; t <= pos; t++) {
        const float* kv = &d.Kf[slots[t] * d.kvDim + ko];
        double s = 0;
        for (int i = 0; i < c.hd; i++) s += (double)qv[i] * kv[i];
        sc[t] = s * scale;
        mx = std::max(mx, sc[t]);
      }
      double sum = 0;
      for (int t = 0; t <= pos; t++) sum += sc[t] = std::exp(sc[t] - mx);
      double* o = &out[(size_t)r * qd + (size_t)h * c.hd];
      for (int t = 0; t <= pos; t++) {
        const float* vv = &d.Vf[slots[t] * d.kvDim + ko];
        const double p = sc[t] / sum;
        for (int i = 0; i < c.hd; i++) o[i] += p * vv[i];
      }
    }
  }
}

void compare_attention(const std::string& name, const AttnSpec& c, const std::vector<float>& got,
                       const std::vector<double>& want, const std::vector<char>& nanRow) {
  const int qd = c.nHeads * c.hd;
  std::vector<float> gv;
  std::vector<double> wv;
  bool nanOk = true;
  int nNan = 0;
  for (size_t r = 0; r < nanRow.size(); r++) {
    if (nanRow[r]) {
      nNan++;
      nanOk = nanOk && all_written_nan(&got[r * qd], qd);
    } else {
      gv.insert(gv.end(), &got[r * qd], &got[r * qd] + qd);
      wv.insert(wv.end(), &want[r * qd], &want[r * qd] + qd);
    }
  }
  check::expect(name.c_str(), gv.empty() ? 0.0 : check::nmse(gv.data(), wv.data(), gv.size()), 1e-9);
  if (nNan) expect_true((name + ": invalid rows -> NaN (" + std::to_string(nNan) + " rows)").c_str(), nanOk);
}

void run_attention(const AttnSpec& c, uint64_t seed) {
  g_cases++;
  AttnData d = make_attn_data(c, seed);
  const int nTok = (int)c.rows.size(), qd = c.nHeads * c.hd;
  const float scale = 1.0f / std::sqrt((float)c.hd);
  auto q = check::rand_vec((size_t)nTok * qd, seed + 11, c.qScale);
  std::vector<int> pos, seq;
  for (auto& r : c.rows) { seq.push_back(r.first); pos.push_back(r.second); }
  DevStep st = make_step({}, pos, seq, {}, d.bt, d.mbps);
  float* dq = check::to_dev(q);
  float *dout, *scratch;
  CK(cudaMalloc(&dout, (size_t)nTok * qd * 4));
  const size_t sb = attention_scratch_bytes(nTok, c.nHeads, c.hd, c.maxCtx);
  CK(cudaMalloc(&scratch, sb));
  check::poison(scratch, sb);
  check::poison(dout, (size_t)nTok * qd * 4);
  CK(attention(dq, d.dK, d.dV, c.fmt, dout, nTok, c.nHeads, c.nKvHeads, c.hd, scale, c.bs, c.maxCtx, scratch,
               st.sd(), 0, c.ownSeq));
  CK(cudaDeviceSynchronize());
  auto got = check::from_dev(dout, (size_t)nTok * qd);
  std::vector<double> want;
  std::vector<char> nanRow;
  ref_attention(c, d, c.rows, q, scale, want, nanRow);
  const std::string base = "attn " + c.name + (c.fmt == KV_F16 ? " f16" : " f32") + (c.ownSeq ? " (rowsOwnSeq)" : "");
  compare_attention(base, c, got, want, nanRow);

  if (!c.graphRows.empty()) {
    // Capture once, then replay with new positions/sequences written into the same device arrays.
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CK(attention(dq, d.dK, d.dV, c.fmt, dout, nTok, c.nHeads, c.nKvHeads, c.hd, scale, c.bs, c.maxCtx, scratch,
                 st.sd(), s, c.ownSeq));
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    std::vector<int> pos2, seq2;
    for (auto& r : c.graphRows) { seq2.push_back(r.first); pos2.push_back(r.second); }
    CK(cudaMemcpy(st.positions, pos2.data(), pos2.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(st.seqIndex, seq2.data(), seq2.size() * 4, cudaMemcpyHostToDevice));
    check::poison(dout, (size_t)nTok * qd * 4);
    check::poison(scratch, sb);
    CK(cudaGraphLaunch(ge, s));
    CK(cudaStreamSynchronize(s));
    got = check::from_dev(dout, (size_t)nTok * qd);
    ref_attention(c, d, c.graphRows, q, scale, want, nanRow);
    compare_attention(base + " graph replay, new positions", c, got, want, nanRow);
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    CK(cudaStreamDestroy(s));
  }
  CK(cudaFree(dq));
  CK(cudaFree(dout));
  CK(cudaFree(scratch));
  CK(cudaFree(d.dK));
  CK(cudaFree(d.dV));
  st.free_all();
}

std::vector<std::pair<int, int>> prefill(int seq, int from, int n) {
  std::vector<std::pair<int, int>> v;
  for (int i = 0; i < n; i++) v.push_back({seq, from + i});
  return v;
}
std::vector<std::pair<int, int>> cat(std::initializer_list<std::vector<std::pair<int, int>>> parts) {
  std::vector<std::pair<int, int>> v;
  for (auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

void attention_cases() {
  using R = std::vector<std::pair<int, int>>;
  uint64_t seed = 1000;
  for (int fmt : {KV_F32, KV_F16}) {
    // TinyStories-260K shape: 8 heads / 4 kv heads / headDim 8
    run_attention({"8/4/8 bs16 ctx256 prefill+decode", 8, 4, 8, fmt, 16, 256, 4,
                   cat({prefill(0, 0, 10), R{{1, 100}, {2, 0}, {3, 255}}}), {}, 0, 2.f,
                   cat({prefill(0, 10, 10), R{{1, 101}, {2, 1}, {3, 7}}})},
                  seed++);
    // Llama-3-8B-like GQA
    run_attention({"32/8/128 bs16 ctx1024 mixed", 32, 8, 128, fmt, 16, 1024, 4,
                   cat({R{{0, 700}}, prefill(1, 500, 37), R{{2, 0}, {3, 1023}}}), {}, 0, 2.f, {}},
                  seed++);
    // 7B MHA: mixed step, prefill rows not aligned to the 16-row groups
    run_attention({"32/32/128 bs16 ctx1024 mixed", 32, 32, 128, fmt, 16, 1024, 3,
                   cat({R{{2, 900}}, prefill(0, 0, 41), R{{1, 1000}}, prefill(2, 901, 3)}), {}, 0, 1.f, {}},
                  seed++);
    run_attention({"16/16/64 bs32 ctx512", 16, 16, 64, fmt, 32, 512, 3,
                   cat({prefill(0, 100, 20), R{{1, 511}, {2, 64}}}), {}, 0, 3.f, {}},
                  seed++);
    run_attention({"16/4/64 bs8 ctx700", 16, 4, 64, fmt, 8, 700, 3,
                   cat({R{{1, 699}}, prefill(0, 250, 9), R{{2, 31}}}), {}, 0, 2.f, {}},
                  seed++);
    // generic head dims
    run_attention({"8/2/80 bs16 ctx600", 8, 2, 80, fmt, 16, 600, 2, cat({prefill(0, 590, 10), R{{1, 333}}}), {},
                   0, 2.f, {}},
                  seed++);
    run_attention({"6/3/96 bs16 ctx300", 6, 3, 96, fmt, 16, 300, 2, cat({R{{1, 299}}, prefill(0, 0, 5)}), {}, 0,
                   2.f, {}},
                  seed++);
    run_attention({"4/4/6 bs5 ctx300", 4, 4, 6, fmt, 5, 300, 2, cat({R{{0, 299}}, prefill(1, 40, 18)}), {}, 0,
                   2.f, {}},
                  seed++);
    run_attention({"4/2/2 bs7 ctx100", 4, 2, 2, fmt, 7, 100, 2, R{{0, 99}, {1, 0}, {1, 50}}, {}, 0, 2.f, {}},
                  seed++);
    run_attention({"4/4/256 bs16 ctx200", 4, 4, 256, fmt, 16, 200, 2, cat({R{{0, 199}}, prefill(1, 60, 17)}), {},
                   0, 1.f, {}},
                  seed++);
    run_attention({"4/1/200 bs16 ctx300 MQA", 4, 1, 200, fmt, 16, 300, 2, cat({R{{0, 260}}, prefill(1, 0, 8)}),
                   {}, 0, 1.f, {}},
                  seed++);
    // more than 16 q heads per kv head: head sub-blocks
    run_attention({"40/2/16 bs16 ctx300 (G=20)", 40, 2, 16, fmt, 16, 300, 2, cat({R{{0, 299}}, prefill(1, 3, 4)}),
                   {}, 0, 2.f, {}},
                  seed++);
    // invalid rows: table hole at seq 0 block 3 (positions 48..63), pos == maxCtx, pos < 0, seq < 0,
    // pos past a short block table (mbps 10 -> positions >= 160)
    run_attention({"8/4/8 bs16 ctx256 invalid rows", 8, 4, 8, fmt, 16, 256, 4,
                   R{{0, 10}, {0, 40}, {0, 60}, {0, 61}, {1, 256}, {2, -1}, {-1, 5}, {3, 150}, {3, 160}, {1, 159}},
                   {{0, 3}}, 10, 2.f, {}},
                  seed++);
  }
  // single-row launches (splits chosen in-kernel from the position): GQA, tiny heads
  for (int fmt : {KV_F32, KV_F16}) {
    run_attention({"8/4/8 bs16 ctx256 decode pos 255", 8, 4, 8, fmt, 16, 256, 2, {{1, 255}}, {}, 0, 2.f, {{0, 31}}},
                  seed++);
    run_attention({"8/4/8 bs16 ctx256 decode hole -> NaN", 8, 4, 8, fmt, 16, 256, 2, {{1, 200}}, {{1, 5}}, 0, 2.f,
                   {{1, 79}}},
                  seed++);
    run_attention({"32/8/128 bs16 ctx2048 decode pos 1999", 32, 8, 128, fmt, 16, 2048, 2, {{1, 1999}}, {}, 0, 2.f,
                   {{0, 33}}},
                  seed++);
    // register decode kernel variants: 2 and 3 (padded to 4) q heads per kv head, headDim 64, a table hole
    run_attention({"16/8/64 bs16 ctx700 decode pos 699", 16, 8, 64, fmt, 16, 700, 2, {{0, 699}}, {}, 0, 3.f,
                   {{1, 40}}},
                  seed++);
    run_attention({"24/8/128 bs8 ctx1024 decode pos 1023 (G=3)", 24, 8, 128, fmt, 8, 1024, 2, {{1, 1023}}, {}, 0,
                   2.f, {{0, 500}}},
                  seed++);
    run_attention({"16/16/64 bs16 ctx512 decode hole -> NaN", 16, 16, 64, fmt, 16, 512, 2, {{0, 300}}, {{0, 12}}, 0,
                   2.f, {{0, 191}}},
                  seed++);
    // several kv heads per decode block (contiguous row reads): headDim 64 and 128
    run_attention({"32/32/64 bs16 ctx4096 decode pos 3000", 32, 32, 64, fmt, 16, 4096, 1, {{0, 3000}}, {}, 0, 2.f,
                   {{0, 77}}},
                  seed++);
    run_attention({"32/16/128 bs16 ctx8192 decode pos 5000 (G=2)", 32, 16, 128, fmt, 16, 8192, 1, {{0, 5000}}, {},
                   0, 2.f, {{0, 8191}}},
                  seed++);
    // more than 4 q heads per kv head: staged kernel with in-kernel splits
    run_attention({"32/2/128 bs16 ctx1024 decode pos 900 (G=16)", 32, 2, 128, fmt, 16, 1024, 2, {{1, 900}}, {}, 0,
                   2.f, {{0, 5}}},
                  seed++);
  }
  // decode batches (rowsOwnSeq): one row per sequence through the register decode kernel, several splits
  // when few rows meet a long context, invalid rows -> NaN, graph replay with new positions; and the hint
  // given for rows of one sequence (slower there, still right)
  for (int fmt : {KV_F32, KV_F16}) {
    R many, many2;
    for (int i = 0; i < 64; i++) {
      many.push_back({i, (i * 37) % 160});
      many2.push_back({63 - i, (i * 53 + 7) % 160});
    }
    AttnSpec a{"32/32/128 bs16 ctx160 64 decode rows", 32, 32, 128, fmt, 16, 160, 64, many, {}, 0, 2.f, many2};
    a.ownSeq = true;
    run_attention(a, seed++);
    AttnSpec b{"32/8/128 bs16 ctx4096 3 decode rows (G=4)", 32, 8, 128, fmt, 16, 4096, 3, R{{0, 4000}, {1, 0}, {2, 2500}},
               {}, 0, 2.f, R{{2, 17}, {0, 4095}, {1, 1000}}};
    b.ownSeq = true;
    run_attention(b, seed++);
    AttnSpec c{"16/8/64 bs16 ctx512 decode rows, hole -> NaN", 16, 8, 64, fmt, 16, 512, 3,
               R{{0, 300}, {1, 5}, {2, 511}, {1, 512}, {-1, 3}}, {{0, 12}}, 0, 2.f, {}};
    c.ownSeq = true;
    run_attention(c, seed++);
    AttnSpec d{"32/32/128 bs16 ctx1024 prefill rows with the hint", 32, 32, 128, fmt, 16, 1024, 2,
               cat({prefill(0, 600, 20), R{{1, 3}}}), {}, 0, 2.f, {}};
    d.ownSeq = true;
    run_attention(d, seed++);
  }
  if (!g_small) {
    // many kv heads: few splits, several 256-position windows per decode block
    run_attention({"64/64/64 bs16 ctx8192 decode pos 8000", 64, 64, 64, KV_F16, 16, 8192, 1, {{0, 8000}}, {}, 0, 2.f,
                   {{0, 3000}}},
                  seed++);
  }
  if (g_small) return;
  // decode, nTokens 1, 7B shape: positions spanning several splits, tiny, and the last one
  for (int fmt : {KV_F16, KV_F32}) {
    run_attention({"32/32/128 bs16 ctx4096 decode pos 700", 32, 32, 128, fmt, 16, 4096, 2, {{1, 700}}, {}, 0, 2.f,
                   {{0, 4095}}},
                  seed++);
    run_attention({"32/32/128 bs16 ctx4096 decode pos 0", 32, 32, 128, fmt, 16, 4096, 2, {{0, 0}}, {}, 0, 2.f,
                   {{1, 1}}},
                  seed++);
  }
  // larger prefill: 2 sequences x 100 rows + a decode row, 7B shape, f16 (graph replay with a shifted chunk)
  run_attention({"32/32/128 bs16 ctx1024 prefill 2x100 + decode", 32, 32, 128, KV_F16, 16, 1024, 3,
                 cat({prefill(0, 0, 100), prefill(1, 400, 100), R{{2, 1000}}}), {}, 0, 1.f,
                 cat({prefill(0, 100, 100), prefill(1, 500, 100), R{{2, 1001}}})},
                seed++);
}

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
