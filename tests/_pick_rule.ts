/**
 * The f32 `sample` kernel's precision rule (kernels/wgsl/sample.wgsl, "Precision"), computed on the host
 * in f64: for a logit row, settings and uniform, whether the webgpu kernel's id may differ from
 * pickToken's (src/sample/pick.ts). Everything else must be equal.
 * @module
 */
import type { PickOptions } from "../src/sample/pick.ts";

const U = 2 ** -24;

/** Per-row work that does not depend on u: the kept set and the windows around its boundaries. */
export interface RowRule {
  /** Whether the row's choice cannot be borderline at all (NaN, all -Infinity, temperature 0). */
  readonly exact: boolean;
  /** A top-p or min-p cut lies within f32 rounding: every u is borderline. */
  readonly cutBorderline: boolean;
  /** Running sums of the kept weights in id order (the draw's boundaries). */
  readonly bounds: Float64Array;
  /** Half-width of the window around each boundary. */
  readonly window: number;
}

/** The kernel's bound on each weight's relative error: eta(x) = (8 + 4|x|) 2^-23. */
function eta(x: number): number {
  return (8 + 4 * Math.abs(x)) * 2 * U;
}

/** Analyze a row once; then {@link isBorderline} per uniform. */
export function rowRule(l: Float32Array, o: PickOptions): RowRule {
  const V = l.length;
  let max = -Infinity, nan = false;
  for (const v of l) {
    if (v !== v) nan = true;
    else if (v > max) max = v;
  }
  const none = { exact: true, cutBorderline: false, bounds: new Float64Array(0), window: 0 };
  if (nan || max === -Infinity || o.temperature === 0) return none;
  const src = max === Infinity ? Float32Array.from(l, (v) => (v === Infinity ? 0 : -Infinity)) : l;
  const top = max === Infinity ? 0 : max;
  const xs = Float64Array.from(src, (v) => (v - top) / o.temperature);
  const w = xs.map((x) => Math.exp(x));
  // the kernel's sums: blocks of 16, ceil(V / 256) / 16 block totals per thread, scans over 256 threads;
  // plus an absolute term for f32 underflow (weights below 2^-126 may flush to 0)
  const gamma = (Math.ceil(V / 256) / 16 + 40) * U;
  const err = (ids: readonly number[]): { s: number; e: number } => {
    let s = 0, e = 0;
    for (const i of ids) {
      s += w[i];
      e += eta(xs[i]) * w[i];
    }
    return { s, e: e + gamma * s + V * 2 ** -120 };
  };
  const rank = Array.from({ length: V }, (_, i) => i).filter((i) => src[i] !== -Infinity)
    .sort((a, b) => src[b] - src[a] || a - b);
  let set = o.topK > 0 && o.topK < V ? rank.slice(0, o.topK) : rank;
  let cutBorderline = false;
  if (o.topP < 1) {
    const { s: z, e } = err(set);
    const target = o.topP * z, win = 2 * e + 2 * U * z;
    let c = 0, n = set.length;
    for (let j = 0; j < set.length; j++) {
      c += w[set[j]];
      if (Math.abs(c - target) <= win) cutBorderline = true;
      if (c >= target && n === set.length) n = j + 1;
    }
    set = set.slice(0, n);
  }
  if (o.minP > 0) {
    for (const i of set) {
      if (Math.abs(w[i] - o.minP) <= eta(xs[i]) * w[i] + U * o.minP) cutBorderline = true;
    }
    set = set.filter((i) => w[i] >= o.minP);
  }
  const kept = set.filter((i) => w[i] > 0).sort((a, b) => a - b);
  const bounds = new Float64Array(kept.length);
  let c = 0;
  kept.forEach((i, j) => (bounds[j] = c += w[i]));
  const { s: total, e } = err(kept);
  return { exact: false, cutBorderline, bounds, window: e + 2 * U * total };
}

/** Whether the kernel may pick another id than pickToken for uniform u (the row's rule from rowRule). */
export function isBorderline(r: RowRule, u: number): boolean {
  if (r.exact) return false;
  if (r.cutBorderline) return true;
  const b = r.bounds, t = u * b[b.length - 1];
  // the boundary nearest t
  let lo = 0, hi = b.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (b[mid] < t) lo = mid + 1;
    else hi = mid;
  }
  const near = Math.min(Math.abs(b[lo] - t), lo > 0 ? Math.abs(b[lo - 1] - t) : Infinity);
  return near <= r.window;
}
