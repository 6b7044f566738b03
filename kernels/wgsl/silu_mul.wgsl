// silu_mul: out = silu(gate) * up = gate / (1 + e^-gate) * up over the live token rows. ALIAS says
// which input out also is (0 none, 1 gate, 2 up); that input's own binding is then unused.
// Bindings: 0 uniform Params; 1 gate f32; 2 up f32; 3 out f32; group 1: step.
// Dispatch: g = ceil(n * rows / 256) workgroups as (min(g, 65535), ceil(g / 65535)).
// Precision: f32.
//!include lib/step.wgsl

override ALIAS: u32 = 0u;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= nTokens() * p.n) { return; }
  var g = 0.0;
  var u = 0.0;
  switch ALIAS {
    case 1u: {
      g = out[i];
      u = up[i];
    }
    case 2u: {
      g = gate[i];
      u = out[i];
    }
    default: {
      g = gate[i];
      u = up[i];
    }
  }
  out[i] = g / (1.0 + exp(-g)) * u;
}
