// matmul_gemm_f16: matmul_gemm with f16 shared tiles (shader-f16; half the workgroup memory) for 16-bit
// and quantized weights (never f32 weights); same Params, bindings, dispatch and body (lib/gemm_tiles.wgsl).
// Bindings: 0 uniform Params; 1 x f32; 2 weight chunks; 3 f16 scales; 4 out f32; group 1: step.
// Dispatch: (ceil(M / BN), ceil(liveRows / BM)), 256 threads, TM x TN outputs each.
// Precision: x and the dequantized weights are rounded to f16 in shared memory; products and sums in
//   f32 (an f16 sum over 4 steps of K before each f32 addition was 2.4% slower on the H100). Used only
//   after the start-up self-check passed.
enable f16;
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 1u;
override G: u32 = 32u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override RESIDUAL: bool = false;

const BK: u32 = 32u;

struct Params {
  K: u32,
  KC: u32,
  SW: u32,
  M: u32,
  outW: u32,
  outOff: u32,
  logitRows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> sc: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> xs: array<vec4<f16>, BK * (4u * TM + 1u)>;
var<workgroup> ws: array<vec4<f16>, BK * 4u * TN>;

// the type of the shared tiles (lib/gemm_tiles.wgsl)
alias TILE = f16;

//!include lib/gemm_tiles.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
//!include lib/gemm_body.wgsl
}
