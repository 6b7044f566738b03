// topk: the k largest values of each logit row and their indices, sorted by value (descending), lower
// index first on ties; NaN counts as the lowest value. k <= 256.
// Method: a 4-pass radix select (8 bits a pass) over order-preserving u32 keys finds the k-th largest
// key T; every key above T is taken, then keys equal to T in index order until k are taken (prefix sums
// over threads that each own a contiguous index range); a bitonic sort of the 256 candidates orders them.
// Bindings: 0 uniform Params; 1 x (rows, n) f32; 2 vals (rows, k) f32; 3 ids (rows, k) u32; group 1: step.
// Dispatch: (maxRows) workgroups of 256; rows past nLogits return.
// Precision: exact (a selection).
//!include lib/step.wgsl

const WG: u32 = 256u;

struct Params {
  n: u32,
  k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> vals: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel: vec2<u32>; // (prefix, still to take among keys equal to the prefix so far)
var<workgroup> cgt: array<u32, WG>;
var<workgroup> ceq: array<u32, WG>;
var<workgroup> ck: array<u32, WG>;
var<workgroup> ci: array<u32, WG>;

// NaN by its bits: compilers may assume x == x for floats
fn keyOf(v: f32) -> u32 {
  if ((bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn valOf(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// true when (ka, ia) ranks before (kb, ib)
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wid.x;
  if (r >= nLogits()) { return; }
  let base = r * p.n;
  let k = min(p.k, min(p.n, WG));
  if (li == 0u) { sel = vec2<u32>(0u, k); }
  var mask = 0u;
  for (var ps = 0u; ps < 4u; ps++) {
    let shift = 24u - 8u * ps;
    atomicStore(&hist[li], 0u);
    workgroupBarrier();
    let prefix = sel.x;
    for (var i = li; i < p.n; i += WG) {
      let key = keyOf(x[base + i]);
      if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (li == 0u) {
      var need = sel.y;
      var b = 255i;
      loop {
        let c = atomicLoad(&hist[u32(b)]);
        if (c >= need || b == 0i) { break; }
        need -= c;
        b--;
      }
      sel = vec2<u32>(prefix | (u32(b) << shift), need);
    }
    mask |= 255u << shift;
    workgroupBarrier();
  }
  let thr = sel.x;
  let takeEq = sel.y;
  // each thread owns indices [i0, i1)
  let per = (p.n + WG - 1u) / WG;
  let i0 = min(p.n, li * per);
  let i1 = min(p.n, i0 + per);
  var gt = 0u;
  var eq = 0u;
  for (var i = i0; i < i1; i++) {
    let key = keyOf(x[base + i]);
    gt += select(0u, 1u, key > thr);
    eq += select(0u, 1u, key == thr);
  }
  cgt[li] = gt;
  ceq[li] = eq;
  workgroupBarrier();
  if (li == 0u) {
    var sg = 0u;
    var se = 0u;
    for (var j = 0u; j < WG; j++) {
      let a = cgt[j];
      let b = ceq[j];
      cgt[j] = sg;
      ceq[j] = se;
      sg += a;
      se += b;
    }
    sel = vec2<u32>(sg, takeEq); // total above the threshold
  }
  ck[li] = 0u;
  ci[li] = 0xffffffffu;
  workgroupBarrier();
  let nGt = sel.x;
  var og = cgt[li];
  var oe = ceq[li];
  for (var i = i0; i < i1; i++) {
    let key = keyOf(x[base + i]);
    if (key > thr) {
      ck[og] = key;
      ci[og] = i;
      og++;
    } else if (key == thr) {
      if (oe < takeEq) {
        ck[nGt + oe] = key;
        ci[nGt + oe] = i;
      }
      oe++;
    }
  }
  workgroupBarrier();
  // bitonic sort of (key desc, index asc); empty slots have key 0 and index 0xffffffff (last)
  for (var size = 2u; size <= WG; size <<= 1u) {
    for (var stride = size / 2u; stride > 0u; stride >>= 1u) {
      let j = li ^ stride;
      if (j > li) {
        let up = (li & size) == 0u;
        let swap = select(before(ck[li], ci[li], ck[j], ci[j]), before(ck[j], ci[j], ck[li], ci[li]), up);
        if (swap) {
          let tk = ck[li];
          let ti = ci[li];
          ck[li] = ck[j];
          ci[li] = ci[j];
          ck[j] = tk;
          ci[j] = ti;
        }
      }
      workgroupBarrier();
    }
  }
  if (li < k) {
    vals[r * p.k + li] = x[base + ci[li]];
    ids[r * p.k + li] = ci[li];
  }
}
