// lib/gemm_body.wgsl: the statements of matmul_gemm's and matmul_gemm_f16's main (workgroup id `wid`,
// thread `li`), included inside main: as a function called from main it compiled slower on the H100
// (int8 7B prefill 1,300 / 1,314 against 1,341 / 1,336 tok/s inline, bench/RESULTS.md 2026-11-26,
// fourth session). Not an op; uses lib/gemm_tiles.wgsl. The tiles may be f32 or f16 (TILE): products and
// sums are f32 either way.
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
    // f32 products and sums (tiles of f16 are widened exactly)
    for (var kk = 0u; kk < BK; kk++) {
      let xr = kk * (4u * TM + 1u);
      let x0 = vec4<f32>(xs[xr + xsb]);
      var x1 = vec4<f32>();
      if (TM == 8u) { x1 = vec4<f32>(xs[xr + xsb + 1u]); }
      let w0 = vec4<f32>(ws[(kk * BN) / 4u + wsb]);
      var w1 = vec4<f32>();
      if (TN == 8u) { w1 = vec4<f32>(ws[(kk * BN) / 4u + wsb + 1u]); }
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
