// embed: out[t, :] = dequant(table[token_t, :]) for each live token row t.
// Bindings: 0 uniform Params; 1 table chunks (one part of the table: rows rowStart..rowStart+rows);
//   2 table scales (q8/q4); 3 out (rows, dim) f32; group 1: step, tok (row 0's token may come from
//   the previous step's argmax).
// Dispatch: (ceil(KC / 64), nTokens); one thread per 16-byte chunk. Tokens outside this part are
//   skipped (another dispatch covers them); the host has checked host-given ids.
// Precision: exact (dequantization is exact in f32).
//!include lib/weights.wgsl
//!include lib/step.wgsl

override FMT: u32 = 0u;
override G: u32 = 32u;

struct Params {
  dim: u32,
  KC: u32,
  SW: u32,
  rowStart: u32,
  rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let t = gid.y;
  if (c >= p.KC || t >= nTokens()) { return; }
  let id = tokenAt(t);
  if (id < i32(p.rowStart) || id >= i32(p.rowStart + p.rows)) { return; }
  let r = u32(id) - p.rowStart;
  let chunk = table[r * p.KC + c];
  let n = epc(FMT);
  var s = 1.0;
  if (FMT >= F_Q8) {
    let g = c * n / G;
    s = scaleAt(scales[r * p.SW + g / 2u], g);
  }
  for (var e = 0u; e < n; e++) {
    let k = c * n + e;
    if (k < p.dim) { out[t * p.dim + k] = s * chunkElem(FMT, chunk, e); }
  }
}
