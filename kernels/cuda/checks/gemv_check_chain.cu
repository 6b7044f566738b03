// Chained GEMVs (gemv_chain, gemv_chain.cu) in the GEMV check: a decoder-layer sequence run one launch per
// GEMV and as one chain must give the same bits, also when chains follow each other without host syncs and
// under CUDA-graph replay (the grid barrier's state is reused); and the cases a chain declines.
#include "gemv_check.cuh"

#include <cstring>

using namespace llama_ts;

namespace gemv_check {

namespace {

struct Buf {
  float* d = nullptr;
  size_t n = 0;
  explicit Buf(size_t n_) : n(n_) { CK(cudaMalloc(&d, n * 4)); }
  ~Buf() { CK(cudaFree(d)); }
  std::vector<float> get() const { return check::from_dev(d, n); }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

}  // namespace

// wo (h += Wo a) -> gate/up (normed h) -> w2 (h += W2 g) -> QKV (normed h, three weights) -> LM head (normed
// h, odd row count): the batch-1 decode order, in format fmt.
void test_chain(int fmt, int group, uint64_t seed) {
  const int dim = 512, hid = 1408, kvd = 128, vocab = 999;
  const bool q = fmt == WF_I8 || fmt == WF_I4;
  const int g1 = q ? group : 0, g2 = q ? (fmt == WF_I8 && group == dim ? hid : group) : 0;
  HostW wo = make_weight(fmt, dim, dim, g1, seed), w1 = make_weight(fmt, hid, dim, g1, seed + 1),
        w3 = make_weight(fmt, hid, dim, g1, seed + 2), w2 = make_weight(fmt, dim, hid, g2, seed + 3),
        wq = make_weight(fmt, dim, dim, g1, seed + 4), wk = make_weight(fmt, kvd, dim, g1, seed + 5),
        wv = make_weight(fmt, kvd, dim, g1, seed + 6), wl = make_weight(fmt, vocab, dim, g1, seed + 7);
  DevW d[8];
  const HostW* hw[8] = {&wo, &w1, &w3, &w2, &wq, &wk, &wv, &wl};
  for (int i = 0; i < 8; i++) d[i].upload(*hw[i]);
  std::vector<float> a0 = check::rand_vec(dim, seed + 10), h0 = check::rand_vec(dim, seed + 11);
  std::vector<float> n1 = check::rand_vec(dim, seed + 12), n2 = check::rand_vec(dim, seed + 13);
  for (auto& v : n1) v = 1.f + 0.5f * v;
  for (auto& v : n2) v = 1.f + 0.5f * v;
  float* da = check::to_dev(a0);
  float* dh0 = check::to_dev(h0);
  float* dn1 = check::to_dev(n1);
  float* dn2 = check::to_dev(n2);
  Buf h(dim), g(hid), qo(dim), ko(kvd), vo(kvd), lo(vocab);

  GemvStep st[5] = {};
  st[0].kind = GEMV_PLAIN; st[0].x = da; st[0].ldx = dim; st[0].w[0] = d[0].ref; st[0].y[0] = h.d;
  st[0].ldy[0] = dim; st[0].n = 1; st[0].res = h.d; st[0].eps = 1e-5f;
  st[1].kind = GEMV_GATEUP; st[1].x = h.d; st[1].ldx = dim; st[1].w[0] = d[1].ref; st[1].w[1] = d[2].ref;
  st[1].y[0] = g.d; st[1].ldy[0] = hid; st[1].n = 2; st[1].normW = dn1; st[1].eps = 1e-5f;
  st[2].kind = GEMV_PLAIN; st[2].x = g.d; st[2].ldx = hid; st[2].w[0] = d[3].ref; st[2].y[0] = h.d;
  st[2].ldy[0] = dim; st[2].n = 1; st[2].res = h.d; st[2].eps = 1e-5f;
  st[3].kind = GEMV_MULTI; st[3].x = h.d; st[3].ldx = dim; st[3].n = 3; st[3].normW = dn2; st[3].eps = 1e-5f;
  for (int i = 0; i < 3; i++) st[3].w[i] = d[4 + i].ref;
  st[3].y[0] = qo.d; st[3].y[1] = ko.d; st[3].y[2] = vo.d;
  st[4].kind = GEMV_PLAIN; st[4].x = h.d; st[4].ldx = dim; st[4].w[0] = d[7].ref; st[4].y[0] = lo.d;
  st[4].ldy[0] = vocab; st[4].n = 1; st[4].normW = dn1; st[4].eps = 1e-5f;

  auto reset = [&] {
    CK(cudaMemcpyAsync(h.d, dh0, dim * 4, cudaMemcpyDeviceToDevice, 0));
    check::poison(g.d, hid * 4);
  };
  auto outputs = [&] {
    CK(cudaDeviceSynchronize());
    std::vector<std::vector<float>> o = {h.get(), g.get(), qo.get(), ko.get(), vo.get(), lo.get()};
    return o;
  };
  // one launch per GEMV
  reset();
  GemvArgs a0a{da, dim, 1, d[0].ref, h.d, dim, h.d, nullptr, 1e-5f};
  CK(gemv(a0a, 0));
  CK(gemv_gateup(h.d, dim, 1, d[1].ref, d[2].ref, g.d, hid, dn1, 1e-5f, 0));
  GemvArgs a2{g.d, hid, 1, d[3].ref, h.d, dim, h.d, nullptr, 1e-5f};
  CK(gemv(a2, 0));
  WeightRef wqkv[3] = {d[4].ref, d[5].ref, d[6].ref};
  float* ys[3] = {qo.d, ko.d, vo.d};
  CK(gemv_multi(h.d, dim, 1, wqkv, ys, 3, dn2, 1e-5f, 0));
  GemvArgs a4{h.d, dim, 1, d[7].ref, lo.d, vocab, nullptr, dn1, 1e-5f};
  CK(gemv(a4, 0));
  const auto want = outputs();

  char nm[160];
  auto expect_same = [&](const char* how) {
    const auto got = outputs();
    bool ok = true;
    for (size_t i = 0; i < want.size(); i++) ok = ok && same_bits(got[i], want[i]);
    std::snprintf(nm, sizeof nm, "gemv_chain %s g=%d, 5 steps, %s: same bits", fmt_name(fmt), g1, how);
    std::printf("%-60s %s\n", nm, ok ? "ok" : "FAIL");
    if (!ok) check::g_failures++;
  };
  reset();
  CK(gemv_chain(st, 5, 0));
  expect_same("one chain");
  for (int i = 0; i < 20; i++) {  // back to back, no host sync: the barrier state is reused
    reset();
    CK(gemv_chain(st, 5, 0));
    CK(gemv_chain(st + 1, 2, 0));  // and a two-step chain between them (gate/up, w2 again)
    CK(gemv_chain(st + 3, 2, 0));
  }
  reset();
  CK(gemv_chain(st, 5, 0));
  expect_same("after 60 chains without syncs");
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t gr;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  CK(cudaMemcpyAsync(h.d, dh0, dim * 4, cudaMemcpyDeviceToDevice, s));
  CK(gemv_chain(st, 5, s));
  CK(cudaStreamEndCapture(s, &gr));
  CK(cudaGraphInstantiate(&ge, gr, 0));
  for (int i = 0; i < 10; i++) CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  expect_same("graph replayed 10 times");
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(gr));
  CK(cudaStreamDestroy(s));

