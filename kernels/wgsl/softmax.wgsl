// softmax: in place over each live row, p_i = e^((x_i - max) / temperature) / sum_j e^((x_j - max) / T).
// Rows are the logit rows (nLogits) of the step. Used by device-side sampling and checked against ref.
// Bindings: 0 uniform Params; 1 x (rows, n) f32, read and written; group 1: step.
// Dispatch: (maxRows) workgroups of 256; rows past nLogits return.
// Precision: f32 with tree reductions for the max and the sum.
//!include lib/step.wgsl

const WG: u32 = 256u;

struct Params {
  n: u32,
  temperature: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wid.x;
  if (r >= nLogits()) { return; }
  let base = r * p.n;
  var mx = -3.4028234663852886e38;
  for (var i = li; i < p.n; i += WG) { mx = max(mx, x[base + i]); }
  red[li] = mx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var i = li; i < p.n; i += WG) {
    let e = exp((x[base + i] - m) / p.temperature);
    x[base + i] = e;
    sum += e;
  }
  red[li] = sum;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / red[0];
  for (var i = li; i < p.n; i += WG) { x[base + i] *= inv; }
}
