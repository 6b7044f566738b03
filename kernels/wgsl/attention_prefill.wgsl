// attention_prefill: causal grouped-query attention for many rows (prefill), an online-softmax tiling. A
// workgroup of 128 threads takes BQ = 32 consecutive rows and one query head; for each sequence among those
// rows it walks the cached positions 0..max(pos) in tiles of BKV = 16, each row masked to its own sequence
// and positions <= its pos. Per tile:
//   1. the tile's K rows (already in registers) go to workgroup memory, rows padded by one vec4 so that the
//      8 key lanes of a quarter warp read distinct banks;
//   2. scores: thread (row pair li / 8, key lane li % 8) takes rows 2 (li / 8) and 2 (li / 8) + 1 against
//      keys li % 8 and li % 8 + 8, each a serial fma chain over d (vec4 reads of q and k);
//   3. the tile's V rows replace K in workgroup memory, and the next tile's K and V rows are loaded into
//      registers (on their way during step 4);
//   4. thread (row li / 4, quarter li % 4) takes its row's softmax step (the row's 4 threads each compute
//      it: no extra barrier) and adds p * V to its dims 4 (li % 4) + 16 j + 0..3, held in named vec4s.
// The per-element operations and their order are those of a plain row-by-row online softmax (scores
// summed over d in order, keys in order within a tile, rescaled per tile).
// Bindings: 0 uniform Params; 1 q (rows, nHeads*HD) f32; 2 K cache; 3 V cache (u32 words: KVF 0 f32,
//   1 f16, 2 int8); 4 out (rows, nHeads*HD) f32; 5 K scales, 6 V scales (rows, nKvHeads) f32 (int8 only);
//   group 1: step.
// Dispatch: (ceil(live rows / 32), nHeads) workgroups of 128. HD a multiple of 4, at most 128; workgroup
//   memory (32 HD + 16 (HD + 4) + 32 * 17 + 65) * 4 bytes.
// Precision: f32 scores, softmax and accumulation; f16 cache values are widened exactly; int8 values are
//   dequantized (q * scale) into the f32 tiles.
//!include lib/step.wgsl

override KVF: u32 = 1u;
override HD: u32 = 128u;

const WG: u32 = 128u;
const BQ: u32 = 32u;
const BKV: u32 = 16u;
const NONE: u32 = 0xffffffffu;
const NEG_INF: f32 = -3.4028234663852886e38;

