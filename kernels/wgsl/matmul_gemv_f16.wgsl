// matmul_gemv_f16: matmul_gemv for f16 weights with native f16 loads and math (shader-f16), the same
// fusions (NORM, GATHER, up to three matrices, GATEUP, RESIDUAL) and the same Params and bindings,
// weights bound as vec4<f16> pairs per 16-byte chunk.
// Bindings: 0 uniform Params; 1 x f32; 2 norm weight f32; 3/5/7 weight chunks (vec4<f16> x 2 per
//   chunk); 4/6/8 unused scales; 9/10/11 outputs f32; group 1: step.
// Dispatch: as matmul_gemv (NR <= 2).
// Precision: x is staged in f16 after the norm (computed in f32); products are summed in f16 over
//   4 chunks (32 weights) and then accumulated in f32. Used only after the start-up self-check passed.
enable f16;
//!include lib/step.wgsl
//!include lib/fused_gemv.wgsl

override NT: u32 = 1u;
override NR: u32 = 2u;
override TK: u32 = 32u;
override TR: u32 = 8u;
override XV: u32 = 16u;
override NORM: bool = false;
override GATHER: bool = false;
override RESIDUAL: bool = false;
override GATEUP: bool = false;

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
@group(0) @binding(3) var<storage, read> wA: array<vec4<f16>>;
@group(0) @binding(4) var<storage, read> sA: array<u32>;
@group(0) @binding(5) var<storage, read> wB: array<vec4<f16>>;
@group(0) @binding(6) var<storage, read> sB: array<u32>;
@group(0) @binding(7) var<storage, read> wC: array<vec4<f16>>;
@group(0) @binding(8) var<storage, read> sC: array<u32>;
@group(0) @binding(9) var<storage, read_write> oA: array<f32>;
@group(0) @binding(10) var<storage, read_write> oB: array<f32>;
@group(0) @binding(11) var<storage, read_write> oC: array<f32>;

// staged x: XV vec4<f32>-equivalents per row = 2 * XV vec4<f16>... kept as XV * 4 halves in pairs
var<workgroup> xs: array<vec4<f16>, NT * XV>;
var<workgroup> red: array<f32, select(1u, 2u, GATEUP) * TR * NR * NT * TK>;
var<workgroup> inv: array<f32, 8>;
var<workgroup> part16: array<f32, 128>;

fn loadW(mat: u32, i: u32) -> vec4<f16> {
  switch mat {
    case 0u: { return wA[i]; }
    case 1u: { return wB[i]; }
    default: { return wC[i]; }
  }
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

  // the first 4 chunks of each of this thread's rows (NR <= 2), on their way while x is staged
  var pre = array<vec4<f16>, 16>();
  var preB = array<vec4<f16>, 16>();
  for (var u = 0u; u < 4u; u++) {
    for (var i = 0u; i < NR; i++) {
      let r = row0 + tr * NR + i;
      let c = tk + u * TK;
      if (r < m && c < p.KC) {
        pre[(u * NR + i) * 2u] = loadW(mat, 2u * (r * p.KC + c));
        pre[(u * NR + i) * 2u + 1u] = loadW(mat, 2u * (r * p.KC + c) + 1u);
        if (GATEUP) {
          preB[(u * NR + i) * 2u] = wB[2u * (r * p.KC + c)];
          preB[(u * NR + i) * 2u + 1u] = wB[2u * (r * p.KC + c) + 1u];
        }
      }
    }
  }

  // stage x: the norm is computed from f32 values, then x * inv * weight is rounded to f16 once
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
      ss += dot(val, val);
      if (!NORM) { xs[t * XV + v] = vec4<f16>(val); }
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
      var xr = t;
      if (GATHER && t < live) { xr = logitRowAt(t); }
      for (var v = li; v < XV; v += WG) {
        var val = vec4<f32>(0.0);
        if (t < live) {
          for (var e = 0u; e < 4u; e++) {
            let k = v * 4u + e;
            if (k < p.K) { val[e] = nw[k] * (inv[t] * x[xr * p.K + k]); }
          }
        }
        xs[t * XV + v] = vec4<f16>(val);
      }
    }
  }
  workgroupBarrier();

  var acc = array<f32, 16>();
  var accB = array<f32, 16>();
  // a chunk is 8 weights = 2 vec4<f16>; sums stay in f16 for 4 chunks, then go to f32
  for (var c0 = tk; c0 < p.KC; c0 += 4u * TK) {
    var h = array<vec4<f16>, 16>();
    var hb = array<vec4<f16>, 16>();
    for (var u = 0u; u < 4u; u++) {
      let c = c0 + u * TK;
      if (c < p.KC) {
        for (var i = 0u; i < NR; i++) {
          let r = row0 + tr * NR + i;
          if (r < m) {
            var w0 = pre[(u * NR + i) * 2u];
            var w1 = pre[(u * NR + i) * 2u + 1u];
            if (c0 != tk) {
              w0 = loadW(mat, 2u * (r * p.KC + c));
              w1 = loadW(mat, 2u * (r * p.KC + c) + 1u);
            }
            for (var t = 0u; t < NT; t++) {
              h[i * NT + t] = fma(w0, xs[t * XV + 2u * c], fma(w1, xs[t * XV + 2u * c + 1u], h[i * NT + t]));
            }
            if (GATEUP) {
              var b0 = preB[(u * NR + i) * 2u];
              var b1 = preB[(u * NR + i) * 2u + 1u];
              if (c0 != tk) {
                b0 = wB[2u * (r * p.KC + c)];
                b1 = wB[2u * (r * p.KC + c) + 1u];
              }
              for (var t = 0u; t < NT; t++) {
                hb[i * NT + t] = fma(b0, xs[t * XV + 2u * c], fma(b1, xs[t * XV + 2u * c + 1u], hb[i * NT + t]));
              }
            }
          }
        }
      }
    }
    for (var o = 0u; o < NR * NT; o++) {
      acc[o] += dot(vec4<f32>(h[o]), vec4<f32>(1.0));
      if (GATEUP) { accB[o] += dot(vec4<f32>(hb[o]), vec4<f32>(1.0)); }
    }
  }

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
