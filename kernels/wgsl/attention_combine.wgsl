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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let t = wid.y;
  if (t >= nTokens()) { return; }
  let S = u32(step[7]);
  let stride = p.hd + 2u;
  let b0 = (t * p.nHeads + h) * S * stride;
  var mx = -3.4028234663852886e38;
  for (var s = 0u; s < S; s++) {
    if (part[b0 + s * stride + 1u] > 0.0) { mx = max(mx, part[b0 + s * stride]); }
  }
  var den = 0.0;
  for (var s = 0u; s < S; s++) {
    let l = part[b0 + s * stride + 1u];
    if (l > 0.0) { den += l * exp(part[b0 + s * stride] - mx); }
  }
  for (var d = li; d < p.hd; d += 64u) {
    var num = 0.0;
    for (var s = 0u; s < S; s++) {
      if (part[b0 + s * stride + 1u] > 0.0) {
        num += part[b0 + s * stride + 2u + d] * exp(part[b0 + s * stride] - mx);
      }
    }
    out[(t * p.nHeads + h) * p.hd + d] = num / den;
  }
}
