// Weight preparation part of the GEMV check (see gemv_check.cu): repack_q8_0 / repack_q4_0 (exact) and
// quantize_weight (exact against a CPU quantizer + quantization error bounds).
#include "gemv_check.cuh"

#include <cstring>
#include <string>

using namespace llama_ts;

namespace gemv_check {

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

}  // namespace gemv_check
