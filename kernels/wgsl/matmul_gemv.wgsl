// matmul_gemv: out(t, j) = sum_k x(t, k) * w(j, k) for a few rows t (decode), any weight format, with
// the decoder's fusions: an RMSNorm prologue (NORM), a logit-row gather (GATHER), up to three weight
// matrices sharing x (QKV: workgroups [0, wgA) use A, then B, then C), SiLU(A x) * (B x) (GATEUP) and a
// residual epilogue out += result (RESIDUAL).
// Bindings: 0 uniform Params; 1 x (rows, K) f32; 2 norm weight (K) f32; 3/5/7 weight chunks of A/B/C;
//   4/6/8 their f16 scales; 9/10/11 outputs of A/B/C (rows, outW*) f32 (9 is also the residual);
//   group 1: step (live rows, logit rows).
// Dispatch: wgA + wgB + wgC workgroups of TK*TR threads (x + y * 65535 when large); each covers
//   TR*NR consecutive output rows of one matrix for NT rows of x. TK threads split a row's K chunks.
// Shared memory: x staged as f32 (NT * XV vec4), normalized in place when NORM; partial sums. Each
//   thread's first PF weight chunks per row are loaded before x is staged, to hide their latency.
// Precision: f32 math and accumulation; weights dequantized exactly.
//!include lib/weights.wgsl
//!include lib/step.wgsl
//!include lib/fused_gemv.wgsl

override FMT: u32 = 0u;
override G: u32 = 32u;
override NT: u32 = 1u;
override NR: u32 = 2u;
override TK: u32 = 32u;
override TR: u32 = 8u;
override XV: u32 = 16u;
override NORM: bool = false;
override GATHER: bool = false;
override RESIDUAL: bool = false;
override GATEUP: bool = false;

// weight chunks per row a thread loads before staging x
const PF: u32 = 2u;

struct Params {
  K: u32,
  KC: u32,
  SW: u32,
  mA: u32,
  mB: u32,
  mC: u32,
  wgA: u32,
  wgB: u32,
  outWA: u32,
  outWB: u32,
  outWC: u32,
  outOffA: u32,
  logitRows: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> nw: array<f32>;
@group(0) @binding(3) var<storage, read> wA: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sA: array<u32>;
@group(0) @binding(5) var<storage, read> wB: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> sB: array<u32>;
@group(0) @binding(7) var<storage, read> wC: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> sC: array<u32>;
@group(0) @binding(9) var<storage, read_write> oA: array<f32>;
@group(0) @binding(10) var<storage, read_write> oB: array<f32>;
@group(0) @binding(11) var<storage, read_write> oC: array<f32>;

var<workgroup> xs: array<vec4<f32>, NT * XV>;
var<workgroup> red: array<f32, select(1u, 2u, GATEUP) * TR * NR * NT * TK>;
var<workgroup> inv: array<f32, 8>;
var<workgroup> part16: array<f32, 128>;

fn loadW(mat: u32, i: u32) -> vec4<u32> {
  switch mat {
    case 0u: { return wA[i]; }
    case 1u: { return wB[i]; }
    default: { return wC[i]; }
  }
}

fn loadS(mat: u32, i: u32) -> u32 {
  switch mat {
    case 0u: { return sA[i]; }
    case 1u: { return sB[i]; }
    default: { return sC[i]; }
  }
}

// dot of one weight chunk with the staged x starting at vec4 index xo
fn chunkDot(w: vec4<u32>, xo: u32) -> f32 {
  switch FMT {
    case 0u: { return dot(bitcast<vec4<f32>>(w), xs[xo]); }
    case 1u: {
      return dot(vec4<f32>(f16pair(w.x), f16pair(w.y)), xs[xo]) +
        dot(vec4<f32>(f16pair(w.z), f16pair(w.w)), xs[xo + 1u]);
    }
    case 2u: {
      return dot(vec4<f32>(bf16pair(w.x), bf16pair(w.y)), xs[xo]) +
        dot(vec4<f32>(bf16pair(w.z), bf16pair(w.w)), xs[xo + 1u]);
    }
    case 3u: {
      return dot(q8word(w.x), xs[xo]) + dot(q8word(w.y), xs[xo + 1u]) + dot(q8word(w.z), xs[xo + 2u]) +
        dot(q8word(w.w), xs[xo + 3u]);
    }
    default: {
      var s = 0.0;
      for (var i = 0u; i < 4u; i++) {
        let a = xs[xo + 2u * i];
        let b = xs[xo + 2u * i + 1u];
        s += dot(q4even(w[i]), vec4<f32>(a.x, a.z, b.x, b.z)) + dot(q4odd(w[i]), vec4<f32>(a.y, a.w, b.y, b.w));
      }
      return s;
    }
  }
}

fn scaleOf(mat: u32, r: u32, c: u32) -> f32 {
  if (FMT < F_Q8) { return 1.0; }
  let g = c * epc(FMT) / G;
  return scaleAt(loadS(mat, r * p.SW + g / 2u), g);
}

fn scaleB(r: u32, c: u32) -> f32 {
  if (FMT < F_Q8) { return 1.0; }
  let g = c * epc(FMT) / G;
  return scaleAt(sB[r * p.SW + g / 2u], g);
}

@compute @workgroup_size(TK * TR)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let WG = TK * TR;
  let wg = wid.x + wid.y * nwg.x;
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  let fb = fusedBlock(wg, p.wgA, p.wgB, p.mA, p.mB, p.mC);
  let mat = fb.mat;
  let m = fb.m;
  let row0 = fb.blk * TR * NR;
  if (row0 >= m) { return; }
  let tk = li % TK;
  let tr = li / TK;
  let n = epc(FMT);

