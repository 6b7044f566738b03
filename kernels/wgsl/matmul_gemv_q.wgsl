// matmul_gemv_q: matmul_gemv for the quantized formats (FMT 3 q8, FMT 4 q4), and for f16 weights (FMT 1,
// one row of x only, f32 math; chosen by the f16 layout's `regs`): the same fusions (NORM,
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
// One row of x (NT = 1, the decode step): a path with no function-scope arrays (NR <= 4 rows per thread
//   in named registers, x of a chunk in a struct), since indexed private arrays may be placed in local
//   memory by the driver: on the H100 a variant holding 2-16 chunks per row in an array indexed in loops
//   ran 3x slower, its weight reads alone too (bench/RESULTS.md, 2026-11-26; the 4-5x of the first sweep
//   from NR 1 to NR 2 was mostly the GPU at idle clock).
// Precision: f32 math and accumulation; weights dequantized exactly (I2F: the sums round differently).
// RED2 (one row of x, NR divides TK): the TK partial sums of an output are added in two stages (TK / NR
//   threads per output add NR each, then one thread adds those) instead of one thread adding all TK; lets
//   layouts with many threads along K (few chunks per thread, all in flight at once) end quickly.
// I2F (q8 / q4, one row of x): codes turned into floats by an integer-to-float conversion of each byte /
//   nibble (no mask-or, no subtraction per code) and dotted with x in the words' element order; the code
//   offset (128 / 8) comes off once per chunk as offset * sum(x of the chunk), shared by the NR rows.
//   Same f32 math otherwise; the products are exact either way, the sums round differently.
// PROBE (benchmarks only, wrong results; one row of x): 1 = no dequantization (a chunk's words xor-ed
//   into one float), 2 = that and no x reads: what the weights' reads alone cost in this layout.
//!include lib/weights.wgsl
//!include lib/step.wgsl
//!include lib/fused_gemv.wgsl

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
override PROBE: u32 = 0u;
override RED2: bool = false;
override I2F: bool = false;

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
// RED2's second stage: per output TK / NR sums (A, then B for GATEUP), then the squares'
var<workgroup> red2: array<f32, select(1u, select(1u, 2u, GATEUP) * TK * TR + TK, RED2)>;

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

// I2F: the four bytes of a word as floats, in byte order; four nibbles from bit `at` on
fn u8f(w: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u));
}

fn u4f(w: u32, at: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(w >> at) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
}

// one chunk's x for the NT = 1 path, in the words' element order, times the norm weight, pre-scaled
struct XC {
  v0: vec4<f32>,
  v1: vec4<f32>,
  v2: vec4<f32>,
  v3: vec4<f32>,
  v4: vec4<f32>,
  v5: vec4<f32>,
  v6: vec4<f32>,
  v7: vec4<f32>,
  sx: f32, // I2F: the sum of the chunk's x (norm weight applied)
}

// x vec4 i of the row at xb (norm weight applied; its squares summed into ss)
fn xin(xb: u32, i: u32, ss: ptr<function, f32>) -> vec4<f32> {
  var a = x[xb + i];
  if (NORM) {
    *ss += dot(a, a);
    a *= nw[i];
  }
  return a;
}

fn q8x(a: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(a.x, a.z * 0.00390625, a.y, a.w * 0.00390625);
}

fn chunkX(xb: u32, c: u32, ss: ptr<function, f32>) -> XC {
  var r: XC;
  if (FMT == F_F16) {
    r.v0 = xin(xb, c * 2u, ss);
    r.v1 = xin(xb, c * 2u + 1u, ss);
    return r;
  }
  if (I2F && FMT == F_Q8) {
    let i = c * 4u;
    let a0 = xin(xb, i, ss);
    let a1 = xin(xb, i + 1u, ss);
    let a2 = xin(xb, i + 2u, ss);
    let a3 = xin(xb, i + 3u, ss);
    r.v0 = a0.xzyw;
    r.v1 = a1.xzyw;
    r.v2 = a2.xzyw;
    r.v3 = a3.xzyw;
    r.sx = dot(a0 + a1 + a2 + a3, vec4<f32>(1.0));
    return r;
  }
  if (FMT == F_Q8) {
    let i = c * 4u;
    r.v0 = q8x(xin(xb, i, ss));
    r.v1 = q8x(xin(xb, i + 1u, ss));
    r.v2 = q8x(xin(xb, i + 2u, ss));
    r.v3 = q8x(xin(xb, i + 3u, ss));
    return r;
  }
  let i = c * 8u;
  let S = select(vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625), vec4<f32>(1.0), I2F);
  let a0 = xin(xb, i, ss);
  let b0 = xin(xb, i + 1u, ss);
  r.v0 = vec4<f32>(a0.x, a0.z, b0.x, b0.z) * S;
  r.v1 = vec4<f32>(a0.y, a0.w, b0.y, b0.w) * S;
  let a1 = xin(xb, i + 2u, ss);
  let b1 = xin(xb, i + 3u, ss);
  r.v2 = vec4<f32>(a1.x, a1.z, b1.x, b1.z) * S;
  r.v3 = vec4<f32>(a1.y, a1.w, b1.y, b1.w) * S;
  let a2 = xin(xb, i + 4u, ss);
  let b2 = xin(xb, i + 5u, ss);
  r.v4 = vec4<f32>(a2.x, a2.z, b2.x, b2.z) * S;
  r.v5 = vec4<f32>(a2.y, a2.w, b2.y, b2.w) * S;
  let a3 = xin(xb, i + 6u, ss);
  let b3 = xin(xb, i + 7u, ss);
  r.v6 = vec4<f32>(a3.x, a3.z, b3.x, b3.z) * S;
  r.v7 = vec4<f32>(a3.y, a3.w, b3.y, b3.w) * S;
  if (I2F) { r.sx = dot(a0 + b0 + a1 + b1 + a2 + b2 + a3 + b3, vec4<f32>(1.0)); }
  return r;
}

