// Helpers for the standalone kernel checks (checks/*_check.cu): each check runs kernels on seeded
// random inputs against a CPU reference in double precision, prints NMSE per case and a timing table,
// and exits non-zero on any failure. Built and run on the GPU machine by bench/cuda_device.sh.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cmath>
#include <vector>
#include <algorithm>

#define CK(call)                                                                          \
  do {                                                                                    \
    cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(2);                                                                       \
    }                                                                                     \
  } while (0)

namespace check {

static int g_failures = 0;

// xorshift-based deterministic uniform in [-1, 1)
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  float next() {
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    return (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
  }
};

// Code (0..15) of element i of a row of 4-bit blocks (kernels.cuh WF_I4, ggml q4_0 order): 16 bytes per 32
// elements, element i in byte i % 16 of its block, low nibble for i % 32 < 16, else high.
inline int q4_code(const uint8_t* row, size_t i) {
  const uint8_t b = row[(i / 32) * 16 + i % 16];
  return (i % 32) < 16 ? (b & 15) : (b >> 4);
}

inline std::vector<float> rand_vec(size_t n, uint64_t seed, float scale = 1.f) {
  Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = r.next() * scale;
  return v;
}

inline double nmse(const float* got, const double* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!std::isfinite(got[i])) return INFINITY;
    double d = got[i] - want[i];
    num += d * d;
    den += want[i] * want[i];
  }
  return den == 0 ? num : num / den;
}

inline void expect(const char* what, double err, double tol) {
  bool ok = err <= tol;
  std::printf("%-60s nmse %.3e (tol %.0e) %s\n", what, err, tol, ok ? "ok" : "FAIL");
  if (!ok) g_failures++;
}

template <class T>
T* to_dev(const std::vector<T>& h) {
  T* d;
  CK(cudaMalloc(&d, h.size() * sizeof(T) + 16));
  CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

template <class T>
std::vector<T> from_dev(const T* d, size_t n) {
  std::vector<T> h(n);
  CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// Fill device memory with a NaN pattern so unwritten outputs fail the check.
inline void poison(void* d, size_t bytes) { CK(cudaMemset(d, 0xFF, bytes)); }

// Median time in microseconds of `reps` runs of fn() (after `warm` warm-up runs), timed with events.
template <class F>
double time_us(F fn, int reps = 50, int warm = 5) {
  for (int i = 0; i < warm; i++) fn();
  CK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> t(reps);
  for (int i = 0; i < reps; i++) {
    CK(cudaEventRecord(a));
    fn();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  std::sort(t.begin(), t.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return t[reps / 2] * 1000.0;
}

inline int finish(const char* name) {
  std::printf("%s: %s (%d failures)\n", name, g_failures ? "FAILED" : "all ok", g_failures);
  return g_failures ? 1 : 0;
}

}  // namespace check
