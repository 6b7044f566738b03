// Decode-batch GEMM for int8 per-channel weights (contract: kernels.cuh gemm_rows_*), the path gemm() takes
// for 1..64 activation rows:
//   part[z][r][j] = scale[j] * sum_{i in k-range z} f16(x[r*ldx + i]) * q[j, i]     (then summed over z)
//
// Why: the 128 x 128-tile tensor-core GEMM (gemm.cu) streams a 9..64-row batch's int8 weights at only
// 0.5-0.75 TB/s (latency-bound tile loop, two 4 KB stages in flight per SM). Here the weights go straight
// from global memory into mma fragments in registers, several 64-wide k-segments ahead (like the GEMV), and
// the activations wait in shared memory:
//   * grid (gx, R): blockIdx.y = k-range z of kb columns; the block first converts x[:, range] to f16
//     into shared memory (one slab row per activation row, zero rows up to the 8-row n-tile), then each of
//     its 16 warps takes 16-row weight groups g = blockIdx.x * 16 + warp, + gx * 16, ...
//   * m16n8k16 f16 mma, A = 16 weight rows x 16 k-slots, B = 16 k-slots x 8 activation rows. Lane (g, q)
//     (g = lane / 4, q = lane % 4) loads 16 contiguous bytes of weight rows g and g + 8 at column
//     64s + 16q of segment s; byte 4j + e of them is k-slot {2q, 2q+1, 2q+8, 2q+9}[e] of mma step j (0..3).
//     Any permutation of k applied to both operands leaves the dot products unchanged, so B takes the same
//     one: x[n][64s + 16q + 4j + 0..3] are exactly b0 (slots 2q, 2q+1) and b1 (slots 2q+8, 2q+9) of lane
//     (n, q) in step j, read as two 16-byte shared loads per n-tile per segment.
//   * int8 -> f16 exactly (byte ^ 0x80 in the mantissa of 1024, minus 1152); the row's f16 scale multiplies
//     the f32 sum once at the end; partial sums per k-range go to the workspace and rows_reduce_kernel adds
//     them in a fixed order (deterministic), plus res, or as silu(gate) * up for gate/up.
//   * Up to 3 weights of the same k in one launch (QKV, gate/up): their row groups are one list.
//   * The k-range width kb (a multiple of 64, 512..1536) is planned per call (rows_plan): a warp's work is
//     ceil(groups / warps per range) x kb / 64 segments, so kb trades load balance (a 4096-row weight in
//     1024-wide ranges fills only 64 SMs: 256 groups x 4 ranges) against the partial sums' traffic and the
//     time a block spends staging x before its first mma.
//   * Programmatic dependent launch: the first segments' weights are loaded before griddepcontrol.wait; the
//     reduce kernel is PDL-launched too (it waits for the GEMM's completion, its launch overlaps it).
// Requirements (gemm_rows_usable): WF_I8 with group == k (per channel), k % 64 == 0, q 16-byte aligned, x
// 16-byte aligned with ldx % 4 == 0, 1 <= nRows <= 64, workspace of gemm_rows_workspace_bytes.
#include "kernels.cuh"
#include "device_util.cuh"

#include <algorithm>
#include <cstdlib>

