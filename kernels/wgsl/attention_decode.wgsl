// attention_decode: causal grouped-query attention for a few rows (decode), flash-decoding style: each
// row's cached positions 0..pos are cut into step[7] splits; a workgroup takes one (split, KV head, row)
// and all NG query heads that share the KV head, walking its positions in tiles of WG with an online
// softmax. With one split it writes the output; with more it writes (max, sum, unnormalised output)
// partials for attention_combine.
// Bindings: 0 uniform Params; 1 q (rows, nHeads*HD) f32; 2 K cache; 3 V cache (u32 words, see KVF);
//   4 out (rows, nHeads*HD) f32; 5 partials (rows, nHeads, splits, HD + 2) f32; group 1: step
//   (positions, sequences, block tables, splits).
// Dispatch: (splits, nKvHeads, live rows) workgroups of WG = 128.
// Precision: f32 scores, softmax and accumulation; f16 cache values are widened exactly.
//!include lib/step.wgsl

override KVF: u32 = 1u;
override HD: u32 = 128u;
override NG: u32 = 1u;

const WG: u32 = 128u;

struct Params {
  nHeads: u32,
  kvDim: u32,
  blockSize: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> ck: array<u32>;
@group(0) @binding(3) var<storage, read> cv: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

var<workgroup> qs: array<f32, NG * HD>;
var<workgroup> sc: array<f32, NG * WG>;
var<workgroup> rm: array<f32, NG * WG>;
var<workgroup> rl: array<f32, NG * WG>;
var<workgroup> slots: array<u32, WG>;

const NEG_INF: f32 = -3.4028234663852886e38;

fn k4(e: u32) -> vec4<f32> {
  if (KVF == 0u) { return vec4<f32>(bitcast<f32>(ck[e]), bitcast<f32>(ck[e + 1u]), bitcast<f32>(ck[e + 2u]), bitcast<f32>(ck[e + 3u])); }
  return vec4<f32>(unpack2x16float(ck[e / 2u]), unpack2x16float(ck[e / 2u + 1u]));
}

fn v1(e: u32) -> f32 {
  if (KVF == 0u) { return bitcast<f32>(cv[e]); }
  return unpack2x16float(cv[e / 2u])[e & 1u];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let s = wid.x;
  let kvh = wid.y;
  let t = wid.z;
  if (t >= nTokens()) { return; }
  let S = u32(step[7]);
  let seq = seqAt(t);
  let len = posAt(t) + 1u;
  let chunk = ((len + S - 1u) / S + WG - 1u) / WG * WG;
  let p0 = s * chunk;
  let p1 = min(len, p0 + chunk);
  let qStride = p.nHeads * HD;
  for (var i = li; i < NG * HD; i += WG) {
    qs[i] = q[t * qStride + kvh * NG * HD + i] * p.scale;
  }
  var M = array<f32, 8>();
  var L = array<f32, 8>();
  var alpha = array<f32, 8>();
  var o = array<f32, 16>();
  for (var g = 0u; g < NG; g++) { M[g] = NEG_INF; }
  workgroupBarrier();
  for (var base = p0; base < p1; base += WG) {
    let pi = base + li;
    var sg = array<f32, 8>();
    for (var g = 0u; g < NG; g++) { sg[g] = NEG_INF; }
    if (pi < p1) {
      let row = cacheRow(seq, pi, p.blockSize);
      slots[li] = row;
      for (var g = 0u; g < NG; g++) { sg[g] = 0.0; }
      let e0 = row * p.kvDim + kvh * HD;
      for (var d = 0u; d < HD; d += 4u) {
        let kk = k4(e0 + d);
        for (var g = 0u; g < NG; g++) {
          sg[g] += dot(kk, vec4<f32>(qs[g * HD + d], qs[g * HD + d + 1u], qs[g * HD + d + 2u], qs[g * HD + d + 3u]));
        }
      }
    }
    for (var g = 0u; g < NG; g++) {
      rm[g * WG + li] = sg[g];
      rl[g * WG + li] = select(0.0, 1.0, pi < p1);
    }
    workgroupBarrier();
    // tree merge of (max, sum of exp) pairs per query head
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (li < st) {
        for (var g = 0u; g < NG; g++) {
          let a = g * WG + li;
          let b = a + st;
          let mm = max(rm[a], rm[b]);
          var l = 0.0;
          if (rl[a] > 0.0) { l += rl[a] * exp(rm[a] - mm); }
          if (rl[b] > 0.0) { l += rl[b] * exp(rm[b] - mm); }
          rm[a] = mm;
          rl[a] = l;
        }
      }
      workgroupBarrier();
    }
    for (var g = 0u; g < NG; g++) {
      let mt = rm[g * WG];
      let lt = rl[g * WG];
      let mn = max(M[g], mt);
      alpha[g] = select(exp(M[g] - mn), 0.0, L[g] == 0.0);
      L[g] = L[g] * alpha[g] + lt * exp(mt - mn);
      M[g] = mn;
      sc[g * WG + li] = select(0.0, exp(sg[g] - mn), pi < p1);
    }
    workgroupBarrier();
    let np = min(WG, p1 - base);
    for (var j = 0u; j < 2u; j++) {
      let d = li + j * WG;
      if (d < HD) {
        for (var g = 0u; g < NG; g++) { o[g * 2u + j] *= alpha[g]; }
        for (var pp = 0u; pp < np; pp++) {
          let vv = v1(slots[pp] * p.kvDim + kvh * HD + d);
          for (var g = 0u; g < NG; g++) { o[g * 2u + j] += sc[g * WG + pp] * vv; }
        }
      }
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 2u; j++) {
    let d = li + j * WG;
    if (d >= HD) { continue; }
    for (var g = 0u; g < NG; g++) {
      let h = kvh * NG + g;
      if (S == 1u) {
        out[t * qStride + h * HD + d] = o[g * 2u + j] / L[g];
      } else {
        let pb = ((t * p.nHeads + h) * S + s) * (HD + 2u);
        part[pb + 2u + d] = o[g * 2u + j];
        if (d == 0u) {
          part[pb] = M[g];
          part[pb + 1u] = L[g];
        }
      }
    }
  }
}
