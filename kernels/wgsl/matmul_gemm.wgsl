// matmul_gemm: out(t, j) = sum_k x(t, k) * w(j, k) for many rows t (prefill), any weight format, tiled
// through shared memory; optional residual epilogue out += result (RESIDUAL).
// Bindings: 0 uniform Params; 1 x (rows, K) f32; 2 weight chunks (this part: M rows); 3 f16 scales;
//   4 out (rows, outW) f32, this part's columns start at outOff; group 1: step (live rows).
// Dispatch: (ceil(M / BN), ceil(liveRows / BM)) workgroups of 256 = 16 x 16 threads, each thread a
//   TM x TN tile of outputs (BM = 16 TM rows of x, BN = 16 TN weight rows; TM and TN each 4 or 8, the
//   host checks); K in steps of BK = 32. The next K step's x values (16 per thread at most, coalesced
//   along K) and weight chunks (4 at most) are loaded into registers while this step's tiles are
//   multiplied (double buffering); the outputs live in named variables.
// Precision: f32 math and accumulation; weights dequantized exactly.
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 0u;
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

var<workgroup> xs: array<vec4<f32>, BK * (4u * TM + 1u)>;
var<workgroup> ws: array<vec4<f32>, BK * 4u * TN>;

// the type of the shared tiles (lib/gemm_tiles.wgsl)
alias TILE = f32;

//!include lib/gemm_tiles.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
//!include lib/gemm_body.wgsl
}
