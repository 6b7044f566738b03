/**
 * Choosing one token from one logits row given a uniform draw: the part of sampling that has no state,
 * shared by the host {@link Sampler} (after its penalties) and by the `sample` graph op that backends run
 * on the device (the ref backend runs this very function, so it is the oracle for device kernels).
 *
 * Runtime-agnostic core: no Deno APIs.
 *
 * The rule, for logits `l` (length V), settings `o` and a uniform `u` in [0, 1):
 *
 * 1. NaN anywhere → {@link PICK_NAN}; every logit -Infinity → {@link PICK_ALL_NEG_INF}.
 * 2. `temperature === 0`: the argmax (lowest id on ties); `u` is not used.
 * 3. Weights `w_i = exp((l_i - max) / T)` in f64 (the best token has w = 1). When the max is +Infinity,
 *    the +Infinity tokens have w = 1 and all others 0.
 * 4. Rank order: logit descending, then id ascending. Top-k keeps the first `topK` finite-logit tokens in
 *    that order (0 or >= V: all).
 * 5. Top-p keeps the shortest prefix, in rank order, of what top-k kept whose weight sum reaches
 *    `topP * z`, z the weight sum of what top-k kept (all of it when rounding leaves the sum short).
 * 6. Min-p keeps tokens with `w >= minP` (when `minP > 0`).
 * 7. The draw walks the kept tokens in ascending id order and returns the first whose running weight
 *    sum exceeds `u * (sum of kept weights)`; the last kept token when rounding leaves none.
 *
 * Sums are f64 in an order this rule leaves open, so two implementations (this one and a GPU kernel) may
 * disagree only when `u` lands within rounding (~1e-15 relative) of a boundary between two tokens.
 * @module
 */

/** Returned for a row holding NaN. */
export const PICK_NAN = -1;
/** Returned for a row whose logits are all -Infinity. */
export const PICK_ALL_NEG_INF = -2;

/** Values per logit row in `StepParams.sampling`: temperature, topK, topP, minP, u. */
export const PICK_PARAMS = 5;

/** The settings {@link pickToken} uses: the sampler's options without the penalties. */
export interface PickOptions {
  /** >= 0; 0 = argmax. */
  readonly temperature: number;
  /** Integer >= 0; 0 = off. */
  readonly topK: number;
  /** In (0, 1]; 1 = off. */
  readonly topP: number;
  /** In [0, 1]; 0 = off. */
  readonly minP: number;
}

/** Work arrays reused between calls, so a 128k-vocabulary row does not allocate megabytes per token. */
export class PickScratch {
  #ci = new Int32Array(0);
  #cw = new Float64Array(0);
  #heapIdx = new Int32Array(0);
  #heapVal = new Float64Array(0);
  #byId = new Float64Array(0);

