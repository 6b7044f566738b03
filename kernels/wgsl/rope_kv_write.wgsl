// rope_kv_write: rotary embedding of q's nHq heads and k's nHk heads at each row's position (in place),
// then (when write = 1) k and v written into the paged cache at the row's slot. The rope op alone is
// nHk = 0, write = 0; kv_write alone is nHq = nHk = 0. A thread owns 2 NP elements of a head: interleaved
// (NP = 2): elements 4u..4u+3 as pairs (4u, 4u+1), (4u+2, 4u+3); half (NP = 4): elements 4u..4u+3 and
// their partners 4u+hd/2..4u+3+hd/2. So the k a thread rotates is the k it writes, and no cache word
// (4 bytes: 1 f32, 2 f16 or 4 int8 values) is written by two threads.
// int8 caches (KVF 2): each (row, kv head) vector is quantized as ref does: scale = amax / 127,
// q = clamp(round_half_away(x * (1 / scale)), -127, 127), scale 0 -> q 0; the head's threads find amax
// together in workgroup memory (hd / (2 NP) threads per head must divide 64).
// cos/sin of pos * invFreq[j] come from two host-made tables (computed in f64): lo for pos % 64 and hi
// for pos / 64, combined by the angle-sum formula.
// Bindings: 0 uniform Params; 1 q f32 (rows, qW); 2 k f32 (rows, kW); 3 v f32 (rows, kW); 4 K cache,
//   5 V cache (u32 words: KVF 0 f32, 1 f16, 2 int8); 6 rope tables vec2 (64 * hd/2 lo, then hi rows);
//   7 K scales, 8 V scales (rows, kvDim / hd) f32 (int8 only); group 1: step.
// Dispatch: (ceil(nUnits / 64), live rows), nUnits = max(nHq, nHk, cache heads when write) * hd / (2 NP).
// Precision: f32; f16 cache values rounded to nearest even by pack2x16float; int8 as above.
//!include lib/step.wgsl

override KVF: u32 = 1u;
override STYLE: u32 = 0u;

override NP: u32 = select(2u, 4u, STYLE == 1u);