// one 16-byte chunk of weights times its x
fn dotC(w: vec4<u32>, xc: XC) -> f32 {
  if (PROBE != 0u) {
    return bitcast<f32>((w.x ^ w.y ^ w.z ^ w.w) & 0x3f7fffffu) * xc.v0.x;
  }
  if (FMT == F_F16) {
    let a = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
    let b = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));
    return dot(a, xc.v0) + dot(b, xc.v1);
  }
  if (I2F && FMT == F_Q8) {
    let d = dot(u8f(w.x), xc.v0) + dot(u8f(w.y), xc.v1) + dot(u8f(w.z), xc.v2) + dot(u8f(w.w), xc.v3);
    return fma(-128.0, xc.sx, d);
  }
  if (I2F) {
    let d = dot(u4f(w.x, 0u), xc.v0) + dot(u4f(w.x, 16u), xc.v1) + dot(u4f(w.y, 0u), xc.v2) +
      dot(u4f(w.y, 16u), xc.v3) + dot(u4f(w.z, 0u), xc.v4) + dot(u4f(w.z, 16u), xc.v5) +
      dot(u4f(w.w, 0u), xc.v6) + dot(u4f(w.w, 16u), xc.v7);
    return fma(-8.0, xc.sx, d);
  }
  if (FMT == F_Q8) {
    return dot8(w.x, xc.v0) + dot8(w.y, xc.v1) + dot8(w.z, xc.v2) + dot8(w.w, xc.v3);
  }
  return dot4(w.x, xc.v0, xc.v1) + dot4(w.y, xc.v2, xc.v3) + dot4(w.z, xc.v4, xc.v5) + dot4(w.w, xc.v6, xc.v7);
}

// the group scale of chunk c of row r (1 for PERROW: applied after the sum)
fn scl(mat: u32, r: u32, c: u32, ep: u32) -> f32 {
  if (PERROW || FMT == F_F16) { return 1.0; }
  let g = c * ep / G;
  return scaleAt(loadS(mat, r * p.SW + g / 2u), g);
}