  // the first PF chunks of each of this thread's rows (NR <= 4), on their way while x is staged
  var pre = array<vec4<u32>, 8>();
  var preB = array<vec4<u32>, 8>();
  for (var u = 0u; u < PF; u++) {
    for (var i = 0u; i < NR; i++) {
      let r = row0 + tr * NR + i;
      let c = tk + u * TK;
      if (r < m && c < p.KC) {
        pre[u * NR + i] = loadW(mat, r * p.KC + c);
        if (GATEUP) { preB[u * NR + i] = wB[r * p.KC + c]; }
      }
    }
  }

  // stage x (zero past K and past the live rows), with the squares for the norm
  for (var t = 0u; t < NT; t++) {
    var xr = t;
    if (GATHER && t < live) { xr = logitRowAt(t); }
    var ss = 0.0;
    for (var v = li; v < XV; v += WG) {
      var val = vec4<f32>(0.0);
      if (t < live) {
        for (var e = 0u; e < 4u; e++) {
          let k = v * 4u + e;
          if (k < p.K) { val[e] = x[xr * p.K + k]; }
        }
      }
      xs[t * XV + v] = val;
      ss += dot(val, val);
    }
    if (NORM) { red[t * WG + li] = ss; }
  }
  if (NORM) {
    // sum of squares per row: 16 partial sums of WG / 16 values, then each row's 16 partials
    workgroupBarrier();
    if (li < NT * 16u) {
      let t = li / 16u;
      let j = li % 16u;
      var s = 0.0;
      for (var q = 0u; q < WG / 16u; q++) { s += red[t * WG + j * (WG / 16u) + q]; }
      part16[li] = s;
    }
    workgroupBarrier();
    if (li < NT) {
      var s = 0.0;
      for (var j = 0u; j < 16u; j++) { s += part16[li * 16u + j]; }
      inv[li] = 1.0 / sqrt(s / f32(p.K) + p.eps);
    }
    workgroupBarrier();
    for (var t = 0u; t < NT; t++) {
      for (var v = li; v < XV; v += WG) {
        var g = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
          let k = v * 4u + e;
          if (k < p.K) { g[e] = nw[k]; }
        }
        xs[t * XV + v] = g * (inv[t] * xs[t * XV + v]);
      }
    }
  }
  workgroupBarrier();

  var acc = array<f32, 16>();
  var accB = array<f32, 16>();
  for (var u = 0u; u < PF; u++) {
    let c = tk + u * TK;
    if (c >= p.KC) { break; }
    let xo = c * n / 4u;
    for (var i = 0u; i < NR; i++) {
      let r = row0 + tr * NR + i;
      if (r < m) {
        let s = scaleOf(mat, r, c);
        for (var t = 0u; t < NT; t++) { acc[i * NT + t] += s * chunkDot(pre[u * NR + i], t * XV + xo); }
        if (GATEUP) {
          let sb = scaleB(r, c);
          for (var t = 0u; t < NT; t++) { accB[i * NT + t] += sb * chunkDot(preB[u * NR + i], t * XV + xo); }
        }
      }
    }
  }
  for (var c = tk + PF * TK; c < p.KC; c += TK) {
    let xo = c * n / 4u;
    for (var i = 0u; i < NR; i++) {
      let r = row0 + tr * NR + i;
      if (r < m) {
        let w = loadW(mat, r * p.KC + c);
        let s = scaleOf(mat, r, c);
        for (var t = 0u; t < NT; t++) { acc[i * NT + t] += s * chunkDot(w, t * XV + xo); }
        if (GATEUP) {
          let wb = wB[r * p.KC + c];
          let sb = scaleB(r, c);
          for (var t = 0u; t < NT; t++) { accB[i * NT + t] += sb * chunkDot(wb, t * XV + xo); }
        }
      }
    }
  }

  // reduce over the TK threads of each output: red[tk * NO + o]
  let NO = TR * NR * NT;
  for (var i = 0u; i < NR; i++) {
    for (var t = 0u; t < NT; t++) {
      let o = (tr * NR + i) * NT + t;
      red[tk * NO + o] = acc[i * NT + t];
      if (GATEUP) { red[(TK + tk) * NO + o] = accB[i * NT + t]; }
    }
  }
  workgroupBarrier();
  for (var o = li; o < NO; o += WG) {
    let r = row0 + o / NT;
    let t = o % NT;
    if (r < m && t < live) {
      var v = 0.0;
      for (var j = 0u; j < TK; j++) { v += red[j * NO + o]; }
      if (GATEUP) {
        var u = 0.0;
        for (var j = 0u; j < TK; j++) { u += red[(TK + j) * NO + o]; }
        v = silu(v) * u;
      }
      switch mat {
        case 0u: {
          let idx = t * p.outWA + p.outOffA + r;
          if (RESIDUAL) { oA[idx] = oA[idx] + v; } else { oA[idx] = v; }
        }
        case 1u: { oB[t * p.outWB + r] = v; }
        default: { oC[t * p.outWC + r] = v; }
      }
    }
  }
}
