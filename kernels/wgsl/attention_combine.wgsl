// attention_combine: merges attention_decode's per-split partials (max m_s, sum l_s, unnormalised
// output o_s) into out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s, M = max_s m_s.
// Bindings: 0 uniform Params; 1 partials (rows, nHeads, splits, hd + 2) f32; 2 out (rows, nHeads*hd)
//   f32; group 1: step (live rows, splits).
// Dispatch: (nHeads, live rows) workgroups of 64; threads over the head's dims.
// Precision: f32.
//!include lib/step.wgsl

struct Params {
  nHeads: u32,
  hd: u32,
}

const NEG_INF: f32 = -3.4028234663852886e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// (max, sum) of split s, or (-inf, 0) past the splits
fn ml(b0: u32, stride: u32, s: u32, S: u32) -> vec2<f32> {
  if (s >= S) { return vec2<f32>(NEG_INF, 0.0); }
  return vec2<f32>(part[b0 + s * stride], part[b0 + s * stride + 1u]);
}

fn partAt(b0: u32, stride: u32, s: u32, S: u32, d: u32) -> f32 {
  if (s >= S) { return 0.0; }
  return part[b0 + s * stride + 2u + d];
}

// The loops over splits load 4 splits' values before using any (one memory round trip per 4 splits, not
// per split) and add them in split order.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= nTokens()) { return; }
  let S = u32(step[7]);
  let stride = p.hd + 2u;
  let b0 = (t * p.nHeads + h) * S * stride;
  var mx = NEG_INF;
  for (var s = 0u; s < S; s += 4u) {
    let a = ml(b0, stride, s, S);
    let b = ml(b0, stride, s + 1u, S);
    let c = ml(b0, stride, s + 2u, S);
    let e = ml(b0, stride, s + 3u, S);
    if (a.y > 0.0) { mx = max(mx, a.x); }
    if (b.y > 0.0) { mx = max(mx, b.x); }
    if (c.y > 0.0) { mx = max(mx, c.x); }
    if (e.y > 0.0) { mx = max(mx, e.x); }
  }
  var den = 0.0;
  for (var s = 0u; s < S; s += 4u) {
    let a = ml(b0, stride, s, S);
    let b = ml(b0, stride, s + 1u, S);
    let c = ml(b0, stride, s + 2u, S);
    let e = ml(b0, stride, s + 3u, S);
    if (a.y > 0.0) { den += a.y * exp(a.x - mx); }
    if (b.y > 0.0) { den += b.y * exp(b.x - mx); }
    if (c.y > 0.0) { den += c.y * exp(c.x - mx); }
    if (e.y > 0.0) { den += e.y * exp(e.x - mx); }
  }
  for (var d = li; d < p.hd; d += 64u) {
    var num = 0.0;
    for (var s = 0u; s < S; s += 4u) {
      let a = ml(b0, stride, s, S);
      let b = ml(b0, stride, s + 1u, S);
      let c = ml(b0, stride, s + 2u, S);
      let e = ml(b0, stride, s + 3u, S);
      let pa = partAt(b0, stride, s, S, d);
      let pb = partAt(b0, stride, s + 1u, S, d);
      let pc = partAt(b0, stride, s + 2u, S, d);
      let pe = partAt(b0, stride, s + 3u, S, d);
      if (a.y > 0.0) { num += pa * exp(a.x - mx); }
      if (b.y > 0.0) { num += pb * exp(b.x - mx); }
      if (c.y > 0.0) { num += pc * exp(c.x - mx); }
      if (e.y > 0.0) { num += pe * exp(e.x - mx); }
    }
    out[(t * p.nHeads + h) * p.hd + d] = num / den;
  }
}
