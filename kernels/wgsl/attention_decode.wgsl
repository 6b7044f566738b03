// attention_decode: causal grouped-query attention for a few rows (decode), flash-decoding style: each
// row's cached positions 0..pos are cut into step[7] splits of ceil((pos + 1) / splits) positions (the
// host picks the splits: attentionSplits in src/backends/webgpu/run.ts); a workgroup takes one (split,
// KV head, row) and all NG query heads that share the KV head, walking its positions in tiles of TP
// with an online softmax. K and V tiles are staged in shared memory with coalesced loads (rows padded
// by one word so the per-position reads do not collide in banks). With one split it writes the output;
// with more it writes (max, sum, unnormalised output) partials for attention_combine.
// ROPE (decode steps whose rows are all of different sequences): the step's RoPE and KV write happen here
// instead of in rope_kv_write: each workgroup rotates its query heads in shared memory, and the workgroup
// of the split holding the row's position rotates k, writes k and v (quantized for int8, as
// rope_kv_write does) into the cache, and reads them back after a storage barrier.
// Bindings: 0 uniform Params; 1 q (rows, nHeads*HD) f32; 2 K cache; 3 V cache (u32 words: KVF 0 = f32,
//   1 = f16 two per word, 2 = int8 four per word); 4 out (rows, nHeads*HD) f32; 5 partials (rows, nHeads,
//   splits, HD + 2) f32; 6 K scales, 7 V scales (rows, nKvHeads) f32 (int8 only); ROPE only: 8 k, 9 v
//   (rows, kvDim) f32 before RoPE, 10 rope tables (see rope_kv_write); group 1: step (positions,
//   sequences, block tables, splits).
// Dispatch: (splits, nKvHeads, live rows) workgroups of WG = 128; HD <= 256, NG <= 8; TP (a power of
//   two) sized by the host to fit workgroup memory.
// Precision: f32 scores, softmax and accumulation; f16 cache values are widened exactly; int8 values are
//   dequantized in registers (q * scale), never stored as f32.
//!include lib/step.wgsl

override KVF: u32 = 1u;
override HD: u32 = 128u;
override NG: u32 = 1u;
override TP: u32 = 32u;
override ROPE: bool = false;
override STYLE: u32 = 0u;

const WG: u32 = 128u;
const NEG_INF: f32 = -3.4028234663852886e38;

struct Params {
  nHeads: u32,
  kvDim: u32,
  blockSize: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> ck: array<u32>;
@group(0) @binding(3) var<storage, read_write> cv: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;
@group(0) @binding(6) var<storage, read_write> ksc: array<f32>;
@group(0) @binding(7) var<storage, read_write> vsc: array<f32>;
@group(0) @binding(8) var<storage, read> kin: array<f32>;
@group(0) @binding(9) var<storage, read> vin: array<f32>;
@group(0) @binding(10) var<storage, read> tab: array<vec2<f32>>;

// words per cached head row (the shared rows are padded by one word against bank conflicts)
override RW: u32 = HD / select(select(1u, 2u, KVF == 1u), 4u, KVF == 2u);

var<workgroup> ks: array<u32, TP * (RW + 1u)>;
var<workgroup> vs: array<u32, TP * (RW + 1u)>;
var<workgroup> qs: array<f32, NG * HD>;
var<workgroup> sc: array<f32, NG * TP>;
var<workgroup> rm: array<f32, NG * TP>;
var<workgroup> rl: array<f32, NG * TP>;
var<workgroup> slots: array<u32, TP>;
var<workgroup> kscale: array<f32, TP>;
var<workgroup> vscale: array<f32, TP>;
var<workgroup> kr: array<f32, HD>;
var<workgroup> vr: array<f32, HD>;
var<workgroup> amax: array<f32, 2>;

// (cos, sin) of pos * invFreq[j] from the host's lo / hi tables
fn rot(pos: u32, j: u32) -> vec2<f32> {
  let half = HD / 2u;
  let lo = tab[(pos % 64u) * half + j];
  let hi = tab[(64u + pos / 64u) * half + j];
  return vec2<f32>(hi.x * lo.x - hi.y * lo.y, hi.y * lo.x + hi.x * lo.y);
}

// the two elements of rotation pair j within a head
fn pairOf(j: u32) -> vec2<u32> {
  if (STYLE == 0u) { return vec2<u32>(2u * j, 2u * j + 1u); }
  return vec2<u32>(j, j + HD / 2u);
}

fn roundAway(y: f32) -> f32 {
  let t = trunc(y);
  return t + select(0.0, sign(y), abs(y - t) >= 0.5);
}

// a / b rounded as IEEE division would (one fma correction of the hardware quotient)
fn divRn(a: f32, b: f32) -> f32 {
  let d = a / b;
  return fma(fma(-d, b, a), 1.0 / b, d);
}

// the 4 signed bytes of an int8 cache word, in element order
fn i8x4(w: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u));
}