namespace llama_ts {
namespace {

constexpr int SK_KB_MIN = 512;   // k-range widths the planner may choose (multiples of 64)
constexpr int SK_KB_MAX = 1536;
constexpr int SK_WARPS = 16;     // warps per block
constexpr int SK_D = 4;          // segments of weights in flight per warp
constexpr int SK_MAX_ROWS = 64;  // activation rows (8 n-tiles of 8)
// bytes per slab row: 2 * kb + 16 (= 16 x an odd number as kb % 64 == 0) -> conflict-free 16-byte loads
__host__ __device__ constexpr int slab_stride(int kb) { return kb * 2 + 16; }

// Up to 3 weights of the same k over one x (QKV; gate/up): their 16-row groups are numbered one after the
// other (weight i owns groups g0[i] .. g0[i+1]-1) and its partial sums go to its own part[i][z][r][j].
struct RowsW {
  const int8_t* q;
  const __half* sc;
  int m;
  int g0;  // first global group of this weight
  float* part;
};
struct RowsParams {
  const float* x;
  int ldx, nRows, k, n, groups;
  int kb;  // k-range width (multiple of 64); blockIdx.y = range
  RowsW w[3];
};

__device__ __forceinline__ int weight_of(const RowsParams& p, int grp) {
  return (p.n > 2 && grp >= p.w[2].g0) ? 2 : (p.n > 1 && grp >= p.w[1].g0) ? 1 : 0;
}

template <int NT>
__global__ void __launch_bounds__(SK_WARPS * 32, 1) gemm_rows_i8_kernel(const __grid_constant__ RowsParams p) {
  extern __shared__ __align__(16) unsigned char slab[];  // [NT * 8][slab_stride(kb)] bytes of f16
  const float* __restrict__ x = p.x;
  const int ldx = p.ldx, nRows = p.nRows, k = p.k;
  const int z = blockIdx.y;
  const int k0 = z * p.kb;
  const int stride = slab_stride(p.kb);
  const int kLen = min(p.kb, k - k0);  // multiple of 64
  const int nseg = kLen >> 6;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, q = lane & 3;
  const int groups = p.groups;
  const int gstride = gridDim.x * SK_WARPS;
  const int first = blockIdx.x * SK_WARPS + warp;

  // ---- weight prefetch: load cursor (lg, ls) runs SK_D segments ahead of the consume cursor ----
  uint4 wv[SK_D][2];
  int lg = first, ls = 0;
  auto load = [&](uint4(&w)[2]) {
    w[0] = w[1] = make_uint4(0u, 0u, 0u, 0u);
    if (lg < groups) {
      const RowsW& W = p.w[weight_of(p, lg)];
      const int r0 = (lg - W.g0) * 16 + g;
      const size_t off = (size_t)k0 + (size_t)ls * 64 + (size_t)q * 16;
      if (r0 < W.m) w[0] = ld_stream16(W.q + (size_t)r0 * k + off);
      if (r0 + 8 < W.m) w[1] = ld_stream16(W.q + (size_t)(r0 + 8) * k + off);
    }
    if (++ls == nseg) {
      ls = 0;
      lg += gstride;
    }
  };
#pragma unroll
  for (int j = 0; j < SK_D; j++) load(wv[j]);

  // x and the workspace belong to earlier kernels of the stream
  pdl_enter();

  // ---- stage x[:, k0 .. k0 + kLen) as f16; rows nRows .. NT*8-1 are zeros. SU loads in flight per thread
  // (x comes from L2: one load at a time made staging latency-bound, ~6 us for 64 rows x 1408 columns) ----
  {
    constexpr int SU = 8;
    const int c4n = kLen >> 2;  // float4 chunks per row
    const int total = NT * 8 * c4n;
    for (int i0 = threadIdx.x; i0 < total; i0 += SU * blockDim.x) {
      float4 v[SU];
#pragma unroll
      for (int u = 0; u < SU; u++) {
        const int i = i0 + u * blockDim.x, n = i / c4n, c = i - n * c4n;
        v[u] = (i < total && n < nRows) ? *reinterpret_cast<const float4*>(x + (size_t)n * ldx + k0 + 4 * c)
                                        : make_float4(0.f, 0.f, 0.f, 0.f);
      }
#pragma unroll
      for (int u = 0; u < SU; u++) {
        const int i = i0 + u * blockDim.x, n = i / c4n, c = i - n * c4n;
        if (i < total) {
          __half2 a = __floats2half2_rn(v[u].x, v[u].y), b = __floats2half2_rn(v[u].z, v[u].w);
          *reinterpret_cast<uint2*>(slab + (size_t)n * stride + 8 * c) =
              make_uint2(*reinterpret_cast<uint32_t*>(&a), *reinterpret_cast<uint32_t*>(&b));
        }
      }
    }
  }
  __syncthreads();

  // ---- consume: one segment per item, SK_D items per round (register slots stay compile-time) ----
  float acc[NT][4];
#pragma unroll
  for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
  int cg = first, cs = 0;
  const unsigned char* xl = slab + (size_t)g * stride + q * 32;  // + n-tile * 8 rows + segment * 128 B
  while (cg < groups) {
#pragma unroll
    for (int j = 0; j < SK_D; j++) {
      if (cg < groups) {
        const uint32_t w0[4] = {wv[j][0].x, wv[j][0].y, wv[j][0].z, wv[j][0].w};
        const uint32_t w1[4] = {wv[j][1].x, wv[j][1].y, wv[j][1].z, wv[j][1].w};
        uint32_t a0[4], a1[4], a2[4], a3[4];
        const __half2 bias = __float2half2_rn(1152.f);  // int8 ^ 0x80 = b + 128; 1024 + 128
#pragma unroll
        for (int s = 0; s < 4; s++) {
          biased_bytes_to_h2(w0[s] ^ 0x80808080u, bias, a0[s], a2[s]);  // row g: slots (2q, 2q+1), (2q+8, 2q+9)
          biased_bytes_to_h2(w1[s] ^ 0x80808080u, bias, a1[s], a3[s]);  // row g + 8
        }
        load(wv[j]);  // refill this slot SK_D segments ahead
        const unsigned char* xs = xl + cs * 128;
#pragma unroll
        for (int t = 0; t < NT; t++) {
          const uint4 v0 = *reinterpret_cast<const uint4*>(xs + (size_t)t * 8 * stride);
          const uint4 v1 = *reinterpret_cast<const uint4*>(xs + (size_t)t * 8 * stride + 16);
          const uint32_t f0[4] = {a0[0], a1[0], a2[0], a3[0]}, f1[4] = {a0[1], a1[1], a2[1], a3[1]};
          const uint32_t f2[4] = {a0[2], a1[2], a2[2], a3[2]}, f3[4] = {a0[3], a1[3], a2[3], a3[3]};
          mma_16816(acc[t], f0, v0.x, v0.y);
          mma_16816(acc[t], f1, v0.z, v0.w);
          mma_16816(acc[t], f2, v1.x, v1.y);
          mma_16816(acc[t], f3, v1.z, v1.w);
        }
        if (++cs == nseg) {
          // epilogue of group cg: c0 = (row g, col 2q), c1 = (g, 2q+1), c2 = (g+8, 2q), c3 = (g+8, 2q+1)
          const RowsW& W = p.w[weight_of(p, cg)];
          const int m = W.m;
          const int r0 = (cg - W.g0) * 16 + g, r1 = r0 + 8;
          const float s0 = r0 < m ? __half2float(W.sc[r0]) : 0.f;
          const float s1 = r1 < m ? __half2float(W.sc[r1]) : 0.f;
          float* pz = W.part + (size_t)z * nRows * m;
#pragma unroll
          for (int t = 0; t < NT; t++) {
            const int n0 = t * 8 + 2 * q, n1 = n0 + 1;
            if (n0 < nRows) {
              if (r0 < m) pz[(size_t)n0 * m + r0] = acc[t][0] * s0;
              if (r1 < m) pz[(size_t)n0 * m + r1] = acc[t][2] * s1;
            }
            if (n1 < nRows) {
              if (r0 < m) pz[(size_t)n1 * m + r0] = acc[t][1] * s0;
              if (r1 < m) pz[(size_t)n1 * m + r1] = acc[t][3] * s1;
            }
            acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.f;
          }
          cs = 0;
          cg += gstride;
        }
      }
    }
  }
}

int g_rowsOn = -1;  // -1: not read yet; env LLAMA_TS_GEMM_NO_ROWS=1 turns this path off (A/B)
int g_rowsKb = -1;  // -1: not read yet; 0: planned per call; else a fixed k-range width (env LLAMA_TS_GEMM_ROWS_KB)

int fixed_kb() {
  if (g_rowsKb < 0) {
    const char* e = std::getenv("LLAMA_TS_GEMM_ROWS_KB");
    const int v = e ? std::atoi(e) : 0;
    g_rowsKb = (v >= SK_KB_MIN && v <= SK_KB_MAX && v % 64 == 0) ? v : 0;
  }
  return g_rowsKb;
}

// Most k-ranges any plan gives for width k (sizes the workspace).
int max_ranges(int k) { return (k + SK_KB_MIN - 1) / SK_KB_MIN; }

struct RowsPlan {
  int kb, R, gx;
};

// Pick kb for one launch with a cost model in us, fitted (rms error 3 us) to gemm_check's table of the
// four LLaMA-7B layer launches at 16 and 64 rows and widths 512..1536 on an H100: 1.02 per round of the
// busiest warp (one 1 KB weight segment each), + 0.064 per KB of x a block stages (NT * 8 rows x kb f32;
// measured before the staging loop kept 8 loads in flight) + 0.375 per MB of partial sums written and read
// back (R x nRows x m x 8 bytes). Ties keep the narrower range. k <= SK_KB_MIN: one range of k.
RowsPlan rows_plan(int groups, int k, int nRows, long long mTotal, int nt, int sms) {
  auto make = [&](int kb) {
    RowsPlan pl;
    pl.kb = kb;
    pl.R = (k + kb - 1) / kb;
    pl.gx = std::min(std::max(1, sms / pl.R), (groups + SK_WARPS - 1) / SK_WARPS);
    return pl;
  };
  if (k <= SK_KB_MIN) return make(k);
  if (const int f = fixed_kb()) return make(std::min(f, (k + 63) / 64 * 64));
  RowsPlan best = make(SK_KB_MIN);
  double bestCost = 1e30;
  for (int kb = SK_KB_MIN; kb <= SK_KB_MAX; kb += 64) {
    const RowsPlan pl = make(kb);
    if (pl.R > max_ranges(k)) continue;
    const int warps = pl.gx * SK_WARPS;
    const double rounds = (double)((groups + warps - 1) / warps) * (kb / 64);
    const double cost = rounds * 1.02 + nt * 8.0 * kb * 4e-3 * 0.064 + (double)pl.R * nRows * mTotal * 8e-6 * 0.375;
    if (cost < bestCost - 1e-9) {
      bestCost = cost;
      best = pl;
    }
    if (kb >= k) break;
  }
  return best;
}

// y_i[r*ldy_i + j] = (res_i ? res_i[..] : 0) + sum_z part_i[z][r][j] for each weight i, z in order; gate/up
// (n == 2): y_0 = silu(sum_z part_0) * sum_z part_1, as ops.cu's silu_mul.
struct ReduceParams {
  int n, R, nRows, gateup;
  float* y[3];
  int ldy[3];
  const float* res[3];
  const float* part[3];
  int m[3];
  long long end[3];  // cumulative nRows * m_i
};

__global__ void __launch_bounds__(256) rows_reduce_kernel(const __grid_constant__ ReduceParams p) {
  pdl_enter();
  const long long total = p.end[p.gateup ? 0 : p.n - 1];
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)gridDim.x * blockDim.x) {
    const int i = p.gateup ? 0 : (p.n > 2 && idx >= p.end[1]) ? 2 : (p.n > 1 && idx >= p.end[0]) ? 1 : 0;
    const long long j = idx - (i ? p.end[i - 1] : 0);
    const int m = p.m[i];
    const int r = (int)(j / m), c = (int)(j - (long long)r * m);
    const size_t zs = (size_t)p.nRows * m;
    if (p.gateup) {
      float gs = 0.f, us = 0.f;
      for (int zz = 0; zz < p.R; zz++) gs += p.part[0][zz * zs + j];
      for (int zz = 0; zz < p.R; zz++) us += p.part[1][zz * zs + j];
      p.y[0][(size_t)r * p.ldy[0] + c] = gs / (1.0f + expf(-gs)) * us;
    } else {
      float acc = p.res[i] ? p.res[i][(size_t)r * p.ldy[i] + c] : 0.f;
      for (int zz = 0; zz < p.R; zz++) acc += p.part[i][zz * zs + j];
      p.y[i][(size_t)r * p.ldy[i] + c] = acc;
    }
  }
}

