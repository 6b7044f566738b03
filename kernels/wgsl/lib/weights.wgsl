// lib/weights.wgsl: decoding the device weight layout (included by embed, matmul_gemv, matmul_gemm*).
// Not an op. f32 math only: WGSL's bitcast to f16 vectors is rejected by naga in Deno 2.9.6, so the
// integer-to-float tricks below build f32 bit patterns.
// Note for every kernel: naga in Deno 2.9.6 does not re-zero a `var` declared without an initializer
// inside a loop body on each iteration, so every `var` here is declared with an explicit initializer.
//
// A weight row is a run of 16-byte chunks (vec4<u32>), zero-padded to a whole chunk; per chunk:
//   FMT 0 f32: 4 elements | 1 f16: 8 (element 2i in the low half of word i) | 2 bf16: 8 (same)
//   FMT 3 q8: 16 bytes, byte = q + 128, word byte order (e0, e2, e1, e3); one f16 scale per G elements
//   FMT 4 q4: 32 nibbles, nibble = q + 8, word nibble order (e0, e2, e4, e6, e1, e3, e5, e7)
// Scales: f16, two per u32 (group 2i in the low half), SW words per row. value = scale * q.

const F_F32: u32 = 0u;
const F_F16: u32 = 1u;
const F_BF16: u32 = 2u;
const F_Q8: u32 = 3u;
const F_Q4: u32 = 4u;

// bitcast<f32>(MAGIC | n) == 8388608.0 + n for n < 2^23: integer to float without a conversion op
const MAGIC: u32 = 0x4b000000u;

fn epc(fmt: u32) -> u32 {
  return array<u32, 5>(4u, 8u, 8u, 16u, 32u)[fmt];
}

fn f16pair(w: u32) -> vec2<f32> {
  return unpack2x16float(w);
}

fn bf16pair(w: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

// elements 0..3 of a q8 word, natural order
fn q8word(w: u32) -> vec4<f32> {
  let b = (vec4<u32>(w) >> vec4<u32>(0u, 16u, 8u, 24u)) & vec4<u32>(255u);
  return bitcast<vec4<f32>>(b | vec4<u32>(MAGIC)) - vec4<f32>(8388736.0);
}

// elements 0, 2, 4, 6 of a q4 word
fn q4even(w: u32) -> vec4<f32> {
  let n = (vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
  return bitcast<vec4<f32>>(n | vec4<u32>(MAGIC)) - vec4<f32>(8388616.0);
}

// elements 1, 3, 5, 7 of a q4 word
fn q4odd(w: u32) -> vec4<f32> {
  let n = (vec4<u32>(w) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u);
  return bitcast<vec4<f32>>(n | vec4<u32>(MAGIC)) - vec4<f32>(8388616.0);
}

// the f16 scale of group g of a row whose scales start at word s0
fn scaleAt(sw: u32, g: u32) -> f32 {
  return unpack2x16float(sw)[g & 1u];
}

// element e (0..EPC-1) of a chunk, natural order
fn chunkElem(fmt: u32, c: vec4<u32>, e: u32) -> f32 {
  switch fmt {
    case 0u: { return bitcast<f32>(c[e]); }
    case 1u: { return f16pair(c[e >> 1u])[e & 1u]; }
    case 2u: { return bf16pair(c[e >> 1u])[e & 1u]; }
    case 3u: { return q8word(c[e >> 2u])[e & 3u]; }
    default: {
      let w = c[e >> 3u];
      let j = e & 7u;
      return select(q4even(w)[j >> 1u], q4odd(w)[j >> 1u], (j & 1u) == 1u);
    }
  }
}
