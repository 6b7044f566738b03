// rope_kv_write: rotary embedding of q's nHq heads and k's nHk heads at each row's position (in place),
// then (when write = 1) k and v written into the paged cache at the row's slot. The rope op alone is
// nHk = 0, write = 0; kv_write alone is nHq = nHk = 0. A thread owns 4 elements of a head: interleaved
// pairs (4u, 4u+1), (4u+2, 4u+3), or half pairs (2u, 2u+hd/2), (2u+1, 2u+1+hd/2), so the k it rotates
// is the k it writes and f16 cache words are never shared between threads.
// cos/sin of pos * invFreq[j] come from two host-made tables (computed in f64): lo for pos % 64 and hi
// for pos / 64, combined by the angle-sum formula.
// Bindings: 0 uniform Params; 1 q f32 (rows, qW); 2 k f32 (rows, kW); 3 v f32 (rows, kW); 4 K cache,
//   5 V cache (u32 words: KVF 0 f32, 1 f16); 6 rope tables vec2 (64 * hd/2 lo, then hi rows);
//   group 1: step.
// Dispatch: (ceil(nUnits / 64), live rows), nUnits = max(nHq, nHk, cache heads when write) * hd / 4.
// Precision: f32; f16 cache values rounded to nearest even by pack2x16float.
//!include lib/step.wgsl

override KVF: u32 = 1u;
override STYLE: u32 = 0u;

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

// (cos, sin) of pos * invFreq[j]
fn rot(pos: u32, j: u32) -> vec2<f32> {
  let half = p.hd / 2u;
  let lo = tab[(pos % 64u) * half + j];
  let hi = tab[(64u + pos / 64u) * half + j];
  return vec2<f32>(hi.x * lo.x - hi.y * lo.y, hi.y * lo.x + hi.x * lo.y);
}

// element indices of the thread's 4 values within a head, as two rotation pairs
fn elems(u: u32) -> vec4<u32> {
  if (STYLE == 0u) { return vec4<u32>(4u * u, 4u * u + 1u, 4u * u + 2u, 4u * u + 3u); }
  let half = p.hd / 2u;
  return vec4<u32>(2u * u, 2u * u + half, 2u * u + 1u, 2u * u + 1u + half);
}

fn freqs(u: u32) -> vec2<u32> {
  return vec2<u32>(2u * u, 2u * u + 1u);
}

fn rotate(a: vec4<f32>, c0: vec2<f32>, c1: vec2<f32>) -> vec4<f32> {
  return vec4<f32>(
    a.x * c0.x - a.y * c0.y,
    a.x * c0.y + a.y * c0.x,
    a.z * c1.x - a.w * c1.y,
    a.z * c1.y + a.w * c1.x,
  );
}

// write 4 values at head-relative elements e (pairs of consecutive elements in f16)
fn store(c: u32, base: u32, e: vec4<u32>, val: vec4<f32>) {
  if (KVF == 0u) {
    for (var i = 0u; i < 4u; i++) {
      if (c == 0u) { ck[base + e[i]] = bitcast<u32>(val[i]); } else { cv[base + e[i]] = bitcast<u32>(val[i]); }
    }
    return;
  }
  // f16: the 4 elements form two words: (e.x, e.z) are even, (e.y, e.w) their successors for
  // interleaved; for half style (e.x, e.z) and (e.y, e.w) are the consecutive pairs
  var w0: u32;
  var w1: u32;
  var i0: u32;
  var i1: u32;
  if (STYLE == 0u || c == 1u) {
    w0 = pack2x16float(val.xy);
    w1 = pack2x16float(val.zw);
    i0 = e.x;
    i1 = e.z;
  } else {
    w0 = pack2x16float(val.xz);
    w1 = pack2x16float(val.yw);
    i0 = e.x;
    i1 = e.y;
  }
  if (c == 0u) {
    ck[(base + i0) / 2u] = w0;
    ck[(base + i1) / 2u] = w1;
  } else {
    cv[(base + i0) / 2u] = w0;
    cv[(base + i1) / 2u] = w1;
  }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.y;
  if (t >= nTokens()) { return; }
  let qu = p.hd / 4u;
  let h = gid.x / qu;
  let u = gid.x % qu;
  let pos = posAt(t);
  let e = elems(u);
  let f = freqs(u);
  var c0 = vec2<f32>(1.0, 0.0);
  var c1 = vec2<f32>(1.0, 0.0);
  if (h < max(p.nHq, p.nHk)) {
    c0 = rot(pos, f.x);
    c1 = rot(pos, f.y);
  }
  if (h < p.nHq) {
    let b = t * p.qW + h * p.hd;
    let r = rotate(vec4<f32>(q[b + e.x], q[b + e.y], q[b + e.z], q[b + e.w]), c0, c1);
    q[b + e.x] = r.x;
    q[b + e.y] = r.y;
    q[b + e.z] = r.z;
    q[b + e.w] = r.w;
  }
  let nKv = p.kvDim / p.hd;
  var kk = vec4<f32>(0.0);
  let kb = t * p.kW + h * p.hd;
  if (h < p.nHk) {
    kk = rotate(vec4<f32>(k[kb + e.x], k[kb + e.y], k[kb + e.z], k[kb + e.w]), c0, c1);
    k[kb + e.x] = kk.x;
    k[kb + e.y] = kk.y;
    k[kb + e.z] = kk.z;
    k[kb + e.w] = kk.w;
  } else if (p.write == 1u && h < nKv) {
    kk = vec4<f32>(k[kb + e.x], k[kb + e.y], k[kb + e.z], k[kb + e.w]);
  }
  if (p.write == 1u && h < nKv) {
    let row = cacheRow(seqAt(t), pos, p.blockSize);
    let base = row * p.kvDim + h * p.hd;
    store(0u, base, e, kk);
    let ve = vec4<u32>(4u * u, 4u * u + 1u, 4u * u + 2u, 4u * u + 3u);
    store(1u, base, ve, vec4<f32>(v[kb + ve.x], v[kb + ve.y], v[kb + ve.z], v[kb + ve.w]));
  }
}