template <int NT>
cudaError_t launch_rows(const RowsParams& rp, const RowsPlan& pl, cudaStream_t s) {
  constexpr int smemMax = NT * 8 * slab_stride(SK_KB_MAX);
  static unsigned done = 0;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (!(dev < 32 && ((done >> dev) & 1u))) {
    e = cudaFuncSetAttribute(gemm_rows_i8_kernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, smemMax);
    if (e != cudaSuccess) return e;
    if (dev < 32) done |= 1u << dev;
  }
  const size_t smem = (size_t)NT * 8 * slab_stride(pl.kb);
  return launch_pdl(gemm_rows_i8_kernel<NT>, dim3((unsigned)pl.gx, (unsigned)pl.R), dim3(SK_WARPS * 32), smem, s, rp);
}

}  // namespace

bool gemm_rows_enabled() {
  if (g_rowsOn < 0) {
    const char* e = std::getenv("LLAMA_TS_GEMM_NO_ROWS");
    g_rowsOn = (e && e[0] && e[0] != '0') ? 0 : 1;
  }
  return g_rowsOn == 1;
}

void gemm_set_rows_kernel(int on) { g_rowsOn = on ? 1 : 0; }

// Test hook (declared by checks/gemm_check.cuh): 0 = plan kb per call (default), else a fixed width.
void gemm_set_rows_kb(int kb) { g_rowsKb = (kb >= SK_KB_MIN && kb <= SK_KB_MAX && kb % 64 == 0) ? kb : 0; }

