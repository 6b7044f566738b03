// matmul_gemv_q: matmul_gemv for the quantized formats (FMT 3 q8, FMT 4 q4): the same fusions (NORM,
// GATHER, up to three matrices, GATEUP, RESIDUAL), Params and bindings, but no staging of x: each
// thread reads 16-byte weight chunks (vec4<u32>) of NR rows at the same K position, reads the chunk's x
// straight from memory once (vec4 loads) and reuses it for all NR rows, dequantizing in registers:
// a byte or nibble is masked in place (one AND|OR) into the mantissa of 2^23 and the float subtracted,
// with x pre-multiplied by 2^-8 / 2^-4k to undo the nibble's or byte's place (exact powers of two). The
// next chunk's weights are loaded before the current one is used. NORM: out = inv_rms * sum(w * (x * g)),
// the sum of squares taken from the same x reads. PERROW (int8 per channel): one scale per row, applied
// after the row's sum.
// Bindings: 0 uniform Params; 1 x (rows, K) f32 as vec4; 2 norm weight (K) f32 as vec4; 3/5/7 weight
//   chunks of A/B/C; 4/6/8 their f16 scales; 9/10/11 outputs (9 is also the residual); group 1: step.
// Dispatch: as matmul_gemv: wgA + wgB + wgC workgroups of TK * TR threads, each TR * NR rows of one
//   matrix for NT rows of x (NR <= 8, NR * NT <= 16). K must be a multiple of the chunk (16 / 32).
// Precision: f32 math and accumulation; weights dequantized exactly.
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 3u;
override G: u32 = 32u;
override PERROW: bool = false;
override NT: u32 = 1u;
override NR: u32 = 2u;
override TK: u32 = 32u;
override TR: u32 = 8u;
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
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> nw: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> wA: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sA: array<u32>;
@group(0) @binding(5) var<storage, read> wB: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> sB: array<u32>;
@group(0) @binding(7) var<storage, read> wC: array<vec4<u32>>;
@group(0) @binding(8) var<storage, read> sC: array<u32>;
@group(0) @binding(9) var<storage, read_write> oA: array<f32>;
@group(0) @binding(10) var<storage, read_write> oB: array<f32>;
@group(0) @binding(11) var<storage, read_write> oC: array<f32>;

var<workgroup> red: array<f32, select(1u, 2u, GATEUP) * TR * NR * NT * TK>;
var<workgroup> ssq: array<f32, NT * TK>;

// 2^23 and 2^23 plus the code offsets (q8: 128 at byte 0, 128 * 256 at byte 1; q4: 8 * 16^j at nibble j)
const M8 = vec4<f32>(8388736.0, 8421376.0, 8388736.0, 8421376.0);
const M4 = vec4<f32>(8388616.0, 8388736.0, 8390656.0, 8421376.0);
const MASK8 = vec4<u32>(0xffu, 0xff00u, 0xffu, 0xff00u);
const MASK4 = vec4<u32>(0xfu, 0xf0u, 0xf00u, 0xf000u);

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

// q8 word: bytes (e0, e2, e1, e3); xv = (x0, x2 / 256, x1, x3 / 256)
fn dot8(w: u32, xv: vec4<f32>) -> f32 {
  let v = (vec4<u32>(w, w, w >> 16u, w >> 16u) & MASK8) | vec4<u32>(MAGIC);
  return dot(bitcast<vec4<f32>>(v) - M8, xv);
}

// q4 word: nibbles (e0, e2, e4, e6 | e1, e3, e5, e7); lo = (x0, x2 / 16, x4 / 256, x6 / 4096), hi odd
fn dot4(w: u32, lo: vec4<f32>, hi: vec4<f32>) -> f32 {
  let a = (vec4<u32>(w) & MASK4) | vec4<u32>(MAGIC);
  let b = (vec4<u32>(w >> 16u) & MASK4) | vec4<u32>(MAGIC);
  return dot(bitcast<vec4<f32>>(a) - M4, lo) + dot(bitcast<vec4<f32>>(b) - M4, hi);
}

