// act_quant_int8: per-row dynamic int8 quantization of activations for W8A8 matmuls (src/ops.ts): per
// live row, amax = max |x|, sx = f32(amax / 127), inv = sx > 0 ? f32(1 / sx) : 0,
// q = clamp(round_half_away(f32(x * inv)), -127, 127), packed four per u32 in the byte order of the
// weight words matmul_a8 multiplies them with: FMT 3 (q8): word i holds elements 4i + (0, 2, 1, 3);
// FMT 4 (q4): words 2j, 2j + 1 hold elements 8j + (0, 4, 1, 5) and 8j + (2, 6, 3, 7).
// Bindings: 0 uniform Params; 1 x (rows, K) f32; 2 q (rows, K / 4) u32; 3 sx (rows) f32; group 1: step.
// Dispatch: (ceil(K / 1024), max rows) workgroups of 256: each finds its row's amax (every workgroup of
//   the row reads the whole row: one workgroup per row took ~9.5 us per 4096-wide row on the H100) and
//   writes 256 words; rows past the live rows return. K a multiple of 8.
// Precision: divisions are corrected with an fma step so they round like IEEE division (as the int8 KV
//   cache's quantizer).
//!include lib/step.wgsl

override FMT: u32 = 3u;

const WG: u32 = 256u;

struct Params {
  K: u32,
  logitRows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> q: array<u32>;
@group(0) @binding(3) var<storage, read_write> sx: array<f32>;

var<workgroup> red: array<f32, WG>;

fn divRn(a: f32, b: f32) -> f32 {
  let d = a / b;
  return fma(fma(-d, b, a), 1.0 / b, d);
}

fn roundAway(y: f32) -> f32 {
  let t = trunc(y);
  return t + select(0.0, sign(y), abs(y - t) >= 0.5);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wid.y;
  let live = select(nTokens(), nLogits(), p.logitRows == 1u);
  if (r >= live) { return; }
  let base = r * p.K;
  var amax = 0.0;
  for (var i = li; i < p.K; i += WG) { amax = max(amax, abs(x[base + i])); }
  red[li] = amax;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let scale = divRn(red[0], 127.0);
  let inv = select(0.0, divRn(1.0, scale), scale > 0.0);
  if (li == 0u) { sx[r] = scale; }
  let wi = wid.x * WG + li;
  if (wi < p.K / 4u) {
    var e = vec4<u32>(4u * wi) + vec4<u32>(0u, 2u, 1u, 3u);
    if (FMT == 4u) {
      let j = 8u * (wi / 2u);
      e = select(vec4<u32>(j) + vec4<u32>(0u, 4u, 1u, 5u), vec4<u32>(j) + vec4<u32>(2u, 6u, 3u, 7u), (wi & 1u) == 1u);
    }
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {
      let v = clamp(roundAway(x[base + e[b]] * inv), -127.0, 127.0);
      word |= (u32(i32(v)) & 255u) << (8u * b);
    }
    q[r * (p.K / 4u) + wi] = word;
  }
}
