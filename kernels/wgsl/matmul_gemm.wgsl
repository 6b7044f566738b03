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
    for (var kk = 0u; kk < BK; kk++) {
      let xr = kk * (4u * TM + 1u);
      let x0 = xs[xr + xsb];
      var x1 = vec4<f32>();
      if (TM == 8u) { x1 = xs[xr + xsb + 1u]; }
      let w0 = ws[(kk * BN) / 4u + wsb];
      var w1 = vec4<f32>();
      if (TN == 8u) { w1 = ws[(kk * BN) / 4u + wsb + 1u]; }
      a00 = fma(vec4<f32>(x0.x), w0, a00);
      if (TN == 8u) { a01 = fma(vec4<f32>(x0.x), w1, a01); }
      a10 = fma(vec4<f32>(x0.y), w0, a10);
      if (TN == 8u) { a11 = fma(vec4<f32>(x0.y), w1, a11); }
      a20 = fma(vec4<f32>(x0.z), w0, a20);
      if (TN == 8u) { a21 = fma(vec4<f32>(x0.z), w1, a21); }
      a30 = fma(vec4<f32>(x0.w), w0, a30);
      if (TN == 8u) { a31 = fma(vec4<f32>(x0.w), w1, a31); }
      if (TM == 8u) {
        a40 = fma(vec4<f32>(x1.x), w0, a40);
        if (TN == 8u) { a41 = fma(vec4<f32>(x1.x), w1, a41); }
        a50 = fma(vec4<f32>(x1.y), w0, a50);
        if (TN == 8u) { a51 = fma(vec4<f32>(x1.y), w1, a51); }
        a60 = fma(vec4<f32>(x1.z), w0, a60);
        if (TN == 8u) { a61 = fma(vec4<f32>(x1.z), w1, a61); }
        a70 = fma(vec4<f32>(x1.w), w0, a70);
        if (TN == 8u) { a71 = fma(vec4<f32>(x1.w), w1, a71); }
      }
    }
    workgroupBarrier();
  }
  let tb = t0 + ty * TM;
  let rb = n0 + tx * TN;
  storeAcc(tb, rb, live, a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70,
    a71);
}