// element d of the staged V row i of a tile
fn vAt(i: u32, d: u32) -> f32 {
  if (KVF == 0u) { return bitcast<f32>(vs[i * (RW + 1u) + d]); }
  if (KVF == 1u) { return unpack2x16float(vs[i * (RW + 1u) + d / 2u])[d & 1u]; }
  return i8x4(vs[i * (RW + 1u) + d / 4u])[d & 3u] * vscale[i];
}

// word e (< n) of a tile's K and V rows: (K word, V word) from the cache rows of the tile's slots
fn kvLoad(e: u32, n: u32, kb: u32, rowWords: u32) -> vec2<u32> {
  if (e >= n) { return vec2<u32>(); }
  let src = slots[e / RW] * rowWords + kb + e % RW;
  return vec2<u32>(ck[src], cv[src]);
}

fn kvStore(e: u32, n: u32, w: vec2<u32>) {
  if (e < n) {
    let at = (e / RW) * (RW + 1u) + e % RW;
    ks[at] = w.x;
    vs[at] = w.y;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let s = wid.x;
  let kvh = wid.y;
  let t = wid.z;
  if (t >= nTokens()) { return; }
  let S = u32(step[7]);
  let seq = seqAt(t);
  let len = posAt(t) + 1u;
  // split s takes positions [s * chunk, min(len, (s + 1) * chunk)): not rounded to whole tiles, so short
  // rows spread over every split (a split past len is empty: l = 0, which attention_combine skips)
  let chunk = (len + S - 1u) / S;
  let p0 = s * chunk;
  let p1 = min(len, p0 + chunk);
  let qStride = p.nHeads * HD;
  let rowWords = p.kvDim / (HD / RW);
  let nKv = p.kvDim / HD;
  for (var i = li; i < NG * HD; i += WG) {
    qs[i] = q[t * qStride + kvh * NG * HD + i] * p.scale;
  }
  if (ROPE) {
    let pos = len - 1u;
    workgroupBarrier();
    for (var e = li; e < NG * HD / 2u; e += WG) {
      let g = e / (HD / 2u);
      let j = e % (HD / 2u);
      let pr = pairOf(j) + vec2<u32>(g * HD);
      let c = rot(pos, j);
      let a0 = qs[pr.x];
      let a1 = qs[pr.y];
      qs[pr.x] = a0 * c.x - a1 * c.y;
      qs[pr.y] = a0 * c.y + a1 * c.x;
    }
    if (s == pos / chunk) {
      // this split holds the new row: rotate its k, write k and v into the cache
      let kb = t * p.kvDim + kvh * HD;
      for (var j = li; j < HD / 2u; j += WG) {
        let pr = pairOf(j);
        let c = rot(pos, j);
        let a0 = kin[kb + pr.x];
        let a1 = kin[kb + pr.y];
        kr[pr.x] = a0 * c.x - a1 * c.y;
        kr[pr.y] = a0 * c.y + a1 * c.x;
      }
      for (var d = li; d < HD; d += WG) { vr[d] = vin[kb + d]; }
      workgroupBarrier();
      let slot = cacheRow(seq, pos, p.blockSize);
      var invK = 0.0;
      var invV = 0.0;
      if (KVF == 2u) {
        if (li == 0u) {
          var mk = 0.0;
          var mv = 0.0;
          for (var d = 0u; d < HD; d++) {
            mk = max(mk, abs(kr[d]));
            mv = max(mv, abs(vr[d]));
          }
          amax[0] = mk;
          amax[1] = mv;
        }
        workgroupBarrier();
        let sk = divRn(amax[0], 127.0);
        let sv = divRn(amax[1], 127.0);
        invK = select(0.0, divRn(1.0, sk), sk > 0.0);
        invV = select(0.0, divRn(1.0, sv), sv > 0.0);
        if (li == 0u) {
          ksc[slot * nKv + kvh] = sk;
          vsc[slot * nKv + kvh] = sv;
        }
      }
      let w0 = slot * rowWords + kvh * RW;
      for (var w = li; w < RW; w += WG) {
        if (KVF == 0u) {
          ck[w0 + w] = bitcast<u32>(kr[w]);
          cv[w0 + w] = bitcast<u32>(vr[w]);
        } else if (KVF == 1u) {
          ck[w0 + w] = pack2x16float(vec2<f32>(kr[2u * w], kr[2u * w + 1u]));
          cv[w0 + w] = pack2x16float(vec2<f32>(vr[2u * w], vr[2u * w + 1u]));
        } else {
          var wk = 0u;
          var wv = 0u;
          for (var b = 0u; b < 4u; b++) {
            let qk = clamp(roundAway(kr[4u * w + b] * invK), -127.0, 127.0);
            let qv = clamp(roundAway(vr[4u * w + b] * invV), -127.0, 127.0);
            wk |= (u32(i32(qk)) & 255u) << (8u * b);
            wv |= (u32(i32(qv)) & 255u) << (8u * b);
          }
          ck[w0 + w] = wk;
          cv[w0 + w] = wv;
        }
      }
      // the tile loads below read this row back
      storageBarrier();
    }
  }
  var M = array<f32, 8>();
  var L = array<f32, 8>();
  var alpha = array<f32, 8>();
  var o = array<f32, 16>();
  for (var g = 0u; g < NG; g++) { M[g] = NEG_INF; }
  for (var base = p0; base < p1; base += TP) {
    let np = min(TP, p1 - base);
    if (li < np) {
      let slot = cacheRow(seq, base + li, p.blockSize);
      slots[li] = slot;
      if (KVF == 2u) {
        kscale[li] = ksc[slot * nKv + kvh];
        vscale[li] = vsc[slot * nKv + kvh];
      }
    }
    workgroupBarrier();
    // stage the K and V rows of this tile: consecutive threads read consecutive words, each thread 8 words
    // of K and of V per round, all loaded before any is stored (so the round costs one memory round trip,
    // not eight)
    let n = np * RW;
    let kb = kvh * RW;
    for (var e = li; e < n; e += 8u * WG) {
      let w0 = kvLoad(e, n, kb, rowWords);
      let w1 = kvLoad(e + WG, n, kb, rowWords);
      let w2 = kvLoad(e + 2u * WG, n, kb, rowWords);
      let w3 = kvLoad(e + 3u * WG, n, kb, rowWords);
      let w4 = kvLoad(e + 4u * WG, n, kb, rowWords);
      let w5 = kvLoad(e + 5u * WG, n, kb, rowWords);
      let w6 = kvLoad(e + 6u * WG, n, kb, rowWords);
      let w7 = kvLoad(e + 7u * WG, n, kb, rowWords);
      kvStore(e, n, w0);
      kvStore(e + WG, n, w1);
      kvStore(e + 2u * WG, n, w2);
      kvStore(e + 3u * WG, n, w3);
      kvStore(e + 4u * WG, n, w4);
      kvStore(e + 5u * WG, n, w5);
      kvStore(e + 6u * WG, n, w6);
      kvStore(e + 7u * WG, n, w7);
    }
    workgroupBarrier();
    // scores of (query head g, position i)
    for (var e = li; e < NG * TP; e += WG) {
      let g = e / TP;
      let i = e % TP;
      var sv = NEG_INF;
      if (i < np) {
        sv = 0.0;
        if (KVF == 2u) {
          for (var c = 0u; c < RW; c++) {
            let qv = vec4<f32>(qs[g * HD + 4u * c], qs[g * HD + 4u * c + 1u], qs[g * HD + 4u * c + 2u], qs[g * HD + 4u * c + 3u]);
            sv += dot(i8x4(ks[i * (RW + 1u) + c]), qv);
          }
          sv *= kscale[i];
        } else if (KVF == 1u) {
          // 4 words loaded before they are used (the same additions in the same order)
          let kb = i * (RW + 1u);
          let qb = g * HD;
          var c = 0u;
          for (; c + 4u <= RW; c += 4u) {
            let k0 = unpack2x16float(ks[kb + c]);
            let k1 = unpack2x16float(ks[kb + c + 1u]);
            let k2 = unpack2x16float(ks[kb + c + 2u]);
            let k3 = unpack2x16float(ks[kb + c + 3u]);
            sv = fma(qs[qb + 2u * c], k0.x, fma(qs[qb + 2u * c + 1u], k0.y, sv));
            sv = fma(qs[qb + 2u * c + 2u], k1.x, fma(qs[qb + 2u * c + 3u], k1.y, sv));
            sv = fma(qs[qb + 2u * c + 4u], k2.x, fma(qs[qb + 2u * c + 5u], k2.y, sv));
            sv = fma(qs[qb + 2u * c + 6u], k3.x, fma(qs[qb + 2u * c + 7u], k3.y, sv));
          }
          for (; c < RW; c++) {
            let kk = unpack2x16float(ks[kb + c]);
            sv = fma(qs[qb + 2u * c], kk.x, fma(qs[qb + 2u * c + 1u], kk.y, sv));
          }
        } else {
          for (var d = 0u; d < HD; d++) { sv = fma(qs[g * HD + d], bitcast<f32>(ks[i * (RW + 1u) + d]), sv); }
        }
      }
      sc[e] = sv;
      rm[e] = sv;
      rl[e] = select(0.0, 1.0, i < np);
    }
    workgroupBarrier();
    // tree merge of (max, sum of exp) pairs per query head
    for (var st = TP / 2u; st > 0u; st >>= 1u) {
      for (var e = li; e < NG * st; e += WG) {
        let a = (e / st) * TP + e % st;
        let b = a + st;
        let mm = max(rm[a], rm[b]);
        var l = 0.0;
        if (rl[a] > 0.0) { l += rl[a] * exp(rm[a] - mm); }
        if (rl[b] > 0.0) { l += rl[b] * exp(rm[b] - mm); }
        rm[a] = mm;
        rl[a] = l;
      }
      workgroupBarrier();
    }
    for (var g = 0u; g < NG; g++) {
      let mt = rm[g * TP];
      let mn = max(M[g], mt);
      alpha[g] = select(exp(M[g] - mn), 0.0, L[g] == 0.0);
      L[g] = L[g] * alpha[g] + rl[g * TP] * exp(mt - mn);
      M[g] = mn;
    }
    workgroupBarrier();
    for (var e = li; e < NG * TP; e += WG) {
      let g = e / TP;
      sc[e] = select(0.0, exp(sc[e] - M[g]), e % TP < np);
    }
    workgroupBarrier();
    // p . V: each output sums over the tile's positions in a local variable (the private array o is
    // touched once per tile, not once per position)
    for (var j = 0u; j < 2u; j++) {
      let d = li + j * WG;
      if (d < HD) {
        for (var g = 0u; g < NG; g++) {
          var a = o[g * 2u + j] * alpha[g];
          let sb = g * TP;
          var i = 0u;
          for (; i + 4u <= np; i += 4u) {  // 4 positions' values loaded before they are used
            let v0 = vAt(i, d);
            let v1 = vAt(i + 1u, d);
            let v2 = vAt(i + 2u, d);
            let v3 = vAt(i + 3u, d);
            let s0 = sc[sb + i];
            let s1 = sc[sb + i + 1u];
            let s2 = sc[sb + i + 2u];
            let s3 = sc[sb + i + 3u];
            a = fma(s0, v0, a);
            a = fma(s1, v1, a);
            a = fma(s2, v2, a);
            a = fma(s3, v3, a);
          }
          for (; i < np; i++) { a = fma(sc[sb + i], vAt(i, d), a); }
          o[g * 2u + j] = a;
        }
      }
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 2u; j++) {
    let d = li + j * WG;
    if (d >= HD) { continue; }
    for (var g = 0u; g < NG; g++) {
      let h = kvh * NG + g;
      if (S == 1u) {
        out[t * qStride + h * HD + d] = o[g * 2u + j] / L[g];
      } else {
        let pb = ((t * p.nHeads + h) * S + s) * (HD + 2u);
        part[pb + 2u + d] = o[g * 2u + j];
        if (d == 0u) {
          part[pb] = M[g];
          part[pb + 1u] = L[g];
        }
      }
    }
  }
}
