// lib/gemm_tiles.wgsl: the staging of matmul_gemm's and matmul_gemm_f16's tiles (their main body is
// lib/gemm_body.wgsl). Not an op. The including kernel declares Params p, the bindings x, w, sc and out, the overrides
// FMT, G, TM, TN, RESIDUAL, BK, the workgroup tiles xs and ws, and `alias TILE` (f32 or f16: the type of
// the tiles' elements).

// The x tile, transposed, one padded row of the tile per k: element (kk, t) at xs[kk * (4 TM + 1) + t / 4][t % 4]
// (BM / 4 + 1 vec4 per row: the pad spreads the stores of consecutive k over the banks)

// element e of the x tile: k = k0 + e % BK, row t = t0 + e / BK (consecutive threads read consecutive k
// of one row: coalesced), 0 past the rows / K / tile
fn xLoad(e: u32, k0: u32, t0: u32, live: u32) -> f32 {
  let BM = 16u * TM;
  let t = t0 + e / BK;
  let k = k0 + e % BK;
  if (e >= BK * BM || t >= live || k >= p.K) { return 0.0; }
  return x[t * p.K + k];
}

fn xStore(e: u32, v: f32) {
  let BM = 16u * TM;
  if (e < BK * BM) {
    let tl = e / BK;
    xs[(e % BK) * (4u * TM + 1u) + tl / 4u][tl % 4u] = TILE(v);
  }
}

// chunk e of the weight tile (row rl = e % BN, chunk ch = e / BN) and its scale (0 past the rows / K)
struct WChunk {
  c: vec4<u32>,
  s: f32,
}

fn wLoad(e: u32, k0: u32, n0: u32, cpr: u32) -> WChunk {
  let BN = 16u * TN;
  let n = epc(FMT);
  let r = n0 + e % BN;
  let c = k0 / n + e / BN;
  var wc = WChunk(vec4<u32>(0u), 0.0);
  if (e < BN * cpr && r < p.M && c < p.KC) {
    wc.c = w[r * p.KC + c];
    wc.s = 1.0;
    if (FMT >= F_Q8) {
      let g = c * n / G;
      wc.s = scaleAt(sc[r * p.SW + g / 2u], g);
    }
  }
  return wc;
}

// element k (of the K step) of weight row rl into the transposed tile
fn wPut(k: u32, rl: u32, v: f32) {
  let BN = 16u * TN;
  ws[(k * BN + rl) / 4u][rl % 4u] = TILE(v);
}

// the chunk's elements, scaled, into the tile: each word decoded once (4 elements of f32 / q8, 2 of f16 /
// bf16, 8 of q4 per word), not each element through chunkElem
fn wStore(e: u32, cpr: u32, wc: WChunk) {
  let BN = 16u * TN;
  if (e >= BN * cpr) { return; }
  let rl = e % BN;
  let k = (e / BN) * epc(FMT);
  let s = wc.s;
  for (var i = 0u; i < 4u; i++) {
    let wd = wc.c[i];
    switch FMT {
      case 0u: { wPut(k + i, rl, s * bitcast<f32>(wd)); }
      case 1u, 2u: {
        let v = select(bf16pair(wd), f16pair(wd), FMT == F_F16);
        wPut(k + 2u * i, rl, s * v.x);
        wPut(k + 2u * i + 1u, rl, s * v.y);
      }
      case 3u: {
        let v = q8word(wd);
        wPut(k + 4u * i, rl, s * v.x);
        wPut(k + 4u * i + 1u, rl, s * v.y);
        wPut(k + 4u * i + 2u, rl, s * v.z);
        wPut(k + 4u * i + 3u, rl, s * v.w);
      }
      default: {
        let ev = q4even(wd);
        let od = q4odd(wd);
        let b = k + 8u * i;
        wPut(b, rl, s * ev.x);
        wPut(b + 1u, rl, s * od.x);
        wPut(b + 2u, rl, s * ev.y);
        wPut(b + 3u, rl, s * od.y);
        wPut(b + 4u, rl, s * ev.z);
        wPut(b + 5u, rl, s * od.z);
        wPut(b + 6u, rl, s * ev.w);
        wPut(b + 7u, rl, s * od.w);
      }
    }
  }
}

// one K step's tiles in registers: a thread's 16 x elements (BK * BM <= 4096 = 16 * 256) and 4 weight
// chunks (BN * chunks per row <= 128 * 8 = 4 * 256)
struct XRegs {
  v0: f32,
  v1: f32,
  v2: f32,
  v3: f32,
  v4: f32,
  v5: f32,
  v6: f32,
  v7: f32,
  v8: f32,
  v9: f32,
  v10: f32,
  v11: f32,
  v12: f32,
  v13: f32,
  v14: f32,
  v15: f32,
}

struct WRegs {
  w0: WChunk,
  w1: WChunk,
  w2: WChunk,
  w3: WChunk,
}

