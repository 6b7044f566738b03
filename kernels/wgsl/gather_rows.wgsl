// gather_rows: out[i, :] = x[logitRows[i], :] for the step's logit rows.
// Bindings: 0 uniform Params; 1 x f32; 2 out f32; group 1: step.
// Dispatch: (ceil(n / 256), maxLogitRows).
// Precision: exact copy.
//!include lib/step.wgsl

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y;
  if (gid.x >= p.n || i >= nLogits()) { return; }
  out[i * p.n + gid.x] = x[logitRowAt(i) * p.n + gid.x];
}