struct Params {
  nHeads: u32,
  nKvHeads: u32,
  kvDim: u32,
  blockSize: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> ck: array<u32>;
@group(0) @binding(3) var<storage, read> cv: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> ksc: array<f32>;
@group(0) @binding(6) var<storage, read> vsc: array<f32>;

// (HD / 4: vec4 per row of q and of a cache row; HD / 4 + 1: the padded row stride of the K / V tile.
// Written out: naga in Deno 2.9.6 panics on an override initialised from another override.)
var<workgroup> qs: array<vec4<f32>, BQ * HD / 4u>;
var<workgroup> kvs: array<vec4<f32>, BKV * (HD / 4u + 1u)>;
var<workgroup> ss: array<f32, BQ * (BKV + 1u)>;
var<workgroup> rowSeq: array<u32, BQ>;
var<workgroup> rowPos: array<u32, BQ>;
// the distinct sequences of the block's rows and each one's last position (built by thread 0)
var<workgroup> planN: u32;
var<workgroup> planSeq: array<u32, BQ>;
var<workgroup> planMax: array<u32, BQ>;

// the 4 signed bytes of an int8 cache word, in element order
fn i8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// 4 cache values from element e (e % 4 == 0) of K (c = 0) or V; s: the row's int8 scale index
fn kv4(c: u32, e: u32, s: u32) -> vec4<f32> {
  if (KVF == 2u) {
    if (c == 0u) { return i8x4(ck[e / 4u]) * ksc[s]; }
    return i8x4(cv[e / 4u]) * vsc[s];
  }
  if (KVF == 0u) {
    if (c == 0u) { return vec4<f32>(bitcast<f32>(ck[e]), bitcast<f32>(ck[e + 1u]), bitcast<f32>(ck[e + 2u]), bitcast<f32>(ck[e + 3u])); }
    return vec4<f32>(bitcast<f32>(cv[e]), bitcast<f32>(cv[e + 1u]), bitcast<f32>(cv[e + 2u]), bitcast<f32>(cv[e + 3u]));
  }
  if (c == 0u) { return vec4<f32>(unpack2x16float(ck[e / 2u]), unpack2x16float(ck[e / 2u + 1u])); }
  return vec4<f32>(unpack2x16float(cv[e / 2u]), unpack2x16float(cv[e / 2u + 1u]));
}

// one vec4 of K and of V of a tile: tile element e (row e / HD4, vec4 e % HD4) of the tile at position kb
struct KV {
  k: vec4<f32>,
  v: vec4<f32>,
}

// a thread's share of a tile's K and V: elements li + WG i, i < 4 (BKV * HD4 <= 4 WG for HD <= 128)
struct Tile {
  a: KV,
  b: KV,
  c: KV,
  d: KV,
}

fn loadKV(sq: u32, kb: u32, kmax: u32, kvh: u32, e: u32) -> KV {
  let HD4 = HD / 4u;
  var r = KV(vec4<f32>(0.0), vec4<f32>(0.0));
  let i = e / HD4;
  if (i < BKV && kb + i <= kmax) {
    let slot = cacheRow(sq, kb + i, p.blockSize);
    let el = slot * p.kvDim + kvh * HD + (e % HD4) * 4u;
    let si = slot * (p.kvDim / HD) + kvh;
    r.k = kv4(0u, el, si);
    r.v = kv4(1u, el, si);
  }
  return r;
}

fn loadTile(sq: u32, kb: u32, kmax: u32, kvh: u32, li: u32) -> Tile {
  let HD4 = HD / 4u;
  let z = KV(vec4<f32>(0.0), vec4<f32>(0.0));
  var t = Tile(z, z, z, z);
  t.a = loadKV(sq, kb, kmax, kvh, li);
  if (BKV * HD4 > WG) { t.b = loadKV(sq, kb, kmax, kvh, li + WG); }
  if (BKV * HD4 > 2u * WG) { t.c = loadKV(sq, kb, kmax, kvh, li + 2u * WG); }
  if (BKV * HD4 > 3u * WG) { t.d = loadKV(sq, kb, kmax, kvh, li + 3u * WG); }
  return t;
}

// element e of the tile into its padded slot of kvs
fn put(e: u32, v: vec4<f32>) {
  let HD4 = HD / 4u;
  let KS = HD4 + 1u;
  if (e < BKV * HD4) { kvs[(e / HD4) * KS + e % HD4] = v; }
}

// s + dot(a, b) as a serial fma chain in element order
fn fma4(a: vec4<f32>, b: vec4<f32>, s: f32) -> f32 {
  return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, s))));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let live = nTokens();
  let t0 = wid.x * BQ;
  let h = wid.y;
  if (t0 >= live) { return; }
  let kvh = h / (p.nHeads / p.nKvHeads);
  let qStride = p.nHeads * HD;
  let HD4 = HD / 4u;
  let KS = HD4 + 1u;
  if (li < BQ) {
    let t = t0 + li;
    rowSeq[li] = select(NONE, seqAt(t), t < live);
    rowPos[li] = select(0u, posAt(t), t < live);
  }
  for (var i = li; i < BQ * HD4; i += WG) {
    let t = t0 + i / HD4;
    var v = vec4<f32>(0.0);
    if (t < live) {
      let e = t * qStride + h * HD + (i % HD4) * 4u;
      v = vec4<f32>(q[e], q[e + 1u], q[e + 2u], q[e + 3u]) * p.scale;
    }
    qs[i] = v;
  }
  if (li == 0u) {
    var n = 0u;
    for (var i = 0u; i < BQ; i++) {
      let t = t0 + i;
      if (t >= live) { continue; }
      let sqi = seqAt(t);
      let pos = posAt(t);
      var j = 0u;
      while (j < n && planSeq[j] != sqi) { j++; }
      if (j == n) {
        planSeq[n] = sqi;
        planMax[n] = pos;
        n++;
      } else {
        planMax[j] = max(planMax[j], pos);
      }
    }
    planN = n;
  }
  let np = workgroupUniformLoad(&planN);

  // scores: rows r0, r0 + 1 against keys kc, kc + 8
  let r0 = (li / 8u) * 2u;
  let kc = li % 8u;
  // p * V: row r, dims 4 qd + 16 j
  let r = li / 4u;
  let qd = li % 4u;
  var m = NEG_INF;
  var l = 0.0;
  var o0 = vec4<f32>(0.0);
  var o1 = vec4<f32>(0.0);
  var o2 = vec4<f32>(0.0);
  var o3 = vec4<f32>(0.0);
  var o4 = vec4<f32>(0.0);
  var o5 = vec4<f32>(0.0);
  var o6 = vec4<f32>(0.0);
  var o7 = vec4<f32>(0.0);
  // which of the 8 vec4 of dims this thread has (HD < 128 leaves some out)
  let ok1 = qd + 4u < HD4;
  let ok2 = qd + 8u < HD4;
  let ok3 = qd + 12u < HD4;
  let ok4 = qd + 16u < HD4;
  let ok5 = qd + 20u < HD4;
  let ok6 = qd + 24u < HD4;
  let ok7 = qd + 28u < HD4;
  let ok0 = qd < HD4;
  for (var pi = 0u; pi < np; pi++) {
    let sq = workgroupUniformLoad(&planSeq[pi]);
    let kmax = workgroupUniformLoad(&planMax[pi]);
    var tile = loadTile(sq, 0u, kmax, kvh, li);
    for (var kb = 0u; kb <= kmax; kb += BKV) {
      put(li, tile.a.k);
      put(li + WG, tile.b.k);
      put(li + 2u * WG, tile.c.k);
      put(li + 3u * WG, tile.d.k);
      workgroupBarrier();
      var s00 = 0.0;
      var s01 = 0.0;
      var s10 = 0.0;
      var s11 = 0.0;
      for (var d = 0u; d < HD4; d++) {
        let qa = qs[r0 * HD4 + d];
        let qb = qs[(r0 + 1u) * HD4 + d];
        let ka = kvs[kc * KS + d];
        let kz = kvs[(kc + 8u) * KS + d];
        s00 = fma4(qa, ka, s00);
        s01 = fma4(qa, kz, s01);
        s10 = fma4(qb, ka, s10);
        s11 = fma4(qb, kz, s11);
      }
      let inA = rowSeq[r0] == sq;
      let inB = rowSeq[r0 + 1u] == sq;
      let pa = rowPos[r0];
      let pb = rowPos[r0 + 1u];
      ss[r0 * (BKV + 1u) + kc] = select(NEG_INF, s00, inA && kb + kc <= pa);
      ss[r0 * (BKV + 1u) + kc + 8u] = select(NEG_INF, s01, inA && kb + kc + 8u <= pa);
      ss[(r0 + 1u) * (BKV + 1u) + kc] = select(NEG_INF, s10, inB && kb + kc <= pb);
      ss[(r0 + 1u) * (BKV + 1u) + kc + 8u] = select(NEG_INF, s11, inB && kb + kc + 8u <= pb);
      workgroupBarrier();
      put(li, tile.a.v);
      put(li + WG, tile.b.v);
      put(li + 2u * WG, tile.c.v);
      put(li + 3u * WG, tile.d.v);
      if (kb + BKV <= kmax) { tile = loadTile(sq, kb + BKV, kmax, kvh, li); }
      workgroupBarrier();
      if (rowSeq[r] == sq) {
        let sb = r * (BKV + 1u);
        var mt = NEG_INF;
        for (var i = 0u; i < BKV; i++) { mt = max(mt, ss[sb + i]); }
        if (mt > NEG_INF) {
          let mn = max(m, mt);
          let alpha = select(exp(m - mn), 0.0, l == 0.0);
          l *= alpha;
          o0 *= alpha;
          o1 *= alpha;
          o2 *= alpha;
          o3 *= alpha;
          o4 *= alpha;
          o5 *= alpha;
          o6 *= alpha;
          o7 *= alpha;
          for (var i = 0u; i < BKV; i++) {
            let sv = ss[sb + i];
            if (sv > NEG_INF) {
              let pr = vec4<f32>(exp(sv - mn));
              l += pr.x;
              let vb = i * KS + qd;
              if (ok0) { o0 = fma(pr, kvs[vb], o0); }
              if (ok1) { o1 = fma(pr, kvs[vb + 4u], o1); }
              if (ok2) { o2 = fma(pr, kvs[vb + 8u], o2); }
              if (ok3) { o3 = fma(pr, kvs[vb + 12u], o3); }
              if (ok4) { o4 = fma(pr, kvs[vb + 16u], o4); }
              if (ok5) { o5 = fma(pr, kvs[vb + 20u], o5); }
              if (ok6) { o6 = fma(pr, kvs[vb + 24u], o6); }
              if (ok7) { o7 = fma(pr, kvs[vb + 28u], o7); }
            }
          }
          m = mn;
        }
      }
      workgroupBarrier();
    }
  }
  let t = t0 + r;
  if (t < live) {
    let ob = t * qStride + h * HD + qd * 4u;
    if (ok0) { store4(ob, o0 / l); }
    if (ok1) { store4(ob + 16u, o1 / l); }
    if (ok2) { store4(ob + 32u, o2 / l); }
    if (ok3) { store4(ob + 48u, o3 / l); }
    if (ok4) { store4(ob + 64u, o4 / l); }
    if (ok5) { store4(ob + 80u, o5 / l); }
    if (ok6) { store4(ob + 96u, o6 / l); }
    if (ok7) { store4(ob + 112u, o7 / l); }
  }
}

fn store4(e: u32, v: vec4<f32>) {
  out[e] = v.x;
  out[e + 1u] = v.y;
  out[e + 2u] = v.z;
  out[e + 3u] = v.w;
}