bool gemm_rows_weight_ok(const WeightRef& w) {
  return w.fmt == WF_I8 && w.q && w.scales && w.group == w.k && w.k > 0 && w.k % 64 == 0 && w.m > 0 &&
         aligned(w.q, 16);
}

bool gemm_rows_usable(const float* x, int ldx, int nRows, const WeightRef& w) {
  return gemm_rows_enabled() && nRows >= 1 && nRows <= SK_MAX_ROWS && gemm_rows_weight_ok(w) && x &&
         aligned(x, 16) && ldx % 4 == 0 && ldx >= w.k;
}

// Partial sums of one weight; a multi call of n weights needs the sum over them (gemm_rows_multi_bytes).
size_t gemm_rows_workspace_bytes(const WeightRef& w, int maxRows) {
  if (!gemm_rows_weight_ok(w) || maxRows <= 0) return 0;
  return (size_t)max_ranges(w.k) * (size_t)std::min(maxRows, SK_MAX_ROWS) * (size_t)w.m * sizeof(float);
}

static int sm_count() {
  DeviceProps d;
  return device_props(d) == cudaSuccess && d.sms > 0 ? d.sms : 132;
}

cudaError_t gemm_rows_multi(const float* x, int ldx, int nRows, const WeightRef* ws, float* const* ys,
                            const int* ldys, const float* const* res, int n, bool gateup, void* part,
                            cudaStream_t s) {
  const int sms = sm_count();
  if (n < 1 || n > 3 || (gateup && n != 2)) return cudaErrorInvalidValue;
  int groups = 0;
  long long mTotal = 0;
  for (int i = 0; i < n; i++) {
    if (ws[i].k != ws[0].k) return cudaErrorInvalidValue;
    groups += (ws[i].m + 15) / 16;
    mTotal += ws[i].m;
  }
  const int nt = nRows <= 8 ? 1 : nRows <= 16 ? 2 : nRows <= 32 ? 4 : 8;
  const RowsPlan pl = rows_plan(groups, ws[0].k, nRows, mTotal, nt, sms);
  const int R = pl.R;
  RowsParams rp{};
  rp.x = x;
  rp.ldx = ldx;
  rp.nRows = nRows;
  rp.k = ws[0].k;
  rp.n = n;
  rp.kb = pl.kb;
  ReduceParams dp{};
  dp.n = n;
  dp.R = R;
  dp.nRows = nRows;
  dp.gateup = gateup ? 1 : 0;
  float* pp = static_cast<float*>(part);
  int g0 = 0;
  long long cum = 0;
  for (int i = 0; i < n; i++) {
    rp.w[i] = RowsW{static_cast<const int8_t*>(ws[i].q), ws[i].scales, ws[i].m, g0, pp};
    g0 += (ws[i].m + 15) / 16;
    dp.y[i] = ys[i];
    dp.ldy[i] = ldys[i];
    dp.res[i] = res ? res[i] : nullptr;
    dp.part[i] = pp;
    dp.m[i] = ws[i].m;
    cum += (long long)nRows * ws[i].m;
    dp.end[i] = cum;
    pp += (size_t)R * nRows * ws[i].m;
  }
  rp.groups = groups;
  cudaError_t e = nt == 1   ? launch_rows<1>(rp, pl, s)
                  : nt == 2 ? launch_rows<2>(rp, pl, s)
                  : nt == 4 ? launch_rows<4>(rp, pl, s)
                            : launch_rows<8>(rp, pl, s);
  if (e != cudaSuccess) return e;
  const long long total = dp.end[gateup ? 0 : n - 1];
  const unsigned blocks = (unsigned)std::min<long long>((total + 255) / 256, 4096);
  return launch_pdl(rows_reduce_kernel, dim3(blocks), dim3(256), 0, s, dp);
}

cudaError_t gemm_rows(const float* x, int ldx, int nRows, const WeightRef& w, float* y, int ldy, const float* res,
                      void* part, cudaStream_t s) {
  return gemm_rows_multi(x, ldx, nRows, &w, &y, &ldy, &res, 1, false, part, s);
}

}  // namespace llama_ts
