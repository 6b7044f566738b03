// sample: the `sample` op (src/ops.ts). For each logit row r, out[r] = pickToken (src/sample/pick.ts) of
// x's row r with row r's settings from the step block (temperature, topK, topP, minP, u: lib/step.wgsl's
// samplingAt), -1 for a row holding NaN, -2 for a row of only -Infinity; also written to
// tok[step[6] * step[13] + r] like argmax, so a queued next step's embed can read it.
// Bindings: 0 uniform Params; 1 x (rows, n) f32; 2 out (rows) i32; group 1: step, tok.
// Dispatch: (max logit rows) workgroups of 256; rows past nLogits return. n < 2^24.
// Method (the rule's steps as passes over the row; no candidate buffer, any vocabulary size):
//   1. max key (order-preserving u32 of the logit), its lowest id, NaN, counts of finite and +Inf logits;
//      temperature 0 returns the argmax. A +Infinity max turns +Inf logits into 0 and the rest into -Inf.
//   2. every cut is (cutKey, cutEnd): token i is kept iff key > cutKey, or key == cutKey and i < cutEnd
//      (rank order is key desc, id asc, so the tied tokens a cut keeps are the lowest ids);
//   3. top-k: radix select (8-bit digits, counts) of the k-th key; cutEnd from the tied tokens' count;
//   4. top-p: z = weight sum of the kept, then a radix select (4-bit digits) on the weight mass, in rank
//      order, of the shortest prefix reaching topP * z; at the cut key ceil(rest / w) tied tokens;
//   5. min-p: w >= minP; 6. the draw: u * (kept weight sum), walking kept tokens in id order: per-thread
//      sums over contiguous id ranges, a scan, then the same inside the crossing thread's range.
//   Weights w = exp((l - max) / T); sums are blocked (16 terms, then the running total).
// Precision: f32 (WGSL has no f64), where pick.ts uses f64. Each weight is within
//   eta(x) = (8 + 4|x|) * 2^-23 relative of pick.ts's (x = (l - max) / T, from WGSL's exp bound of
//   3 + 2|x| ulp plus the rounding of l - max, T and the division), and every sum of weights S is within
//   E(S) = sum(eta_i w_i) + (ceil(n / 256) / 16 + 40) * 2^-24 * S + n * 2^-120 (blocked f32 sums, scans
//   over 256 threads; underflow). topP and u arrive with their f32 remainders (fma), so their own
//   rounding is below 2^-24. The id can differ from pick.ts's only when
//   (a) u * total lies within E(total) + 2^-23 total of a running sum of the kept weights in id order,
//   (b) topP * z lies within 2 E(z) + 2^-23 z of a running sum of the top-k set's weights in rank order,
//   (c) a nucleus token's weight w lies within eta * w + 2^-24 minP of minP.
//   tests/_pick_rule.ts computes this rule on the host; tests/sample_op_test.ts checks every other pick
//   exactly. Top-k, ties, NaN, +-Infinity and temperature 0 are exact. The bound is worst-case: on flat
//   32k-128k rows it marks about 1 pick in 4 of that test (1 of ~100 actually differed on lavapipe); an
//   exact fixed-point sum and an exp with an exact argument would shrink it to ~2^-24 per weight.
//!include lib/step.wgsl

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const NEG_INF_KEY: u32 = 0x007fffffu; // keyOf(-Infinity); NaN keys are 0 (rows with NaN stop first)
const POS_INF_KEY: u32 = 0xff800000u;
const ZERO_KEY: u32 = 0x80000000u;

