// weight_repack: turns a weight matrix's file bytes (staging buffer) into the device layout of
// lib/weights.wgsl. MODE 0: f32/f16/bf16 rows copied into whole 16-byte chunks, zero-padded;
// MODE 1: ggml q8_0 blocks (f16 d, 32 x i8) -> q8 chunks + f16 scales (G = 32);
// MODE 2: ggml q4_0 blocks (f16 d, 16 bytes: element i low nibble, i + 16 high) -> q4 chunks + scales.
// Bindings: 0 uniform Params; 1 src raw bytes as u32 words; 2 out chunks; 3 out scales (u32 = 2 f16).
// Dispatch: (ceil(KC / 64), m) for MODE 0; (ceil(SW / 64), m) for MODE 1/2 (rows past 65535 folded
//   into z): a thread makes one scale
//   word, i.e. two blocks (chunks 2 blocks' worth), so no two threads share a word.
// Precision: exact (a byte rearrangement).
//!include lib/bytes.wgsl

override MODE: u32 = 0u;
override SRC: u32 = 0u;

struct Params {
  K: u32,
  KC: u32,
  SW: u32,
  m: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> scales: array<u32>;

fn padChunk(r: u32, c: u32) {
  var w = vec4<u32>(0u);
  if (SRC == 0u) {
    for (var i = 0u; i < 4u; i++) {
      let k = c * 4u + i;
      if (k < p.K) { w[i] = u32At((r * p.K + k) * 4u); }
    }
  } else {
    for (var i = 0u; i < 8u; i++) {
      let k = c * 8u + i;
      if (k < p.K) { w[i / 2u] |= u16At((r * p.K + k) * 2u) << (16u * (i & 1u)); }
    }
  }
  out[r * p.KC + c] = w;
}

// the repacked block b of row r (32 elements), and its f16 scale bits
fn block(r: u32, b: u32) -> u32 {
  let nb = p.K / 32u;
  if (MODE == 1u) {
    let o = (r * nb + b) * 34u;
    for (var h = 0u; h < 2u; h++) {
      var w = vec4<u32>(0u);
      for (var i = 0u; i < 4u; i++) {
        // word i of the chunk: elements 4i..4i+3 of this half, byte order (e0, e2, e1, e3), +128
        let e = o + 2u + h * 16u + 4u * i;
        let b0 = byteAt(e) ^ 0x80u;
        let b1 = byteAt(e + 1u) ^ 0x80u;
        let b2 = byteAt(e + 2u) ^ 0x80u;
        let b3 = byteAt(e + 3u) ^ 0x80u;
        w[i] = b0 | (b2 << 8u) | (b1 << 16u) | (b3 << 24u);
      }
      out[r * p.KC + 2u * b + h] = w;
    }
    return u16At(o);
  }
  let o = (r * nb + b) * 18u;
  var w = vec4<u32>(0u);
  for (var e = 0u; e < 32u; e++) {
    let byte = byteAt(o + 2u + (e & 15u));
    let nib = select(byte & 15u, byte >> 4u, e >= 16u);
    // word e / 8, slot: even elements 0..3, odd elements 4..7
    let j = e & 7u;
    let slot = (j >> 1u) + 4u * (j & 1u);
    w[e >> 3u] |= nib << (4u * slot);
  }
  out[r * p.KC + b] = w;
  return u16At(o);
}

@compute @workgroup_size(64)
fn main(
  @builtin(global_invocation_id) gid: vec3<u32>,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let r = wid.y + wid.z * nwg.y;
  if (r >= p.m) { return; }
  if (MODE == 0u) {
    if (gid.x < p.KC) { padChunk(r, gid.x); }
    return;
  }
  let sw = gid.x;
  if (sw >= p.SW) { return; }
  let nb = p.K / 32u;
  var word = block(r, 2u * sw);
  if (2u * sw + 1u < nb) { word |= block(r, 2u * sw + 1u) << 16u; }
  scales[r * p.SW + sw] = word;
}