  /** Candidate ids and weights, at least n long. */
  candidates(n: number): [Int32Array, Float64Array] {
    if (this.#ci.length < n) {
      this.#ci = new Int32Array(n);
      this.#cw = new Float64Array(n);
    }
    return [this.#ci, this.#cw];
  }

  /** Heap arrays, at least k long. */
  heap(k: number): [Int32Array, Float64Array] {
    if (this.#heapIdx.length < k) {
      this.#heapIdx = new Int32Array(k);
      this.#heapVal = new Float64Array(k);
    }
    return [this.#heapIdx, this.#heapVal];
  }

  /** A zeroed-on-return weight-by-id array of length V (callers put back the zeros they overwrote). */
  byId(v: number): Float64Array {
    if (this.#byId.length < v) this.#byId = new Float64Array(v);
    return this.#byId;
  }
}

/** True when token (a, va) ranks above (b, vb): higher logit first, lower id first on ties. */
function above(va: number, a: number, vb: number, b: number): boolean {
  return va > vb || (va === vb && a < b);
}

/**
 * Choose a token from `l` by the rule in this module's documentation. `draw` is called once, for the
 * uniform, unless the choice is the argmax (temperature 0) or the row is invalid. Returns the token id,
 * {@link PICK_NAN} or {@link PICK_ALL_NEG_INF}.
 *
 * @example
 * ```ts
 * const id = pickToken(Float32Array.of(1, 3, 2), { temperature: 0.7, topK: 2, topP: 1, minP: 0 }, () => 0.5);
 * console.log(id); // 1
 * ```
 */
export function pickToken(
  l: Float32Array,
  o: PickOptions,
  draw: () => number,
  scratch: PickScratch = new PickScratch(),
): number {
  const V = l.length;
  let best = -1;
  let max = -Infinity;
  for (let i = 0; i < V; i++) {
    const v = l[i];
    if (v > max) {
      max = v;
      best = i;
    } else if (v !== v) return PICK_NAN;
  }
  if (best < 0) return PICK_ALL_NEG_INF;
  if (o.temperature === 0) return best;
  // With a +Infinity logit only the +Infinity tokens have weight; they share it equally.
  const src = max === Infinity ? l.map((v) => (v === Infinity ? 0 : -Infinity)) : l;
  const top = max === Infinity ? 0 : max;
  const T = o.temperature;

  let ci: Int32Array;
  let cw: Float64Array;
  let n: number;
  let z = 0; // weight sum over what top-k kept (the whole vocabulary when top-k is off)
  if (o.topK > 0 && o.topK < V) {
    // Temperature does not change the ranking: select on the logits, exponentiate only k of them.
    n = topK(src, o.topK, scratch);
    [ci, cw] = scratch.heap(n);
    for (let j = 0; j < n; j++) z += cw[j] = Math.exp((cw[j] - top) / T);
  } else {
    [ci, cw] = scratch.candidates(V);
    for (let i = 0; i < V; i++) z += cw[i] = Math.exp((src[i] - top) / T);
    if (o.topP >= 1 && o.minP <= 0) {
      // Nothing to filter: the draw walks the whole row in id order.
      let u = draw() * z;
      let last = best;
      for (let i = 0; i < V; i++) {
        if (cw[i] === 0) continue;
        last = i;
        u -= cw[i];
        if (u < 0) return i;
      }
      return last;
    }
    // Pre-filter: tokens under minP never survive min-p, and all tokens under (1 - topP) / (2V) of the mass
    // together hold less than (1 - topP) / 2 of it, so the nucleus lies among the rest.
    const thr = Math.max(o.minP, o.topP < 1 ? ((1 - o.topP) / (2 * V)) * z : 0);
    n = 0;
    for (let i = 0; i < V; i++) {
      const w = cw[i];
      if (w >= thr && w > 0) {
        ci[n] = i;
        cw[n++] = w; // n <= i, so this never overwrites a weight still to be read
      }
    }
  }
  if (o.topP < 1) n = nucleus(ci, cw, n, o.topP * z, src);
  if (o.minP > 0) {
    let m = 0;
    for (let j = 0; j < n; j++) {
      if (cw[j] >= o.minP) {
        ci[m] = ci[j];
        cw[m++] = cw[j];
      }
    }
    n = m; // >= 1: the best token's weight is exactly 1
  }
  return drawInIdOrder(ci, cw, n, draw(), scratch, V);
}

/** The draw of step 7 over candidates [0, n) (ids distinct, any order). */
function drawInIdOrder(
  ci: Int32Array,
  cw: Float64Array,
  n: number,
  u: number,
  scratch: PickScratch,
  V: number,
): number {
  if (n <= 256) {
    const order = Array.from({ length: n }, (_, j) => j).sort((a, b) => ci[a] - ci[b]);
    let total = 0;
    for (const j of order) total += cw[j];
    let t = u * total, last = -1;
    for (const j of order) {
      if (cw[j] === 0) continue; // weight 0 (a -Infinity kept by top-k) is never drawn
      last = ci[j];
      t -= cw[j];
      if (t < 0) return last;
    }
    return last;
  }
  // Many candidates: scatter the weights by id and walk the row (O(V), no comparator sort).
  const byId = scratch.byId(V);
  let lo = V, hi = -1, total = 0;
  for (let j = 0; j < n; j++) {
    byId[ci[j]] = cw[j];
    lo = Math.min(lo, ci[j]);
    hi = Math.max(hi, ci[j]);
  }
  for (let i = lo; i <= hi; i++) total += byId[i];
  let t = u * total, chosen = -1, last = hi;
  for (let i = lo; i <= hi && chosen < 0; i++) {
    if (byId[i] === 0) continue;
    last = i;
    t -= byId[i];
    if (t < 0) chosen = i;
  }
  for (let j = 0; j < n; j++) byId[ci[j]] = 0;
  return chosen >= 0 ? chosen : last;
}

/**
 * The k best tokens by (logit desc, id asc), in no particular order, into the scratch heap (ids and
 * logits); returns how many. A size-k min-heap costs O(V log k), not a full sort; -Infinity tokens
 * never enter, so fewer than k can come back.
 */
function topK(l: Float32Array, k: number, scratch: PickScratch): number {
  const [hi, hv] = scratch.heap(k);
  let size = 0;
  for (let i = 0; i < l.length; i++) {
    const v = l[i];
    if (v === -Infinity) continue;
    if (size < k) {
      // Sift up: the root holds the worst of the kept tokens.
      let c = size++;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!above(hv[p], hi[p], v, i)) break;
        hi[c] = hi[p];
        hv[c] = hv[p];
        c = p;
      }
      hi[c] = i;
      hv[c] = v;
    } else if (above(v, i, hv[0], hi[0])) {
      // Replace the root and sift down.
      let c = 0;
      for (;;) {
        const a = 2 * c + 1;
        if (a >= size) break;
        const b = a + 1;
        const w = b < size && above(hv[a], hi[a], hv[b], hi[b]) ? b : a;
        if (!above(v, i, hv[w], hi[w])) break;
        hi[c] = hi[w];
        hv[c] = hv[w];
        c = w;
      }
      hi[c] = i;
      hv[c] = v;
    }
  }
  return size;
}

/**
 * Top-p without sorting: reorder the first `len` candidates so that [0, n) is the nucleus, the shortest
 * prefix in rank order (weight desc; among equal weights logit desc, then id asc: the rank order of the
 * logits, as exp is monotone) whose weights sum to at least `target`, and return n (all `len` when
 * rounding keeps the sum short of the target). Three-way quickselect on the weight: expected O(len),
 * where sorting a 128k vocabulary with a comparator costs ~50 ms.
 */
function nucleus(ci: Int32Array, cw: Float64Array, len: number, target: number, l: Float32Array): number {
  const swap = (a: number, b: number): void => {
    const t = ci[a];
    ci[a] = ci[b];
    ci[b] = t;
    const v = cw[a];
    cw[a] = cw[b];
    cw[b] = v;
  };
  let lo = 0;
  let hi = len;
  let need = target;
  while (hi - lo > 16) {
    // Median of three, not a random pivot: the result must only depend on the inputs.
    const x = cw[lo], y = cw[(lo + hi) >> 1], zz = cw[hi - 1];
    const pivot = Math.max(Math.min(x, y), Math.min(Math.max(x, y), zz));
    // Partition [lo, hi) into [lo, lt) > pivot, [lt, gt) == pivot, [gt, hi) < pivot.
    let lt = lo, i = lo, gt = hi;
    while (i < gt) {
      if (cw[i] > pivot) swap(lt++, i++);
      else if (cw[i] < pivot) swap(i, --gt);
      else i++;
    }
    let heavier = 0;
    for (let j = lo; j < lt; j++) heavier += cw[j];
    if (heavier >= need) {
      hi = lt; // the nucleus ends inside the heavier part
      continue;
    }
    need -= heavier;
    const eq = gt - lt;
    if (eq * pivot >= need) {
      // Equal weights: rank order among them (usually equal logits, so lowest ids first).
      const ids = Array.from(ci.subarray(lt, gt)).sort((a, b) => l[b] - l[a] || a - b);
      ci.set(ids, lt);
      return lt + Math.min(eq, Math.max(1, Math.ceil(need / pivot)));
    }
    need -= eq * pivot;
    lo = gt;
  }
  // A few left: insertion sort in rank order and take the prefix.
  for (let i = lo + 1; i < hi; i++) {
    for (let j = i; j > lo && ranksAbove(cw, ci, l, j, j - 1); j--) swap(j, j - 1);
  }
  for (let j = lo; j < hi; j++) {
    need -= cw[j];
    if (need <= 0) return j + 1;
  }
  return hi;
}

/** Candidate a ranks above candidate b: weight desc, then logit desc, then id asc. */
function ranksAbove(cw: Float64Array, ci: Int32Array, l: Float32Array, a: number, b: number): boolean {
  if (cw[a] !== cw[b]) return cw[a] > cw[b];
  const la = l[ci[a]], lb = l[ci[b]];
  return la !== lb ? la > lb : ci[a] < ci[b];
}
