// argmax: the index of the largest value of logits row 0 (lowest index on ties), written to tok[step[6]]
// for the next step's embed and to res (index, value bits) for the host. A NaN anywhere, or no value
// above -FLT_MAX, gives index 0xffffffff, which the host reports as an error (as its sampler would).
// Bindings: 0 uniform Params; 1 logits f32; 2 res u32[2]; group 1: step, tok.
// Dispatch: (1) workgroup of 256.
// Precision: exact.
//!include lib/step.wgsl

const WG: u32 = 256u;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> res: array<u32>;

var<workgroup> bv: array<f32, WG>;
var<workgroup> bi: array<u32, WG>;
var<workgroup> nan: atomic<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) li: u32) {
  var best = -3.4028234663852886e38;
  var idx = 0xffffffffu;
  if (li == 0u) { atomicStore(&nan, 0u); }
  workgroupBarrier();
  var sawNan = false;
  for (var i = li; i < p.n; i += WG) {
    let v = logits[i];
    if (v > best) {
      best = v;
      idx = i;
    }
    if (v != v) { sawNan = true; }
  }
  if (sawNan) { atomicStore(&nan, 1u); }
  bv[li] = best;
  bi[li] = idx;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      let v = bv[li + s];
      let j = bi[li + s];
      if (j != 0xffffffffu && (bi[li] == 0xffffffffu || v > bv[li] || (v == bv[li] && j < bi[li]))) {
        bv[li] = v;
        bi[li] = j;
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    let j = select(bi[0], 0xffffffffu, atomicLoad(&nan) != 0u);
    tok[u32(step[6])] = j;
    res[0] = j;
    res[1] = bitcast<u32>(bv[0]);
  }
}
