// matmul_gemm_f16: matmul_gemm with f16 shared tiles and f16 math (shader-f16) for 16-bit and
// quantized weights (never f32 weights); same Params, bindings and dispatch as matmul_gemm.
// Bindings: 0 uniform Params; 1 x f32; 2 weight chunks; 3 f16 scales; 4 out f32; group 1: step.
// Dispatch: (ceil(M / BN), ceil(liveRows / BM)), 256 threads, TM x TN outputs each.
// Precision: x and the dequantized weights are rounded to f16 in shared memory; products are summed
//   in f16 over 4 steps of K, then accumulated in f32. Used only after the start-up self-check passed.
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
  let BM = 16u * TM;
  let BN = 16u * TN;
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  let n0 = wid.x * BN;
  let t0 = wid.y * BM;
  if (t0 >= live) { return; }
  let tx = li % 16u;
  let ty = li / 16u;
  let cpr = BK / epc(FMT); // chunks per row per K step
  // accumulators in named variables (an array indexed in loops may be placed in local memory):
  // aIJ holds outputs (row ty * TM + I, columns tx * TN + 4 J .. + 3); rows 4..7 only with TM = 8,
  // J = 1 only with TN = 8
  var a00 = vec4<f32>(); var a01 = vec4<f32>();
  var a10 = vec4<f32>(); var a11 = vec4<f32>();
  var a20 = vec4<f32>(); var a21 = vec4<f32>();
  var a30 = vec4<f32>(); var a31 = vec4<f32>();
  var a40 = vec4<f32>(); var a41 = vec4<f32>();
  var a50 = vec4<f32>(); var a51 = vec4<f32>();
  var a60 = vec4<f32>(); var a61 = vec4<f32>();
  var a70 = vec4<f32>(); var a71 = vec4<f32>();
  let xsb = ty * (TM / 4u);
  let wsb = tx * (TN / 4u);
  // double buffering in registers: the next K step's x values (16 per thread at most) and weight
  // chunks (4 at most) are loaded while this step's tiles are multiplied
  var xv = XRegs();
  var wv = WRegs();
  loadTiles(&xv, &wv, li, 0u, t0, n0, live, cpr);
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
    storeTiles(&xv, &wv, li, cpr);
    workgroupBarrier();
    if (k0 + BK < p.K) { loadTiles(&xv, &wv, li, k0 + BK, t0, n0, live, cpr); }
    // products summed in f16 over 4 steps of K, then added to the f32 accumulators
    for (var k4 = 0u; k4 < BK; k4 += 4u) {
      var h00 = vec4<f16>(); var h01 = vec4<f16>();
      var h10 = vec4<f16>(); var h11 = vec4<f16>();
      var h20 = vec4<f16>(); var h21 = vec4<f16>();
      var h30 = vec4<f16>(); var h31 = vec4<f16>();
      var h40 = vec4<f16>(); var h41 = vec4<f16>();
      var h50 = vec4<f16>(); var h51 = vec4<f16>();
      var h60 = vec4<f16>(); var h61 = vec4<f16>();
      var h70 = vec4<f16>(); var h71 = vec4<f16>();
      for (var kk = k4; kk < k4 + 4u; kk++) {
        let xr = kk * (4u * TM + 1u);
        let x0 = xs[xr + xsb];
        var x1 = vec4<f16>();
        if (TM == 8u) { x1 = xs[xr + xsb + 1u]; }
        let w0 = ws[(kk * BN) / 4u + wsb];
        var w1 = vec4<f16>();
        if (TN == 8u) { w1 = ws[(kk * BN) / 4u + wsb + 1u]; }
        h00 = fma(vec4<f16>(x0.x), w0, h00);
        if (TN == 8u) { h01 = fma(vec4<f16>(x0.x), w1, h01); }
        h10 = fma(vec4<f16>(x0.y), w0, h10);
        if (TN == 8u) { h11 = fma(vec4<f16>(x0.y), w1, h11); }
        h20 = fma(vec4<f16>(x0.z), w0, h20);
        if (TN == 8u) { h21 = fma(vec4<f16>(x0.z), w1, h21); }
        h30 = fma(vec4<f16>(x0.w), w0, h30);
        if (TN == 8u) { h31 = fma(vec4<f16>(x0.w), w1, h31); }
        if (TM == 8u) {
          h40 = fma(vec4<f16>(x1.x), w0, h40);
          if (TN == 8u) { h41 = fma(vec4<f16>(x1.x), w1, h41); }
          h50 = fma(vec4<f16>(x1.y), w0, h50);
          if (TN == 8u) { h51 = fma(vec4<f16>(x1.y), w1, h51); }
          h60 = fma(vec4<f16>(x1.z), w0, h60);
          if (TN == 8u) { h61 = fma(vec4<f16>(x1.z), w1, h61); }
          h70 = fma(vec4<f16>(x1.w), w0, h70);
          if (TN == 8u) { h71 = fma(vec4<f16>(x1.w), w1, h71); }
        }
      }
      a00 += vec4<f32>(h00); a01 += vec4<f32>(h01);
      a10 += vec4<f32>(h10); a11 += vec4<f32>(h11);
      a20 += vec4<f32>(h20); a21 += vec4<f32>(h21);
      a30 += vec4<f32>(h30); a31 += vec4<f32>(h31);
      a40 += vec4<f32>(h40); a41 += vec4<f32>(h41);
      a50 += vec4<f32>(h50); a51 += vec4<f32>(h51);
      a60 += vec4<f32>(h60); a61 += vec4<f32>(h61);
      a70 += vec4<f32>(h70); a71 += vec4<f32>(h71);
    }
    workgroupBarrier();
  }
  let tb = t0 + ty * TM;
  let rb = n0 + tx * TN;
  storeAcc(tb, rb, live, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70,
    a71);
}
