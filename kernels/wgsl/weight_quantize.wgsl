// weight_quantize: weight-only quantization at load, the CUDA backend's scheme: per group of G
// elements of a row, scale = f16(amax / qmax), q = clamp(round_half_away(x / scale)); OUT 3: int8
// (qmax 127, q in [-127, 127], G = K: per output channel), OUT 4: int4 (qmax 7, q in [-8, 7], G = 128).
// Writes the q8/q4 chunks and f16 scales of lib/weights.wgsl.
// Bindings: 0 uniform Params; 1 src raw float bytes as u32 words (SRC 0 f32, 1 f16, 2 bf16);
//   2 out chunks; 3 out scales.
// Dispatch: (SW, m) workgroups of 64 (rows past 65535 folded into z): one scale word (two groups) each.
// Precision: divisions are corrected with an fma step so they round like IEEE division.
//!include lib/bytes.wgsl

override SRC: u32 = 1u;
override OUT: u32 = 3u;
override G: u32 = 128u;

const WG: u32 = 64u;

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

var<workgroup> red: array<f32, WG>;

// a / b rounded as IEEE division would (one Newton correction of the hardware quotient)
fn divRn(a: f32, b: f32) -> f32 {
  let q = a / b;
  let r = fma(-q, b, a);
  return fma(r, 1.0 / b, q);
}

fn roundAway(y: f32) -> f32 {
  let t = trunc(y);
  return t + select(0.0, sign(y), abs(y - t) >= 0.5);
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let r = wid.y + wid.z * nwg.y;
  if (r >= p.m) { return; }
  let sw = wid.x;
  let qmax = select(7.0, 127.0, OUT == 3u);
  var word = 0u;
  for (var h = 0u; h < 2u; h++) {
    let g = 2u * sw + h;
    if (g * G >= p.K) { break; }
    var amax = 0.0;
    for (var i = li; i < G; i += WG) { amax = max(amax, abs(floatAt(SRC, r * p.K + g * G + i))); }
    red[li] = amax;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (li < s) { red[li] = max(red[li], red[li + s]); }
      workgroupBarrier();
    }
    let bits = pack2x16float(vec2<f32>(divRn(red[0], qmax), 0.0)) & 0xffffu;
    let scale = unpack2x16float(bits).x;
    workgroupBarrier();
    word |= bits << (16u * h);
    // quantize: a thread writes whole words (4 int8 or 8 int4 elements)
    let per = select(8u, 4u, OUT == 3u);
    for (var wi = li; wi < G / per; wi += WG) {
      var qw = 0u;
      for (var j = 0u; j < per; j++) {
        let e = wi * per + j;
        var q = 0.0;
        if (scale != 0.0) { q = roundAway(divRn(floatAt(SRC, r * p.K + g * G + e), scale)); }
        if (OUT == 3u) {
          let b = u32(i32(clamp(q, -127.0, 127.0)) + 128);
          let slot = array<u32, 4>(0u, 2u, 1u, 3u)[j];
          qw |= b << (8u * slot);
        } else {
          let nib = u32(i32(clamp(q + 8.0, 0.0, 15.0)));
          let slot = (j >> 1u) + 4u * (j & 1u);
          qw |= nib << (4u * slot);
        }
      }
      // word index within the row: element offset / elements per word
      let we = (g * G) / per + wi;
      let chunk = we / 4u;
      let lane = we % 4u;
      out[r * p.KC + chunk][lane] = qw;
    }
  }
  if (li == 0u) { scales[r * p.SW + sw] = word; }
}