fn sclB(r: u32, c: u32, ep: u32) -> f32 {
  if (PERROW || FMT == F_F16) { return 1.0; }
  let g = c * ep / G;
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
  let q8 = FMT == F_Q8;
  let XW = select(select(8u, 4u, q8), 2u, FMT == F_F16); // vec4 of x per chunk
  let EP = XW * 4u; // elements per chunk
  let K4 = p.K / 4u;
  // x rows of this step (the logit rows with GATHER)
  var xrow = array<u32, 8>();
  for (var t = 0u; t < NT; t++) {
    xrow[t] = t;
    if (GATHER && t < live) { xrow[t] = logitRowAt(t); }
  }

  let NO = TR * NR * NT;
  if (NT == 1u) {
    // one row of x: NR <= 4 rows per thread in named registers
    let xb = xrow[0] * K4;
    let r = row0 + tr * NR;
    let ok0 = r < m;
    let ok1 = NR > 1u && r + 1u < m;
    let ok2 = NR > 2u && r + 2u < m;
    let ok3 = NR > 3u && r + 3u < m;
    var w0 = vec4<u32>();
    var w1 = vec4<u32>();
    var w2 = vec4<u32>();
    var w3 = vec4<u32>();
    var u0 = vec4<u32>();
    var u1 = vec4<u32>();
    var u2 = vec4<u32>();
    var u3 = vec4<u32>();
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var b0 = 0.0;
    var b1 = 0.0;
    var b2 = 0.0;
    var b3 = 0.0;
    var sq = 0.0;
    let KC = select(0u, p.KC, live > 0u);
    if (tk < KC) {
      if (ok0) { w0 = loadW(mat, r * KC + tk); }
      if (ok1) { w1 = loadW(mat, (r + 1u) * KC + tk); }
      if (ok2) { w2 = loadW(mat, (r + 2u) * KC + tk); }
      if (ok3) { w3 = loadW(mat, (r + 3u) * KC + tk); }
      if (GATEUP) {
        if (ok0) { u0 = wB[r * KC + tk]; }
        if (ok1) { u1 = wB[(r + 1u) * KC + tk]; }
        if (ok2) { u2 = wB[(r + 2u) * KC + tk]; }
        if (ok3) { u3 = wB[(r + 3u) * KC + tk]; }
      }
    }
    for (var c = tk; c < KC; c += TK) {
      // the next chunk's weights, on their way while this one is used
      let cn = c + TK;
      var n0 = vec4<u32>();
      var n1 = vec4<u32>();
      var n2 = vec4<u32>();
      var n3 = vec4<u32>();
      var v0 = vec4<u32>();
      var v1 = vec4<u32>();
      var v2 = vec4<u32>();
      var v3 = vec4<u32>();
      if (cn < KC) {
        if (ok0) { n0 = loadW(mat, r * KC + cn); }
        if (ok1) { n1 = loadW(mat, (r + 1u) * KC + cn); }
        if (ok2) { n2 = loadW(mat, (r + 2u) * KC + cn); }
        if (ok3) { n3 = loadW(mat, (r + 3u) * KC + cn); }
        if (GATEUP) {
          if (ok0) { v0 = wB[r * KC + cn]; }
          if (ok1) { v1 = wB[(r + 1u) * KC + cn]; }
          if (ok2) { v2 = wB[(r + 2u) * KC + cn]; }
          if (ok3) { v3 = wB[(r + 3u) * KC + cn]; }
        }
      }
      var xc = XC();
      if (PROBE == 2u) {
        xc.v0 = vec4<f32>(f32(c));
      } else {
        xc = chunkX(xb, c, &sq);
      }
      if (ok0) {
        a0 = fma(scl(mat, r, c, EP), dotC(w0, xc), a0);
        if (GATEUP) { b0 = fma(sclB(r, c, EP), dotC(u0, xc), b0); }
      }
      if (ok1) {
        a1 = fma(scl(mat, r + 1u, c, EP), dotC(w1, xc), a1);
        if (GATEUP) { b1 = fma(sclB(r + 1u, c, EP), dotC(u1, xc), b1); }
      }
      if (ok2) {
        a2 = fma(scl(mat, r + 2u, c, EP), dotC(w2, xc), a2);
        if (GATEUP) { b2 = fma(sclB(r + 2u, c, EP), dotC(u2, xc), b2); }
      }
      if (ok3) {
        a3 = fma(scl(mat, r + 3u, c, EP), dotC(w3, xc), a3);
        if (GATEUP) { b3 = fma(sclB(r + 3u, c, EP), dotC(u3, xc), b3); }
      }
      w0 = n0;
      w1 = n1;
      w2 = n2;
      w3 = n3;
      u0 = v0;
      u1 = v1;
      u2 = v2;
      u3 = v3;
    }
    let o = tr * NR;
    red[tk * NO + o] = a0;
    if (NR > 1u) { red[tk * NO + o + 1u] = a1; }
    if (NR > 2u) { red[tk * NO + o + 2u] = a2; }
    if (NR > 3u) { red[tk * NO + o + 3u] = a3; }
    if (GATEUP) {
      red[(TK + tk) * NO + o] = b0;
      if (NR > 1u) { red[(TK + tk) * NO + o + 1u] = b1; }
      if (NR > 2u) { red[(TK + tk) * NO + o + 2u] = b2; }
      if (NR > 3u) { red[(TK + tk) * NO + o + 3u] = b3; }
    }
    if (NORM && tr == 0u) { ssq[tk] = sq; }
  } else {
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
  }
  workgroupBarrier();
  // RED2: stage 1, P = TK / NR threads per output each add NR partials (the squares likewise)
  let P = TK / NR;
  let GB = select(1u, 2u, GATEUP) * WG;
  if (RED2) {
    let o = li / P;
    let q = li % P;
    var v = 0.0;
    var u = 0.0;
    for (var j = 0u; j < NR; j++) {
      v += red[(q * NR + j) * NO + o];
      if (GATEUP) { u += red[(TK + q * NR + j) * NO + o]; }
    }
    red2[o * P + q] = v;
    if (GATEUP) { red2[WG + o * P + q] = u; }
    if (NORM && o == 0u) {
      var s2 = 0.0;
      for (var j = 0u; j < NR; j++) { s2 += ssq[q * NR + j]; }
      red2[GB + q] = s2;
    }
    workgroupBarrier();
  }
  for (var o = li; o < NO; o += WG) {
    let r = row0 + o / NT;
    let t = o % NT;
    if (r < m && t < live) {
      var v = 0.0;
      var u = 0.0;
      var sq = 0.0;
      if (RED2) {
        for (var q = 0u; q < P; q++) {
          v += red2[o * P + q];
          if (GATEUP) { u += red2[WG + o * P + q]; }
          if (NORM) { sq += red2[GB + q]; }
        }
      } else {
        for (var j = 0u; j < TK; j++) { v += red[j * NO + o]; }
        if (GATEUP) {
          for (var j = 0u; j < TK; j++) { u += red[(TK + j) * NO + o]; }
        }
        if (NORM) {
          for (var j = 0u; j < TK; j++) { sq += ssq[t * TK + j]; }
        }
      }
      if (NORM) {
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