struct Params {
  n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;

var<workgroup> sU: array<u32, WG>;
var<workgroup> sI: array<u32, WG>;
var<workgroup> sF: array<f32, WG>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> hF: array<f32, 2048>; // 8 digits x WG threads of the mass histogram
var<workgroup> bins: array<f32, 16>;
var<workgroup> flags: array<atomic<u32>, 4>; // NaN, finite count, +Inf count, last id
var<workgroup> bU: vec4<u32>; // broadcasts (through workgroupUniformLoad)
var<workgroup> bF: vec4<f32>;

// the row's state, the same in every thread
var<private> base: u32;
var<private> infRow: bool;
var<private> top: f32;
var<private> temp: f32;
var<private> minP: f32;
var<private> cutKey: u32;
var<private> cutEnd: u32;

fn keyOf(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn valOf(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// the key of token i as the rule sees it (with a +Infinity max: +Inf -> 0, the rest -Inf)
fn tkey(i: u32) -> u32 {
  let k = keyOf(x[base + i]);
  if (infRow) { return select(NEG_INF_KEY, ZERO_KEY, k == POS_INF_KEY); }
  return k;
}

fn weight(k: u32) -> f32 {
  if (k <= NEG_INF_KEY) { return 0.0; }
  return exp((valOf(k) - top) / temp);
}

fn isKept(k: u32, i: u32) -> bool {
  return k > cutKey || (k == cutKey && i < cutEnd);
}

// token i's weight if the cuts so far keep it (and min-p, with mp), else 0
fn keptWeight(i: u32, mp: bool) -> f32 {
  let k = tkey(i);
  if (!isKept(k, i)) { return 0.0; }
  let w = weight(k);
  return select(w, 0.0, mp && w < minP);
}

// inclusive prefix sum over the threads (sF holds it after); every thread must call it
fn scanF(v: f32, li: u32) -> f32 {
  workgroupBarrier();
  sF[li] = v;
  workgroupBarrier();
  for (var o = 1u; o < WG; o <<= 1u) {
    var y = 0.0;
    if (li >= o) { y = sF[li - o]; }
    workgroupBarrier();
    sF[li] += y;
    workgroupBarrier();
  }
  return sF[li];
}

fn sumF(v: f32, li: u32) -> f32 {
  workgroupBarrier();
  sF[li] = v;
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (li < s) { sF[li] += sF[li + s]; }
  }
  return workgroupUniformLoad(&sF[0]);
}

// value of token i in an ordered search: mode 0 counts tokens of key kk, mode 1 is the drawn weight
fn ordVal(mode: u32, kk: u32, i: u32) -> f32 {
  if (mode == 0u) { return select(0.0, 1.0, tkey(i) == kk); }
  return keptWeight(i, true);
}

// The first id whose running sum (ascending ids) of ordVal exceeds t, where t = tIn (mode 0) or
// u * total (mode 1); when none does: the last id with a nonzero value (mode 1) or NONE (mode 0).
fn ordered(mode: u32, kk: u32, tIn: f32, u: vec2<f32>, li: u32) -> u32 {
  let n = p.n;
  let C = (n + WG - 1u) / WG;
  let i0 = min(n, li * C);
  let i1 = min(n, i0 + C);
  workgroupBarrier();
  if (li == 0u) { atomicStore(&flags[3], 0u); }
  var a = 0.0;
  var b = 0.0;
  var last = 0u;
  for (var i = i0; i < i1; i++) {
    let v = ordVal(mode, kk, i);
    b += v;
    if (v > 0.0) { last = i + 1u; }
    if (((i - i0) & 15u) == 15u) {
      a += b;
      b = 0.0;
    }
  }
  let mine = a + b;
  let incl = scanF(mine, li);
  var excl = 0.0;
  if (li > 0u) { excl = sF[li - 1u]; }
  let total = sF[WG - 1u];
  let t = select(tIn, fma(u.x, total, u.y * total), mode == 1u);
  atomicMax(&flags[3], last);
  if (li == 0u) { bU = vec4<u32>(NONE, 0u, 0u, 0u); }
  workgroupBarrier();
  if (mine > 0.0 && excl <= t && t < incl) {
    bU = vec4<u32>(li, 0u, 0u, 0u);
    bF = vec4<f32>(excl, 0.0, 0.0, 0.0);
  }
  let lastAll = atomicLoad(&flags[3]);
  let sel = workgroupUniformLoad(&bU).x;
  if (sel == NONE) { return select(NONE, lastAll - 1u, mode == 1u && lastAll > 0u); }
  // inside thread sel's range: the same with C2 ids per thread
  let start = bF.x;
  let c0 = sel * C;
  let c1 = min(n, c0 + C);
  let C2 = (C + WG - 1u) / WG;
  let j0 = min(c1, c0 + li * C2);
  let j1 = min(c1, j0 + C2);
  var s2 = 0.0;
  var last2 = 0u;
  for (var j = j0; j < j1; j++) {
    let v = ordVal(mode, kk, j);
    s2 += v;
    if (v > 0.0) { last2 = j + 1u; }
  }
  let incl2 = scanF(s2, li);
  var excl2 = 0.0;
  if (li > 0u) { excl2 = sF[li - 1u]; }
  workgroupBarrier();
  if (li == 0u) { atomicStore(&flags[3], 0u); }
  workgroupBarrier();
  atomicMax(&flags[3], last2);
  var r = start + excl2;
  if (s2 > 0.0 && r <= t && t < start + incl2) {
    var pick = NONE;
    for (var j = j0; j < j1; j++) {
      let v = ordVal(mode, kk, j);
      if (v > 0.0) {
        r += v;
        pick = j;
        if (r > t) { break; }
      }
    }
    bU = vec4<u32>(sel, pick, 1u, 0u);
  }
  workgroupBarrier();
  let res = workgroupUniformLoad(&bU);
  if (res.z == 1u) { return res.y; }
  // rounding left the crossing outside every sub-range: the range's last nonzero
  let l2 = atomicLoad(&flags[3]);
  return select(NONE, l2 - 1u, l2 > 0u);
}

// top-k: radix select of the k-th largest key (counts, 8-bit digits); returns (key, tied tokens to take)
fn selectCount(k: u32, li: u32) -> vec2<u32> {
  var prefix = 0u;
  var mask = 0u;
  var need = k;
  for (var ps = 0u; ps < 4u; ps++) {
    let shift = 24u - 8u * ps;
    workgroupBarrier();
    atomicStore(&hist[li], 0u);
    workgroupBarrier();
    for (var i = li; i < p.n; i += WG) {
      let key = tkey(i);
      if ((key & mask) == prefix) { atomicAdd(&hist[(key >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (li == 0u) {
      var b = 255i;
      loop {
        let c = atomicLoad(&hist[u32(b)]);
        if (c >= need || b == 0i) { break; }
        need -= c;
        b--;
      }
      bU = vec4<u32>(prefix | (u32(b) << shift), need, 0u, 0u);
    }
    let s = workgroupUniformLoad(&bU);
    prefix = s.x;
    need = s.y;
    mask |= 255u << shift;
  }
  return vec2<u32>(prefix, need);
}

// top-p: the largest key c whose kept tokens with key >= c weigh at least `target`, by radix select on
// the mass (4-bit digits); returns (c, mass still needed from key c's tokens as bits, 1 when the kept
// mass falls short of the target by rounding: keep all)
fn selectMass(goal: f32, li: u32) -> vec3<u32> {
  var prefix = 0u;
  var mask = 0u;
  var need = goal;
  var short = 0u;
  for (var ps = 0u; ps < 8u; ps++) {
    let shift = 28u - 4u * ps;
    // zeroed explicitly: naga declares a loop's variables once, at function entry
    var ha: array<f32, 16>;
    var hb: array<f32, 16>;
    for (var d = 0u; d < 16u; d++) {
      ha[d] = 0.0;
      hb[d] = 0.0;
    }
    var cnt = 0u;
    for (var i = li; i < p.n; i += WG) {
      let key = tkey(i);
      if ((key & mask) == prefix && isKept(key, i)) {
        let w = weight(key);
        hb[(key >> shift) & 15u] += w;
        cnt++;
        if ((cnt & 15u) == 0u) {
          for (var d = 0u; d < 16u; d++) {
            ha[d] += hb[d];
            hb[d] = 0.0;
          }
        }
      }
    }
    for (var h = 0u; h < 2u; h++) {
      workgroupBarrier();
      for (var d = 0u; d < 8u; d++) { hF[d * WG + li] = ha[h * 8u + d] + hb[h * 8u + d]; }
      for (var s = WG / 2u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if (li < s) {
          for (var d = 0u; d < 8u; d++) { hF[d * WG + li] += hF[d * WG + li + s]; }
        }
      }
      workgroupBarrier();
      if (li < 8u) { bins[h * 8u + li] = hF[li * WG]; }
    }
    workgroupBarrier();
    if (li == 0u) {
      var left = need;
      var chosen = -1i;
      var lowest = 0u;
      for (var d = 15i; d >= 0i; d--) {
        let c = bins[u32(d)];
        if (c > 0.0) { lowest = u32(d); }
        if (c >= left) {
          chosen = d;
          break;
        }
        left -= c;
      }
      var sh = short;
      if (chosen < 0i) {
        // rounding: the kept mass is short of the target
        if (ps == 0u) { sh = 1u; }
        chosen = i32(lowest);
        left = bins[lowest];
      }
      bU = vec4<u32>(prefix | (u32(chosen) << shift), sh, 0u, 0u);
      bF = vec4<f32>(left, 0.0, 0.0, 0.0);
    }
    let s = workgroupUniformLoad(&bU);
    prefix = s.x;
    short = s.y;
    need = workgroupUniformLoad(&bF).x;
    mask |= 15u << shift;
  }
  return vec3<u32>(prefix, bitcast<u32>(need), short);
}

fn finish(r: u32, li: u32, id: i32) {
  if (li == 0u) {
    out[r] = id;
    tok[u32(step[6] * step[13]) + r] = u32(id);
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wid.x;
  if (r >= nLogits()) { return; }
  let n = p.n;
  base = r * n;
  infRow = false;
  let s = samplingAt(r);
  // 1. max key, its lowest id, NaN, finite and +Inf counts
  if (li < 4u) { atomicStore(&flags[li], 0u); }
  workgroupBarrier();
  var mk = 0u;
  var mi = NONE;
  var nan = false;
  var fin = 0u;
  var pinf = 0u;
  for (var i = li; i < p.n; i += WG) {
    let v = x[base + i];
    if ((bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u) {
      nan = true;
      continue;
    }
    let k = keyOf(v);
    if (k > NEG_INF_KEY) { fin++; }
    if (k == POS_INF_KEY) { pinf++; }
    if (mi == NONE || k > mk) {
      mk = k;
      mi = i;
    }
  }
  if (nan) { atomicStore(&flags[0], 1u); }
  atomicAdd(&flags[1], fin);
  atomicAdd(&flags[2], pinf);
  sU[li] = mk;
  sI[li] = mi;
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    workgroupBarrier();
    if (li < st) {
      let k = sU[li + st];
      let j = sI[li + st];
      if (j != NONE && (sI[li] == NONE || k > sU[li] || (k == sU[li] && j < sI[li]))) {
        sU[li] = k;
        sI[li] = j;
      }
    }
  }
  workgroupBarrier();
  if (li == 0u) {
    bU = vec4<u32>(sU[0], sI[0], atomicLoad(&flags[0]), select(atomicLoad(&flags[1]), atomicLoad(&flags[2]), sU[0] == POS_INF_KEY));
  }
  let m = workgroupUniformLoad(&bU);
  if (m.z != 0u) {
    finish(r, li, -1);
    return;
  }
  if (m.y == NONE || m.x <= NEG_INF_KEY) {
    finish(r, li, -2);
    return;
  }
  if (!(s.temp > 0.0)) {
    finish(r, li, i32(m.y));
    return;
  }
  infRow = m.x == POS_INF_KEY;
  top = select(valOf(m.x), 0.0, infRow);
  temp = s.temp;
  minP = s.minP;
  let topK = s.topK;
  let topP = s.topP;
  cutKey = NEG_INF_KEY;
  cutEnd = 0u;
  // 3. top-k
  if (topK > 0u && topK < n && m.w > topK) {
    let c = selectCount(topK, li);
    let e = ordered(0u, c.x, f32(c.y) - 0.5, vec2<f32>(), li);
    cutKey = c.x;
    cutEnd = select(e + 1u, n, e == NONE);
  }
  // 4. top-p
  if (topP < 1.0) {
    var zb = 0.0;
    var za = 0.0;
    var cnt = 0u;
    for (var i = li; i < p.n; i += WG) {
      zb += keptWeight(i, false);
      cnt++;
      if ((cnt & 15u) == 0u) {
        za += zb;
        zb = 0.0;
      }
    }
    let z = sumF(za + zb, li);
    let c = selectMass(fma(topP, z, s.topPLo * z), li);
    if (c.z == 0u) {
      // (take may be +Inf when w rounds to 0: then no tied token is cut)
      let take = max(1.0, ceil(bitcast<f32>(c.y) / weight(c.x)));
      let e = ordered(0u, c.x, take - 0.5, vec2<f32>(), li);
      let end = select(e + 1u, n, e == NONE);
      if (c.x > cutKey) {
        cutKey = c.x;
        cutEnd = end;
      } else {
        cutEnd = min(cutEnd, end);
      }
    }
  }
  // 5, 6. min-p and the draw
  let id = ordered(1u, 0u, 0.0, vec2<f32>(s.u, s.uLo), li);
  finish(r, li, select(i32(id), i32(m.y), id == NONE));
}
