// matmul_a8: the int8-activation matmul of W8A8 models (src/ops.ts actQuant "int8"):
// out(t, j) = sx(t) * sum_b d(j, b) * sum_{k in b} qw(j, k) * qx(t, k) over q8_0 / q4_0 weights (device
// formats q8 / q4 with one f16 scale per 32), qx and sx from act_quant_int8 (packed in the weights'
// byte order). Integer dot products of 4 packed int8 pairs (dot4I8Packed; with DP4 off, or where the
// WGSL language feature packed_4x8_integer_dot_product is missing (the host then swaps the builtin for
// dot4I8Fallback), the same in unpacked integer math). q8 words: byte ^ 0x80 is the signed code; q4
// words: (nibbles + 0x78) ^ 0x80 per byte is nibble - 8. A chunk (16 bytes) is 16 (q8, half a block) or
// 32 (q4, one block) weights; its integer sum is exact in i32 and is scaled into an f32 accumulator.
// Decode and prefill alike: a workgroup of TK * TR threads takes TR * NR weight rows for NT rows of x
// (workgroup y = row group), TK threads along K, each thread NR rows of one chunk position at a time.
// Bindings: 0 uniform Params; 1 qx (rows, K / 4) u32 as vec4; 2 sx (rows) f32; 3 weight chunks (this
//   part: M rows); 4 f16 scales; 5 out (rows, outW) f32, this part's columns from outOff; group 1: step.
// Dispatch: (ceil(M / (TR * NR)), ceil(live rows / NT)) workgroups; NR * NT <= 16, NR <= 8.
// Precision: exact integer block sums; f32 scaling and accumulation.
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 3u;
override NT: u32 = 1u;
override NR: u32 = 2u;
override TK: u32 = 32u;
override TR: u32 = 8u;
override DP4: bool = true;

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
@group(0) @binding(1) var<storage, read> qx: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> sx: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> sc: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, TR * NR * NT * TK>;

// sum of the products of the 4 signed bytes of a and b
fn dot4I8Fallback(a: u32, b: u32) -> i32 {
  let sh = vec4<u32>(24u, 16u, 8u, 0u);
  let va = bitcast<vec4<i32>>(vec4<u32>(a) << sh) >> vec4<u32>(24u);
  let vb = bitcast<vec4<i32>>(vec4<u32>(b) << sh) >> vec4<u32>(24u);
  return dot(va, vb);
}

fn dp4(a: u32, b: u32) -> i32 {
  if (DP4) { return dot4I8Packed(a, b); }
  return dot4I8Fallback(a, b);
}

// the signed codes of a q8 word (its bytes are code + 128)
fn s8(wd: u32) -> u32 {
  return wd ^ 0x80808080u;
}

// nibbles at bits 0-3 of each byte (0..15) to signed bytes nibble - 8
fn s4(n: u32) -> u32 {
  return (n + 0x78787878u) ^ 0x80808080u;
}

// integer dot of one weight chunk with the matching activation words
fn chunkDot(c: vec4<u32>, a0: vec4<u32>, a1: vec4<u32>) -> i32 {
  if (FMT == F_Q8) {
    return dp4(s8(c.x), a0.x) + dp4(s8(c.y), a0.y) + dp4(s8(c.z), a0.z) + dp4(s8(c.w), a0.w);
  }
  let m = 0x0f0f0f0fu;
  return dp4(s4(c.x & m), a0.x) + dp4(s4((c.x >> 4u) & m), a0.y) + dp4(s4(c.y & m), a0.z) +
    dp4(s4((c.y >> 4u) & m), a0.w) + dp4(s4(c.z & m), a1.x) + dp4(s4((c.z >> 4u) & m), a1.y) +
    dp4(s4(c.w & m), a1.z) + dp4(s4((c.w >> 4u) & m), a1.w);
}

@compute @workgroup_size(TK * TR)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let WG = TK * TR;
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  let row0 = wid.x * TR * NR;
  let t0 = wid.y * NT;
  if (row0 >= p.M || t0 >= live) { return; }
  let tk = li % TK;
  let tr = li / TK;
  let q8 = FMT == F_Q8;
  let AW = select(2u, 1u, q8); // activation vec4 per chunk
  let EP = AW * 16u; // elements per chunk
  let KA = p.K / 16u; // activation vec4 per row

  var acc = array<f32, 16>();
  for (var c = tk; c < p.KC; c += TK) {
    var wc = array<vec4<u32>, 8>();
    var s = array<f32, 8>();
    for (var i = 0u; i < NR; i++) {
      let r = row0 + tr * NR + i;
      if (r < p.M) {
        wc[i] = w[r * p.KC + c];
        let g = c * EP / 32u;
        s[i] = scaleAt(sc[r * p.SW + g / 2u], g);
      }
    }
    for (var t = 0u; t < NT; t++) {
      if (t0 + t < live) {
        let a0 = qx[(t0 + t) * KA + c * AW];
        var a1 = vec4<u32>(0u);
        if (!q8) { a1 = qx[(t0 + t) * KA + c * AW + 1u]; }
        for (var i = 0u; i < NR; i++) {
          acc[i * NT + t] = fma(s[i], f32(chunkDot(wc[i], a0, a1)), acc[i * NT + t]);
        }
      }
    }
  }

  let NO = TR * NR * NT;
  for (var i = 0u; i < NR; i++) {
    for (var t = 0u; t < NT; t++) { red[tk * NO + (tr * NR + i) * NT + t] = acc[i * NT + t]; }
  }
  workgroupBarrier();
  for (var o = li; o < NO; o += WG) {
    let r = row0 + o / NT;
    let t = t0 + o % NT;
    if (r < p.M && t < live) {
      var v = 0.0;
      for (var j = 0u; j < TK; j++) { v += red[j * NO + o]; }
      out[t * p.outW + p.outOff + r] = v * sx[t];
    }
  }
}
