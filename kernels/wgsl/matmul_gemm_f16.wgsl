// matmul_gemm_f16: matmul_gemm with f16 shared tiles and f16 math (shader-f16) for 16-bit and
// quantized weights (never f32 weights); same Params, bindings and dispatch as matmul_gemm.
// Bindings: 0 uniform Params; 1 x f32; 2 weight chunks; 3 f16 scales; 4 out f32; group 1: step.
// Dispatch: (ceil(M / BN), ceil(liveRows / BM)), 256 threads, TM x TN outputs each.
// Precision: x and the dequantized weights are rounded to f16 in shared memory; products are summed
//   in f16 over 4 steps of K, then accumulated in f32. Used only after the start-up self-check passed.
enable f16;
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 1u;
override G: u32 = 32u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override RESIDUAL: bool = false;

const BK: u32 = 32u;

struct Params {
  K: u32,
  KC: u32,
  SW: u32,
  M: u32,
  outW: u32,
  outOff: u32,
  logitRows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> sc: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> xs: array<vec4<f16>, BK * 4u * TM>;
var<workgroup> ws: array<vec4<f16>, BK * 4u * TN>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let BM = 16u * TM;
  let BN = 16u * TN;
  let TM4 = TM / 4u;
  let TN4 = TN / 4u;
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  let n0 = wid.x * BN;
  let t0 = wid.y * BM;
  if (t0 >= live) { return; }
  let tx = li % 16u;
  let ty = li / 16u;
  let n = epc(FMT);
  let cpr = BK / n; // chunks per row per K step
  // acc[i * TN4 + j4] holds outputs (row ty * TM + i, columns tx * TN + 4 j4 .. + 3)
  var acc = array<vec4<f32>, 16>();
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    // x tile, transposed: element (kk, t) at xs[(kk * BM + t) / 4][t % 4]
    for (var e = li; e < BK * BM; e += 256u) {
      let tl = e % BM;
      let kk = e / BM;
      let t = t0 + tl;
      let k = k0 + kk;
      var v = 0.0;
      if (t < live && k < p.K) { v = x[t * p.K + k]; }
      xs[(kk * BM + tl) / 4u][tl % 4u] = f16(v);
    }
    // weight tile, dequantized and transposed the same way
    for (var e = li; e < BN * cpr; e += 256u) {
      let rl = e % BN;
      let ch = e / BN;
      let r = n0 + rl;
      let c = k0 / n + ch;
      var chunk = vec4<u32>(0u);
      var s = 0.0;
      if (r < p.M && c < p.KC) {
        chunk = w[r * p.KC + c];
        s = 1.0;
        if (FMT >= F_Q8) {
          let g = c * n / G;
          s = scaleAt(sc[r * p.SW + g / 2u], g);
        }
      }
      for (var i = 0u; i < n; i++) { ws[((ch * n + i) * BN + rl) / 4u][rl % 4u] = f16(s * chunkElem(FMT, chunk, i)); }
    }
    workgroupBarrier();
    // products summed in f16 over 4 steps of K, then added to the f32 accumulators
    for (var k4 = 0u; k4 < BK; k4 += 4u) {
      var h = array<vec4<f16>, 16>();
      for (var kk = k4; kk < k4 + 4u; kk++) {
        for (var i4 = 0u; i4 < TM4; i4++) {
          let a = xs[(kk * BM) / 4u + ty * TM4 + i4];
          for (var j4 = 0u; j4 < TN4; j4++) {
            let b = ws[(kk * BN) / 4u + tx * TN4 + j4];
            for (var ii = 0u; ii < 4u; ii++) {
              let o = (i4 * 4u + ii) * TN4 + j4;
              h[o] = fma(vec4<f16>(a[ii]), b, h[o]);
            }
          }
        }
      }
      for (var o = 0u; o < TM * TN4; o++) { acc[o] += vec4<f32>(h[o]); }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let t = t0 + ty * TM + i;
    if (t >= live) { continue; }
    for (var j = 0u; j < TN; j++) {
      let r = n0 + tx * TN + j;
      if (r < p.M) {
        let idx = t * p.outW + p.outOff + r;
        let v = acc[i * TN4 + j / 4u][j % 4u];
        if (RESIDUAL) { out[idx] = out[idx] + v; } else { out[idx] = v; }
      }
    }
  }
}
