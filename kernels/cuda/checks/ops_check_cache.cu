// Paged KV cache part of the ops check (see ops_check.cu): kv_write and rope_kv_write into f32 / f16 caches,
// and attention (f32 / f16 / int8 caches, prefill and decode rows, + CUDA-graph replay with new step data),
// against CPU double-precision references.
#include "ops_check.cuh"
#include <cstring>
#include <string>

using namespace llama_ts;
using check::Rng;

namespace ops_check {
namespace {

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

}  // namespace

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

template void run_kv_case<float>(int fmt, int bs, int nHeads, int nKvHeads, int hd, int style, bool fused);
template void run_kv_case<__half>(int fmt, int bs, int nHeads, int nKvHeads, int hd, int style, bool fused);

namespace {

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

// attention() with RoPE and the cache write fused in (AttnRope) against rope_kv_write then attention(): the
// same cache bits and the same output bits (the fused kernel rotates q and k in registers with the same
// double-precision math); rows the fused path does not take are refused with cudaErrorNotSupported.
void run_attention_rope(const AttnSpec& c, int style, uint64_t seed) {
  g_cases++;
  AttnData d = make_attn_data(c, seed);
  const int nTok = (int)c.rows.size(), qd = c.nHeads * c.hd;
  const size_t cacheBytes = (size_t)d.nBlocks * c.bs * d.kvDim * (c.fmt == KV_F16 ? 2 : 4);
  const float scale = 1.0f / std::sqrt((float)c.hd);
  auto q = check::rand_vec((size_t)nTok * qd, seed + 11, c.qScale);
  auto k = check::rand_vec((size_t)nTok * d.kvDim, seed + 12, c.qScale);
  auto v = check::rand_vec((size_t)nTok * d.kvDim, seed + 13);
  std::vector<float> invFreq(c.hd / 2);
  for (int j = 0; j < c.hd / 2; j++) invFreq[j] = (float)std::pow(10000.0, -2.0 * j / c.hd);
  std::vector<int> pos, seq;
  for (auto& r : c.rows) { seq.push_back(r.first); pos.push_back(r.second); }
  DevStep st = make_step({}, pos, seq, {}, d.bt, d.mbps);
  float *qa = check::to_dev(q), *ka = check::to_dev(k), *qb = check::to_dev(q), *kb = check::to_dev(k);
  float *dv = check::to_dev(v), *df = check::to_dev(invFreq);
  void *cKb, *cVb;
  CK(cudaMalloc(&cKb, cacheBytes));
  CK(cudaMalloc(&cVb, cacheBytes));
  CK(cudaMemcpy(cKb, d.dK, cacheBytes, cudaMemcpyDeviceToDevice));
  CK(cudaMemcpy(cVb, d.dV, cacheBytes, cudaMemcpyDeviceToDevice));
  float *outA, *outB, *scratch;
  const size_t ob = (size_t)nTok * qd * 4, sb = attention_scratch_bytes(nTok, c.nHeads, c.hd, c.maxCtx);
  CK(cudaMalloc(&outA, ob));
  CK(cudaMalloc(&outB, ob));
  CK(cudaMalloc(&scratch, sb));
  check::poison(outA, ob);
  check::poison(outB, ob);
  // A: the separate kernels
  CK(rope_kv_write(qa, ka, dv, nTok, c.nHeads, c.nKvHeads, c.hd, style, df, d.dK, d.dV, c.fmt, c.bs, st.sd(), 0));
  CK(attention(qa, d.dK, d.dV, c.fmt, outA, nTok, c.nHeads, c.nKvHeads, c.hd, scale, c.bs, c.maxCtx, scratch,
               st.sd(), 0, c.ownSeq));
  // B: fused
  const AttnRope rope{kb, dv, df, style};
  CK(attention(qb, cKb, cVb, c.fmt, outB, nTok, c.nHeads, c.nKvHeads, c.hd, scale, c.bs, c.maxCtx, scratch,
               st.sd(), 0, c.ownSeq, nullptr, nullptr, &rope));
  CK(cudaDeviceSynchronize());
  const std::string base = "attn+rope " + c.name + (c.fmt == KV_F16 ? " f16" : " f32") +
                           (style == ROPE_HALF ? " half" : " interleaved");
  auto bytes = [](const void* p, size_t n) {
    std::vector<unsigned char> h(n);
    CK(cudaMemcpy(h.data(), p, n, cudaMemcpyDeviceToHost));
    return h;
  };
  expect_true((base + ": K cache equals rope_kv_write's").c_str(), bytes(cKb, cacheBytes) == bytes(d.dK, cacheBytes));
  expect_true((base + ": V cache equals rope_kv_write's").c_str(), bytes(cVb, cacheBytes) == bytes(d.dV, cacheBytes));
  expect_true((base + ": output bits equal the separate kernels'").c_str(), bytes(outA, ob) == bytes(outB, ob));
  expect_true((base + ": q and k left unrotated").c_str(),
              check::from_dev(qb, q.size()) == q && check::from_dev(kb, k.size()) == k);
  for (float* p : {qa, ka, qb, kb, dv, df, outA, outB, scratch}) CK(cudaFree(p));
  CK(cudaFree(cKb));
  CK(cudaFree(cVb));
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

}  // namespace

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
  // RoPE + cache write fused into the decode kernel: one row (splits merged in-kernel), GQA 2 and 4, both
  // RoPE styles, decode rows of distinct sequences with an invalid row and a table hole
  run_attention_rope({"32/32/128 bs16 ctx1024 decode pos 700", 32, 32, 128, KV_F16, 16, 1024, 2, {{1, 700}}, {}, 0,
                      2.f, {}},
                     ROPE_HALF, seed++);
  run_attention_rope({"16/8/64 bs16 ctx512 decode pos 40 (G=2)", 16, 8, 64, KV_F32, 16, 512, 2, {{0, 40}}, {}, 0,
                      2.f, {}},
                     ROPE_INTERLEAVED, seed++);
  run_attention_rope({"16/8/64 bs16 ctx512 decode pos 5 (G=2)", 16, 8, 64, KV_F16, 16, 512, 2, {{1, 5}}, {}, 0,
                      2.f, {}},
                     ROPE_HALF, seed++);
  {
    AttnSpec r{"32/8/128 bs16 ctx4096 decode rows (G=4), hole, invalid", 32, 8, 128, KV_F16, 16, 4096, 4,
               {{0, 4000}, {1, 0}, {2, 2500}, {3, 300}, {1, 4096}}, {{3, 2}}, 0, 2.f, {}};
    r.ownSeq = true;
    run_attention_rope(r, ROPE_INTERLEAVED, seed++);
    r.fmt = KV_F32;
    run_attention_rope(r, ROPE_HALF, seed++);
  }
  {
    // refused before anything launches: prefill rows (no hint), head dim 80
    float* dummy;
    CK(cudaMalloc(&dummy, 1 << 20));
    const AttnRope rope{dummy, dummy, dummy, ROPE_HALF};
    StepDev sd{};
    auto refused = [&](const char* what, cudaError_t e) {
      expect_true(what, e == cudaErrorNotSupported);
    };
    refused("attention with rope: 3 prefill rows refused",
            attention(dummy, dummy, dummy, KV_F16, dummy, 3, 8, 8, 64, 0.125f, 16, 64, dummy, sd, 0, false, nullptr,
                      nullptr, &rope));
    refused("attention with rope: head dim 80 refused",
            attention(dummy, dummy, dummy, KV_F16, dummy, 1, 8, 8, 80, 0.125f, 16, 64, dummy, sd, 0, false, nullptr,
                      nullptr, &rope));
    expect_true("attention with rope: no sticky error", cudaDeviceSynchronize() == cudaSuccess &&
                                                           cudaGetLastError() == cudaSuccess);
    CK(cudaFree(dummy));
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

}  // namespace ops_check