fn loadTiles(xv: ptr<function, XRegs>, wv: ptr<function, WRegs>, li: u32, k0: u32, t0: u32, n0: u32, live: u32,
  cpr: u32) {
  (*xv).v0 = xLoad(li + 0u, k0, t0, live);
  (*xv).v1 = xLoad(li + 256u, k0, t0, live);
  (*xv).v2 = xLoad(li + 512u, k0, t0, live);
  (*xv).v3 = xLoad(li + 768u, k0, t0, live);
  (*xv).v4 = xLoad(li + 1024u, k0, t0, live);
  (*xv).v5 = xLoad(li + 1280u, k0, t0, live);
  (*xv).v6 = xLoad(li + 1536u, k0, t0, live);
  (*xv).v7 = xLoad(li + 1792u, k0, t0, live);
  (*xv).v8 = xLoad(li + 2048u, k0, t0, live);
  (*xv).v9 = xLoad(li + 2304u, k0, t0, live);
  (*xv).v10 = xLoad(li + 2560u, k0, t0, live);
  (*xv).v11 = xLoad(li + 2816u, k0, t0, live);
  (*xv).v12 = xLoad(li + 3072u, k0, t0, live);
  (*xv).v13 = xLoad(li + 3328u, k0, t0, live);
  (*xv).v14 = xLoad(li + 3584u, k0, t0, live);
  (*xv).v15 = xLoad(li + 3840u, k0, t0, live);
  (*wv).w0 = wLoad(li + 0u, k0, n0, cpr);
  (*wv).w1 = wLoad(li + 256u, k0, n0, cpr);
  (*wv).w2 = wLoad(li + 512u, k0, n0, cpr);
  (*wv).w3 = wLoad(li + 768u, k0, n0, cpr);
}

fn storeTiles(xv: ptr<function, XRegs>, wv: ptr<function, WRegs>, li: u32, cpr: u32) {
  xStore(li + 0u, (*xv).v0);
  xStore(li + 256u, (*xv).v1);
  xStore(li + 512u, (*xv).v2);
  xStore(li + 768u, (*xv).v3);
  xStore(li + 1024u, (*xv).v4);
  xStore(li + 1280u, (*xv).v5);
  xStore(li + 1536u, (*xv).v6);
  xStore(li + 1792u, (*xv).v7);
  xStore(li + 2048u, (*xv).v8);
  xStore(li + 2304u, (*xv).v9);
  xStore(li + 2560u, (*xv).v10);
  xStore(li + 2816u, (*xv).v11);
  xStore(li + 3072u, (*xv).v12);
  xStore(li + 3328u, (*xv).v13);
  xStore(li + 3584u, (*xv).v14);
  xStore(li + 3840u, (*xv).v15);
  wStore(li + 0u, cpr, (*wv).w0);
  wStore(li + 256u, cpr, (*wv).w1);
  wStore(li + 512u, cpr, (*wv).w2);
  wStore(li + 768u, cpr, (*wv).w3);
}

// outputs (row t, columns r0 .. r0 + 3) of the tile, within the rows and the part's M
fn store4(t: u32, r0: u32, v: vec4<f32>, live: u32) {
  if (t >= live) { return; }
  for (var j = 0u; j < 4u; j++) {
    let r = r0 + j;
    if (r < p.M) {
      let idx = t * p.outW + p.outOff + r;
      if (RESIDUAL) { out[idx] = out[idx] + v[j]; } else { out[idx] = v[j]; }
    }
  }
}

// the thread's TM x TN outputs (aIJ: row tb + I, columns rb + 4 J .. + 3; rows 4..7 only with TM = 8,
// J = 1 only with TN = 8)
fn storeAcc(
  tb: u32,
  rb: u32,
  live: u32,
  a00: vec4<f32>, a01: vec4<f32>, a10: vec4<f32>, a11: vec4<f32>,
  a20: vec4<f32>, a21: vec4<f32>, a30: vec4<f32>, a31: vec4<f32>,
  a40: vec4<f32>, a41: vec4<f32>, a50: vec4<f32>, a51: vec4<f32>,
  a60: vec4<f32>, a61: vec4<f32>, a70: vec4<f32>, a71: vec4<f32>,
) {
  store4(tb + 0u, rb, a00, live);
  if (TN == 8u) { store4(tb + 0u, rb + 4u, a01, live); }
  store4(tb + 1u, rb, a10, live);
  if (TN == 8u) { store4(tb + 1u, rb + 4u, a11, live); }
  store4(tb + 2u, rb, a20, live);
  if (TN == 8u) { store4(tb + 2u, rb + 4u, a21, live); }
  store4(tb + 3u, rb, a30, live);
  if (TN == 8u) { store4(tb + 3u, rb + 4u, a31, live); }
  if (TM == 8u) { store4(tb + 4u, rb, a40, live); }
  if (TN == 8u && TM == 8u) { store4(tb + 4u, rb + 4u, a41, live); }
  if (TM == 8u) { store4(tb + 5u, rb, a50, live); }
  if (TN == 8u && TM == 8u) { store4(tb + 5u, rb + 4u, a51, live); }
  if (TM == 8u) { store4(tb + 6u, rb, a60, live); }
  if (TN == 8u && TM == 8u) { store4(tb + 6u, rb + 4u, a61, live); }
  if (TM == 8u) { store4(tb + 7u, rb, a70, live); }
  if (TN == 8u && TM == 8u) { store4(tb + 7u, rb + 4u, a71, live); }
}
