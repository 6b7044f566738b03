// matmul_gemm: out(t, j) = sum_k x(t, k) * w(j, k) for many rows t (prefill), any weight format, tiled
// through shared memory; optional residual epilogue out += result (RESIDUAL).
// Bindings: 0 uniform Params; 1 x (rows, K) f32; 2 weight chunks (this part: M rows); 3 f16 scales;
//   4 out (rows, outW) f32, this part's columns start at outOff; group 1: step (live rows).
// Dispatch: (ceil(M / BN), ceil(liveRows / BM)) workgroups of 256 = 16 x 16 threads, each thread a
//   TM x TN tile of outputs (BM = 16 TM rows of x, BN = 16 TN weight rows; TM, TN multiples of 4,
//   TM * TN <= 64); K in steps of BK = 32.
// Precision: f32 math and accumulation; weights dequantized exactly.
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 0u;
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

var<workgroup> xs: array<vec4<f32>, BK * 4u * TM>;
var<workgroup> ws: array<vec4<f32>, BK * 4u * TN>;

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
      xs[(kk * BM + tl) / 4u][tl % 4u] = f32(v);
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
      for (var i = 0u; i < n; i++) { ws[((ch * n + i) * BN + rl) / 4u][rl % 4u] = f32(s * chunkElem(FMT, chunk, i)); }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var i4 = 0u; i4 < TM4; i4++) {
        let a = xs[(kk * BM) / 4u + ty * TM4 + i4];
        for (var j4 = 0u; j4 < TN4; j4++) {
          let b = ws[(kk * BN) / 4u + tx * TN4 + j4];
          for (var ii = 0u; ii < 4u; ii++) {
            let o = (i4 * 4u + ii) * TN4 + j4;
            acc[o] = fma(vec4<f32>(a[ii]), b, acc[o]);
          }
        }
      }
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
