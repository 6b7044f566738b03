// attention_prefill: causal grouped-query attention for many rows (prefill). A workgroup takes BQ = 16
// consecutive rows and one query head; for each sequence among those rows it walks the cached positions
// 0..max(pos) in tiles of BKV = 16 (K and V tiles in shared memory) with an online softmax, each row
// masked to its own sequence and positions <= its pos.
// Bindings: 0 uniform Params; 1 q (rows, nHeads*HD) f32; 2 K cache; 3 V cache (u32 words: KVF 0 f32,
//   1 f16, 2 int8); 4 out (rows, nHeads*HD) f32; 5 K scales, 6 V scales (rows, nKvHeads) f32 (int8 only);
//   group 1: step.
// Dispatch: (ceil(live rows / BQ), nHeads) workgroups of 128; for the output, thread li owns row li/8
//   and dims li%8 + 8j.
// Precision: f32 scores, softmax and accumulation; f16 cache values are widened exactly; int8 values are
//   dequantized (q * scale) into the f32 tiles.
//!include lib/step.wgsl

override KVF: u32 = 1u;
override HD: u32 = 128u;

const WG: u32 = 128u;
const BQ: u32 = 16u;
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

var<workgroup> qs: array<f32, BQ * HD>;
var<workgroup> ks: array<f32, BKV * HD>;
var<workgroup> vs: array<f32, BKV * HD>;
var<workgroup> ss: array<f32, BQ * BKV>;
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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let live = nTokens();
  let t0 = wid.x * BQ;
  let h = wid.y;
  if (t0 >= live) { return; }
  let kvh = h / (p.nHeads / p.nKvHeads);
  let qStride = p.nHeads * HD;
  if (li < BQ) {
    let t = t0 + li;
    rowSeq[li] = select(NONE, seqAt(t), t < live);
    rowPos[li] = select(0u, posAt(t), t < live);
  }
  for (var i = li; i < BQ * HD; i += WG) {
    let t = t0 + i / HD;
    qs[i] = select(0.0, q[t * qStride + h * HD + i % HD] * p.scale, t < live);
  }
  workgroupBarrier();

  let r = li / 8u;
  let lane = li % 8u;
  var m = NEG_INF;
  var l = 0.0;
  var o = array<f32, 32>();
  if (li == 0u) {
    var n = 0u;
    for (var i = 0u; i < BQ; i++) {
      if (rowSeq[i] == NONE) { continue; }
      var j = 0u;
      while (j < n && planSeq[j] != rowSeq[i]) { j++; }
      if (j == n) {
        planSeq[n] = rowSeq[i];
        planMax[n] = rowPos[i];
        n++;
      } else {
        planMax[j] = max(planMax[j], rowPos[i]);
      }
    }
    planN = n;
  }
  let np = workgroupUniformLoad(&planN);
  for (var pi = 0u; pi < np; pi++) {
    let sq = workgroupUniformLoad(&planSeq[pi]);
    let kmax = workgroupUniformLoad(&planMax[pi]);
    for (var kb = 0u; kb <= kmax; kb += BKV) {
      for (var e = li; e < BKV * HD / 4u; e += WG) {
        let i = e / (HD / 4u);
        let d = (e % (HD / 4u)) * 4u;
        var kk = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
        if (kb + i <= kmax) {
          let slot = cacheRow(sq, kb + i, p.blockSize);
          let el = slot * p.kvDim + kvh * HD + d;
          let si = slot * (p.kvDim / HD) + kvh;
          kk = kv4(0u, el, si);
          vv = kv4(1u, el, si);
        }
        for (var c = 0u; c < 4u; c++) {
          ks[i * HD + d + c] = kk[c];
          vs[i * HD + d + c] = vv[c];
        }
      }
      workgroupBarrier();
      for (var e = li; e < BQ * BKV; e += WG) {
        let rr = e / BKV;
        let i = e % BKV;
        var sv = NEG_INF;
        if (rowSeq[rr] == sq && kb + i <= rowPos[rr]) {
          sv = 0.0;
          for (var d = 0u; d < HD; d++) { sv = fma(qs[rr * HD + d], ks[i * HD + d], sv); }
        }
        ss[e] = sv;
      }
      workgroupBarrier();
      if (rowSeq[r] == sq) {
        var mt = NEG_INF;
        for (var i = 0u; i < BKV; i++) { mt = max(mt, ss[r * BKV + i]); }
        if (mt > NEG_INF) {
          let mn = max(m, mt);
          let alpha = select(exp(m - mn), 0.0, l == 0.0);
          l *= alpha;
          for (var j = 0u; j < HD / 8u; j++) { o[j] *= alpha; }
          for (var i = 0u; i < BKV; i++) {
            let sv = ss[r * BKV + i];
            if (sv > NEG_INF) {
              let pr = exp(sv - mn);
              l += pr;
              for (var j = 0u; j < HD / 8u; j++) { o[j] = fma(pr, vs[i * HD + lane + 8u * j], o[j]); }
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
    for (var j = 0u; j < HD / 8u; j++) { out[t * qStride + h * HD + lane + 8u * j] = o[j] / l; }
  }
}
