// add: out = a + b over the live rows (nTokens, or nLogits when logitRows = 1). In place (out is a)
// when INPLACE: then binding 1 is unused and out is read and written.
// Bindings: 0 uniform Params; 1 a f32; 2 b f32; 3 out f32; group 1: step.
// Dispatch: g = ceil(n * rows / 256) workgroups as (min(g, 65535), ceil(g / 65535)); threads past the
//   live elements return.
// Precision: f32.
//!include lib/step.wgsl

override INPLACE: bool = false;

struct Params {
  n: u32,
  logitRows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= live * p.n) { return; }
  if (INPLACE) { out[i] = out[i] + b[i]; } else { out[i] = a[i] + b[i]; }
}