struct Params {
  nHq: u32,
  nHk: u32,
  hd: u32,
  qW: u32,
  kW: u32,
  write: u32,
  kvDim: u32,
  blockSize: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> ck: array<u32>;
@group(0) @binding(5) var<storage, read_write> cv: array<u32>;
@group(0) @binding(6) var<storage, read> tab: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> ksc: array<f32>;
@group(0) @binding(8) var<storage, read_write> vsc: array<f32>;

var<workgroup> amaxK: array<f32, 64>;
var<workgroup> amaxV: array<f32, 64>;

// (cos, sin) of pos * invFreq[j]
fn rot(pos: u32, j: u32) -> vec2<f32> {
  let half = p.hd / 2u;
  let lo = tab[(pos % 64u) * half + j];
  let hi = tab[(64u + pos / 64u) * half + j];
  return vec2<f32>(hi.x * lo.x - hi.y * lo.y, hi.y * lo.x + hi.x * lo.y);
}

// head-relative index of the thread's element i (pairs are (0, 1), (2, 3), ...) and frequency of pair i
fn elem(u: u32, i: u32) -> u32 {
  if (STYLE == 0u) { return 4u * u + i; }
  return 4u * u + i / 2u + (i & 1u) * (p.hd / 2u);
}

fn freq(u: u32, pr: u32) -> u32 {
  if (STYLE == 0u) { return 2u * u + pr; }
  return 4u * u + pr;
}

// head-relative index of value element i (consecutive: 2 NP per thread)
fn velem(u: u32, i: u32) -> u32 {
  return 2u * NP * u + i;
}

fn roundAway(y: f32) -> f32 {
  let t = trunc(y);
  return t + select(0.0, sign(y), abs(y - t) >= 0.5);
}

// a / b rounded as IEEE division would (one fma correction of the hardware quotient)
fn divRn(a: f32, b: f32) -> f32 {
  let d = a / b;
  return fma(fma(-d, b, a), 1.0 / b, d);
}

// store 2 NP values at head-relative elements e of cache row base (c 0: K, 1: V); scale for int8
fn store(c: u32, base: u32, e: array<u32, 8>, val: array<f32, 8>, inv: f32) {
  for (var i = 0u; i < 2u * NP; i++) {
    let at = base + e[i];
    if (KVF == 0u) {
      if (c == 0u) { ck[at] = bitcast<u32>(val[i]); } else { cv[at] = bitcast<u32>(val[i]); }
    } else if (KVF == 1u) {
      // element at and its neighbour share a word: written once, by the even one, from the pair's values
      if ((at & 1u) == 0u) {
        var j = i + 1u;
        if (STYLE == 1u && c == 0u) { j = i + 2u; }
        let w = pack2x16float(vec2<f32>(val[i], val[j]));
        if (c == 0u) { ck[at / 2u] = w; } else { cv[at / 2u] = w; }
      }
    } else if ((at & 3u) == 0u) {
      // int8: a word is 4 consecutive elements, the thread's 0..3 or 4..7 (value order, see elem)
      var w = 0u;
      for (var b = 0u; b < 4u; b++) {
        var j = i + b;
        if (STYLE == 1u && c == 0u) { j = (i & 1u) + 2u * b; }
        let qv = clamp(roundAway(val[j] * inv), -127.0, 127.0);
        w |= (u32(i32(qv)) & 255u) << (8u * b);
      }
      if (c == 0u) { ck[at / 4u] = w; } else { cv[at / 4u] = w; }
    }
  }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let t = gid.y;
  if (t >= nTokens()) { return; }
  let per = p.hd / (2u * NP); // threads per head
  let h = gid.x / per;
  let u = gid.x % per;
  let pos = posAt(t);
  var e = array<u32, 8>();
  for (var i = 0u; i < 2u * NP; i++) { e[i] = elem(u, i); }
  var cs = array<vec2<f32>, 4>();
  if (h < max(p.nHq, p.nHk)) {
    for (var pr = 0u; pr < NP; pr++) { cs[pr] = rot(pos, freq(u, pr)); }
  }
  if (h < p.nHq) {
    let b = t * p.qW + h * p.hd;
    for (var pr = 0u; pr < NP; pr++) {
      let a0 = q[b + e[2u * pr]];
      let a1 = q[b + e[2u * pr + 1u]];
      q[b + e[2u * pr]] = a0 * cs[pr].x - a1 * cs[pr].y;
      q[b + e[2u * pr + 1u]] = a0 * cs[pr].y + a1 * cs[pr].x;
    }
  }
  let nKv = p.kvDim / p.hd;
  let writes = p.write == 1u && h < nKv;
  var kk = array<f32, 8>();
  var vv = array<f32, 8>();
  let kb = t * p.kW + h * p.hd;
  if (h < p.nHk) {
    for (var pr = 0u; pr < NP; pr++) {
      let a0 = k[kb + e[2u * pr]];
      let a1 = k[kb + e[2u * pr + 1u]];
      kk[2u * pr] = a0 * cs[pr].x - a1 * cs[pr].y;
      kk[2u * pr + 1u] = a0 * cs[pr].y + a1 * cs[pr].x;
      k[kb + e[2u * pr]] = kk[2u * pr];
      k[kb + e[2u * pr + 1u]] = kk[2u * pr + 1u];
    }
  } else if (writes) {
    for (var i = 0u; i < 2u * NP; i++) { kk[i] = k[kb + e[i]]; }
  }
  var ve = array<u32, 8>();
  if (writes) {
    for (var i = 0u; i < 2u * NP; i++) {
      ve[i] = velem(u, i);
      vv[i] = v[kb + ve[i]];
    }
  }
  var invK = 0.0;
  var invV = 0.0;
  if (KVF == 2u) {
    // per-head amax through workgroup memory (every thread takes part in the barriers)
    var mk = 0.0;
    var mv = 0.0;
    for (var i = 0u; i < 2u * NP; i++) {
      mk = max(mk, abs(kk[i]));
      mv = max(mv, abs(vv[i]));
    }
    amaxK[li] = mk;
    amaxV[li] = mv;
    workgroupBarrier();
    let first = li - u;
    mk = 0.0;
    mv = 0.0;
    for (var j = 0u; j < per; j++) {
      mk = max(mk, amaxK[first + j]);
      mv = max(mv, amaxV[first + j]);
    }
    let sk = divRn(mk, 127.0);
    let sv = divRn(mv, 127.0);
    invK = select(0.0, divRn(1.0, sk), sk > 0.0);
    invV = select(0.0, divRn(1.0, sv), sv > 0.0);
    if (writes && u == 0u) {
      let srow = cacheRow(seqAt(t), pos, p.blockSize) * nKv + h;
      ksc[srow] = sk;
      vsc[srow] = sv;
    }
  }
  if (writes) {
    let base = cacheRow(seqAt(t), pos, p.blockSize) * p.kvDim + h * p.hd;
    store(0u, base, e, kk, invK);
    store(1u, base, ve, vv, invV);
  }
}
