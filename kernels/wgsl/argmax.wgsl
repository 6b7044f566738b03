// argmax: greedy sampling on the device. For each logit row r: out[r] = the index of the largest value of
// x's row r (lowest index on ties), or -1 when the row holds a NaN; also written to
// tok[step[6] * step[13] + r], where the next step's embed may read it (greedy decoding queued on the
// device without the host in the loop).
// Bindings: 0 uniform Params; 1 x (rows, n) f32; 2 out (rows) i32; group 1: step, tok.
// Dispatch: (max logit rows) workgroups of 256; rows past nLogits return.
// Precision: exact.
//!include lib/step.wgsl

const WG: u32 = 256u;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;

var<workgroup> bv: array<f32, WG>;
var<workgroup> bi: array<u32, WG>;
var<workgroup> nan: atomic<u32>;

const NONE: u32 = 0xffffffffu;

// by bits: compilers may assume x == x for floats
fn isNan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wid.x;
  if (r >= nLogits()) { return; }
  if (li == 0u) { atomicStore(&nan, 0u); }
  workgroupBarrier();
  var best = 0.0;
  var idx = NONE;
  var sawNan = false;
  for (var i = li; i < p.n; i += WG) {
    let v = x[r * p.n + i];
    if (isNan(v)) {
      sawNan = true;
    } else if (idx == NONE || v > best) {
      best = v;
      idx = i;
    }
  }
  if (sawNan) { atomicStore(&nan, 1u); }
  bv[li] = best;
  bi[li] = idx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      let v = bv[li + s];
      let j = bi[li + s];
      if (j != NONE && (bi[li] == NONE || v > bv[li] || (v == bv[li] && j < bi[li]))) {
        bv[li] = v;
        bi[li] = j;
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    var id = i32(bi[0]);
    if (atomicLoad(&nan) != 0u || bi[0] == NONE) { id = -1; }
    out[r] = id;
    tok[u32(step[6] * step[13]) + r] = u32(id);
  }
}