fn silu(v: f32) -> f32 {
  return v / (1.0 + exp(-v));
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
  var mat = 0u;
  var blk = wg;
  if (blk >= p.wgA) {
    blk -= p.wgA;
    mat = 1u;
    if (blk >= p.wgB) {
      blk -= p.wgB;
      mat = 2u;
    }
  }
  let m = select(select(p.mC, p.mB, mat == 1u), p.mA, mat == 0u);
  let row0 = blk * TR * NR;
  if (row0 >= m) { return; }
  let tk = li % TK;
  let tr = li / TK;
  let q8 = FMT == F_Q8;
  let XW = select(8u, 4u, q8); // vec4 of x per chunk
  let EP = XW * 4u; // elements per chunk
  let K4 = p.K / 4u;
  // x rows of this step (the logit rows with GATHER)
  var xrow = array<u32, 8>();
  for (var t = 0u; t < NT; t++) {
    xrow[t] = t;
    if (GATHER && t < live) { xrow[t] = logitRowAt(t); }
  }

  var acc = array<f32, 16>();
  var accB = array<f32, 16>();
  var ss = array<f32, 8>();
  var cur = array<vec4<u32>, 8>();
  var curB = array<vec4<u32>, 8>();
  for (var i = 0u; i < NR; i++) {
    let r = row0 + tr * NR + i;
    if (r < m && tk < p.KC) {
      cur[i] = loadW(mat, r * p.KC + tk);
      if (GATEUP) { curB[i] = wB[r * p.KC + tk]; }
    }
  }
  for (var c = tk; c < p.KC; c += TK) {
    // the next chunk's weights, on their way while this one is used
    var nxt = array<vec4<u32>, 8>();
    var nxtB = array<vec4<u32>, 8>();
    let cn = c + TK;
    for (var i = 0u; i < NR; i++) {
      let r = row0 + tr * NR + i;
      if (r < m && cn < p.KC) {
        nxt[i] = loadW(mat, r * p.KC + cn);
        if (GATEUP) { nxtB[i] = wB[r * p.KC + cn]; }
      }
    }
    var s = array<f32, 8>();
    var sb = array<f32, 8>();
    for (var i = 0u; i < NR; i++) {
      s[i] = 1.0;
      sb[i] = 1.0;
      let r = row0 + tr * NR + i;
      if (!PERROW && r < m) {
        let g = c * EP / G;
        s[i] = scaleAt(loadS(mat, r * p.SW + g / 2u), g);
        if (GATEUP) { sb[i] = scaleAt(sB[r * p.SW + g / 2u], g); }
      }
    }
    for (var t = 0u; t < NT; t++) {
      // this chunk's x, in the words' element order, times the norm weight, pre-scaled
      var xv = array<vec4<f32>, 8>();
      if (t < live) {
        for (var j = 0u; j < XW; j += 2u) {
          var a = x[xrow[t] * K4 + c * XW + j];
          var b = x[xrow[t] * K4 + c * XW + j + 1u];
          if (NORM) {
            ss[t] += dot(a, a) + dot(b, b);
            a *= nw[c * XW + j];
            b *= nw[c * XW + j + 1u];
          }
          if (q8) {
            xv[j] = vec4<f32>(a.x, a.z * 0.00390625, a.y, a.w * 0.00390625);
            xv[j + 1u] = vec4<f32>(b.x, b.z * 0.00390625, b.y, b.w * 0.00390625);
          } else {
            xv[j] = vec4<f32>(a.x, a.z * 0.0625, b.x * 0.00390625, b.z * 0.000244140625);
            xv[j + 1u] = vec4<f32>(a.y, a.w * 0.0625, b.y * 0.00390625, b.w * 0.000244140625);
          }
        }
      }
      for (var i = 0u; i < NR; i++) {
        var d = 0.0;
        var dB = 0.0;
        if (q8) {
          d = dot8(cur[i].x, xv[0]) + dot8(cur[i].y, xv[1]) + dot8(cur[i].z, xv[2]) + dot8(cur[i].w, xv[3]);
          if (GATEUP) {
            dB = dot8(curB[i].x, xv[0]) + dot8(curB[i].y, xv[1]) + dot8(curB[i].z, xv[2]) +
              dot8(curB[i].w, xv[3]);
          }
        } else {
          d = dot4(cur[i].x, xv[0], xv[1]) + dot4(cur[i].y, xv[2], xv[3]) + dot4(cur[i].z, xv[4], xv[5]) +
            dot4(cur[i].w, xv[6], xv[7]);
          if (GATEUP) {
            dB = dot4(curB[i].x, xv[0], xv[1]) + dot4(curB[i].y, xv[2], xv[3]) +
              dot4(curB[i].z, xv[4], xv[5]) + dot4(curB[i].w, xv[6], xv[7]);
          }
        }
        acc[i * NT + t] = fma(s[i], d, acc[i * NT + t]);
        if (GATEUP) { accB[i * NT + t] = fma(sb[i], dB, accB[i * NT + t]); }
      }
    }
    for (var i = 0u; i < NR; i++) {
      cur[i] = nxt[i];
      curB[i] = nxtB[i];
    }
  }

  // reduce over the TK threads of each output: red[tk * NO + o]; the squares from thread row 0
  let NO = TR * NR * NT;
  for (var i = 0u; i < NR; i++) {
    for (var t = 0u; t < NT; t++) {
      let o = (tr * NR + i) * NT + t;
      red[tk * NO + o] = acc[i * NT + t];
      if (GATEUP) { red[(TK + tk) * NO + o] = accB[i * NT + t]; }
    }
  }
  if (NORM && tr == 0u) {
    for (var t = 0u; t < NT; t++) { ssq[t * TK + tk] = ss[t]; }
  }
  workgroupBarrier();
  for (var o = li; o < NO; o += WG) {
    let r = row0 + o / NT;
    let t = o % NT;
    if (r < m && t < live) {
      var v = 0.0;
      for (var j = 0u; j < TK; j++) { v += red[j * NO + o]; }
      var u = 0.0;
      if (GATEUP) {
        for (var j = 0u; j < TK; j++) { u += red[(TK + j) * NO + o]; }
      }
      if (NORM) {
        var sq = 0.0;
        for (var j = 0u; j < TK; j++) { sq += ssq[t * TK + j]; }
        let inv = 1.0 / sqrt(sq / f32(p.K) + p.eps);
        v *= inv;
        u *= inv;
      }
      if (PERROW) {
        v *= scaleAt(loadS(mat, r * p.SW), 0u);
        if (GATEUP) { u *= scaleAt(sB[r * p.SW], 0u); }
      }
      if (GATEUP) { v = silu(v) * u; }
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
