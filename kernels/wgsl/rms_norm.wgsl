// rms_norm: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, per live row r.
// Bindings: 0 uniform Params; 1 x (rows, n) f32; 2 weight (n) f32; 3 out (rows, n) f32; group 1: step.
// Dispatch: (rows capacity, 1, 1) workgroups of 256; rows past the live count (nTokens, or nLogits
//   when logitRows = 1) return at once.
// Precision: f32, tree reduction of the squares.
//!include lib/step.wgsl

const WG: u32 = 256u;

struct Params {
  n: u32,
  logitRows: u32,
  eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wid.x;
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  if (r >= live) { return; }
  let base = r * p.n;
  var ss = 0.0;
  for (var i = li; i < p.n; i += WG) { ss += x[base + i] * x[base + i]; }
  red[li] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(red[0] / f32(p.n) + p.eps);
  for (var i = li; i < p.n; i += WG) { out[base + i] = weight[i] * (inv * x[base + i]); }
}