  for (auto& x : d) x.free_();
  CK(cudaFree(da)); CK(cudaFree(dh0)); CK(cudaFree(dn1)); CK(cudaFree(dn2));
}

// Steps a chain declines (cudaErrorNotSupported, nothing launched, no sticky error).
void test_chain_declines() {
  HostW a = make_weight(WF_F16, 64, 256, 0, 71), b = make_weight(WF_I8, 64, 256, 32, 72),
        c = make_weight(WF_F16, 64, 100, 0, 73);
  DevW da, db, dc;
  da.upload(a); db.upload(b); dc.upload(c);
  Buf x(512), y(512);
  GemvStep st[2] = {};
  for (auto& s : st) {
    s.kind = GEMV_PLAIN; s.x = x.d; s.ldx = 256; s.w[0] = da.ref; s.y[0] = y.d; s.ldy[0] = 64; s.n = 1;
    s.eps = 1e-5f;
  }
  auto api = [](const char* what, cudaError_t got) {
    const bool ok = got == cudaErrorNotSupported;
    std::printf("%-60s %s (%s)\n", what, ok ? "ok" : "FAIL", cudaGetErrorString(got));
    if (!ok) check::g_failures++;
  };
  api("gemv_chain of one step declined", gemv_chain(st, 1, 0));
  st[1].w[0] = db.ref;
  api("gemv_chain across weight formats declined", gemv_chain(st, 2, 0));
  st[1].w[0] = da.ref;
  st[1].x = x.d + 1;
  api("gemv_chain with x not 16-byte aligned declined", gemv_chain(st, 2, 0));
  st[1].x = x.d;
  st[1].w[0] = dc.ref;
  st[1].ldx = 100;
  api("gemv_chain with a scalar-path weight declined", gemv_chain(st, 2, 0));
  const bool ok = cudaDeviceSynchronize() == cudaSuccess && cudaGetLastError() == cudaSuccess;
  std::printf("%-60s %s\n", "gemv_chain: no sticky error afterwards", ok ? "ok" : "FAIL");
  if (!ok) check::g_failures++;
  da.free_(); db.free_(); dc.free_();
}

}  // namespace gemv_check
