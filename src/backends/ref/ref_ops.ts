/**
 * The ref backend's op implementations: plain TypeScript, f32 storage, f64 accumulation, written for
 * clarity. Every other backend is checked against these.
 * @module
 */
import type { KvLayer, Op, StepParams } from "../../ops.ts";
import type { RefTensor } from "./ref.ts";
import { liveRows } from "../../ops.ts";
import { dequantize, f16ToF32, f32ToF16 } from "../../dtype.ts";
import { LlmError } from "../../errors.ts";
import { PICK_PARAMS, PickScratch, pickToken } from "../../sample/pick.ts";

type T = RefTensor;

function width(t: T): number {
  return t.shape[t.shape.length - 1];
}

/** Physical cache row of a token at `pos` in sequence row `seq`. */
function slotOf(step: StepParams, seq: number, pos: number, blockSize: number): number {
  const logical = Math.floor(pos / blockSize);
  if (logical >= step.maxBlocksPerSeq) {
    throw new LlmError(
      "INTERNAL",
      `position ${pos} is past the block table (${step.maxBlocksPerSeq} blocks)`,
    );
  }
  return step.blockTables[seq * step.maxBlocksPerSeq + logical] * blockSize + (pos % blockSize);
}

function readKv(t: T, scale: T | undefined, row: number, dim: number, out: Float32Array): void {
  if (t.dtype === "f32") {
    out.set(t.f32.subarray(row * dim, (row + 1) * dim));
  } else if (scale) {
    const heads = width(scale), hd = dim / heads, q = t.i8;
    for (let i = 0; i < dim; i++) out[i] = q[row * dim + i] * scale.f32[row * heads + Math.floor(i / hd)];
  } else {
    const h = t.u16;
    for (let i = 0; i < dim; i++) out[i] = f16ToF32(h[row * dim + i]);
  }
}

/**
 * int8 KV (and W8A8 activations, per token): each (row, kv head) vector gets `scale = max|x| / 127` and `q = round(x * (1 / scale))`,
 * rounding half away from zero (C's `roundf`), every step in f32 (`Math.fround`) so that device kernels
 * doing the same f32 arithmetic store the same bytes.
 */
function quantizeKvHead(src: Float32Array, q: Int8Array): number {
  let amax = 0;
  for (const x of src) amax = Math.max(amax, Math.abs(x));
  const scale = Math.fround(amax / 127), inv = scale > 0 ? Math.fround(1 / scale) : 0;
  for (let i = 0; i < src.length; i++) {
    const v = Math.fround(src[i] * inv);
    q[i] = Math.max(-127, Math.min(127, Math.sign(v) * Math.round(Math.abs(v))));
  }
  return scale;
}

function writeKv(t: T, scale: T | undefined, row: number, src: Float32Array): void {
  const dim = src.length;
  if (t.dtype === "f32") {
    t.f32.set(src, row * dim);
  } else if (scale) {
    const heads = width(scale), hd = dim / heads;
    for (let h = 0; h < heads; h++) {
      const q = t.i8.subarray(row * dim + h * hd, row * dim + (h + 1) * hd);
      scale.f32[row * heads + h] = quantizeKvHead(src.subarray(h * hd, (h + 1) * hd), q);
    }
  } else {
    const h = t.u16;
    for (let i = 0; i < dim; i++) h[row * dim + i] = f32ToF16(src[i]);
  }
}

function embed(table: T, out: T, step: StepParams): void {
  const dim = width(out), vocab = table.shape[0];
  for (let r = 0; r < step.nTokens; r++) {
    const id = step.tokens[r];
    if (!(id >= 0 && id < vocab)) {
      throw new LlmError("BAD_REQUEST", `token id ${id} is outside the vocabulary (0..${vocab - 1})`);
    }
    dequantize(table.dtype, table.bytes, out.f32.subarray(r * dim, (r + 1) * dim), dim, id * dim);
  }
}

function rmsNorm(x: T, weight: T, out: T, eps: number, rows: number): void {
  const n = width(x), xs = x.f32, ws = weight.f32, os = out.f32;
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += xs[r * n + i] * xs[r * n + i];
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) os[r * n + i] = ws[i] * (inv * xs[r * n + i]);
  }
}

/**
 * matmul with per-token int8 activations (SmoothQuant W8A8): each x row is quantized with the int8 KV
 * cache's rule, then every weight block contributes `d_b * (integer dot of its 32 quants with x's)`,
 * the integer dot exact and the sum over blocks in f64, times the row's scale.
 */
function matmulActInt8(x: T, w: T, out: T, rows: number): void {
  const [m, k] = w.shape, nb = k / 32, xs = x.f32, os = out.f32;
  const per = w.dtype === "q8_0" ? 34 : 18;
  const qx = new Int8Array(rows * k), sx = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    sx[r] = quantizeKvHead(xs.subarray(r * k, (r + 1) * k), qx.subarray(r * k, (r + 1) * k));
  }
  const qw = new Int8Array(k), d = new Float64Array(nb), wb = w.bytes;
  for (let j = 0; j < m; j++) {
    for (let b = 0; b < nb; b++) {
      const o = (j * nb + b) * per;
      d[b] = f16ToF32(wb[o] | (wb[o + 1] << 8));
      if (per === 34) {
        for (let i = 0; i < 32; i++) qw[b * 32 + i] = (wb[o + 2 + i] << 24) >> 24;
      } else {
        for (let i = 0; i < 16; i++) {
          qw[b * 32 + i] = (wb[o + 2 + i] & 15) - 8;
          qw[b * 32 + i + 16] = (wb[o + 2 + i] >> 4) - 8;
        }
      }
    }
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        let dot = 0;
        for (let i = b * 32, xo = r * k; i < b * 32 + 32; i++) dot += qw[i] * qx[xo + i];
        acc += d[b] * dot;
      }
      os[r * m + j] = acc * sx[r];
    }
  }
}

function matmul(x: T, w: T, out: T, rows: number, scratch: (n: number) => Float32Array): void {
  const [m, k] = w.shape;
  const xs = x.f32, os = out.f32;
  const row = w.dtype === "f32" ? undefined : scratch(k);
  for (let j = 0; j < m; j++) {
    let wr: Float32Array;
    if (row) {
      dequantize(w.dtype, w.bytes, row, k, j * k);
      wr = row;
    } else {
      wr = w.f32.subarray(j * k, (j + 1) * k);
    }
    for (let r = 0; r < rows; r++) {
      let s = 0;
      const xo = r * k;
      for (let i = 0; i < k; i++) s += wr[i] * xs[xo + i];
      os[r * m + j] = s;
    }
  }
}

function rope(o: Extract<Op, { op: "rope" }>, x: T, invFreq: T, step: StepParams): void {
  const n = width(x), half = o.headDim / 2, xs = x.f32, f = invFreq.f32;
  for (let r = 0; r < step.nTokens; r++) {
    const pos = step.positions[r];
    for (let h = 0; h < o.nHeads; h++) {
      const base = r * n + h * o.headDim;
      for (let j = 0; j < half; j++) {
        const a = pos * f[j], cos = Math.cos(a), sin = Math.sin(a);
        // interleaved pairs (2j, 2j+1); half pairs (j, j + headDim/2)
        const i0 = o.style === "interleaved" ? base + 2 * j : base + j;
        const i1 = o.style === "interleaved" ? i0 + 1 : i0 + half;
        const v0 = xs[i0], v1 = xs[i1];
        xs[i0] = v0 * cos - v1 * sin;
        xs[i1] = v0 * sin + v1 * cos;
      }
    }
  }
}

function kvWrite(k: T, v: T, cache: KvLayer, step: StepParams): void {
  const kd = width(k), ck = cache.k as T, cv = cache.v as T;
  for (let r = 0; r < step.nTokens; r++) {
    const slot = slotOf(step, step.seqIndex[r], step.positions[r], cache.blockSize);
    writeKv(ck, cache.kScale as T | undefined, slot, k.f32.subarray(r * kd, (r + 1) * kd));
    writeKv(cv, cache.vScale as T | undefined, slot, v.f32.subarray(r * kd, (r + 1) * kd));
  }
}

function attention(o: Extract<Op, { op: "attention" }>, q: T, out: T, step: StepParams): void {
  const hd = o.headDim, kd = o.nKvHeads * hd, qd = o.nHeads * hd, group = o.nHeads / o.nKvHeads;
  const ck = o.cache.k as T, cv = o.cache.v as T;
  const kRow = new Float32Array(kd), vRow = new Float32Array(kd);
  for (let r = 0; r < step.nTokens; r++) {
    const seq = step.seqIndex[r], pos = step.positions[r];
    const scores = new Float64Array(o.nHeads * (pos + 1));
    for (let t = 0; t <= pos; t++) {
      readKv(ck, o.cache.kScale as T | undefined, slotOf(step, seq, t, o.cache.blockSize), kd, kRow);
      for (let h = 0; h < o.nHeads; h++) {
        const qo = r * qd + h * hd, ko = Math.floor(h / group) * hd;
        let s = 0;
        for (let i = 0; i < hd; i++) s += q.f32[qo + i] * kRow[ko + i];
        scores[h * (pos + 1) + t] = s * o.scale;
      }
    }
    for (let h = 0; h < o.nHeads; h++) {
      const sc = scores.subarray(h * (pos + 1), (h + 1) * (pos + 1));
      let max = -Infinity;
      for (const s of sc) max = Math.max(max, s);
      let sum = 0;
      for (let t = 0; t <= pos; t++) sum += sc[t] = Math.exp(sc[t] - max);
      for (let t = 0; t <= pos; t++) sc[t] /= sum;
    }
    const acc = new Float64Array(qd);
    for (let t = 0; t <= pos; t++) {
      readKv(cv, o.cache.vScale as T | undefined, slotOf(step, seq, t, o.cache.blockSize), kd, vRow);
      for (let h = 0; h < o.nHeads; h++) {
        const p = scores[h * (pos + 1) + t], vo = Math.floor(h / group) * hd;
        for (let i = 0; i < hd; i++) acc[h * hd + i] += p * vRow[vo + i];
      }
    }
    out.f32.set(acc, r * qd);
  }
}

/** Index of the largest value, lowest index on ties; -1 when the row holds NaN. */
function argmaxRow(x: Float32Array): number {
  let best = 0;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i])) return -1;
    if (x[i] > x[best]) best = i;
  }
  return best;
}

const pickScratch = new PickScratch();

/** The `sample` op: pickToken per logit row with that row's settings (all greedy without step.sampling). */
function sampleRows(x: T, out: T, step: StepParams): void {
  const n = width(x), xs = x.f32, ids = out.i32, sp = step.sampling, nL = step.logitRows.length;
  if (sp && sp.length < nL * PICK_PARAMS) {
    throw new LlmError(
      "INTERNAL",
      `sample: step.sampling holds ${sp.length} values for ${nL} logit rows (${PICK_PARAMS} per row)`,
    );
  }
  for (let r = 0; r < nL; r++) {
    const row = xs.subarray(r * n, (r + 1) * n);
    if (!sp) {
      ids[r] = pickToken(row, GREEDY, () => 0, pickScratch);
      continue;
    }
    const b = r * PICK_PARAMS;
    const o = { temperature: sp[b], topK: sp[b + 1], topP: sp[b + 2], minP: sp[b + 3] };
    ids[r] = pickToken(row, o, () => sp[b + 4], pickScratch);
  }
}

const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0 } as const;

/** Run one op over a step's live rows. */
export function runRefOp(o: Op, step: StepParams, scratch: (n: number) => Float32Array): void {
  switch (o.op) {
    case "embed":
      return embed(o.table as T, o.out as T, step);
    case "rms_norm":
      return rmsNorm(o.x as T, o.weight as T, o.out as T, o.eps, liveRows(o.rows, step));
    case "matmul":
      if (o.actQuant === "int8") return matmulActInt8(o.x as T, o.w as T, o.out as T, liveRows(o.rows, step));
      return matmul(o.x as T, o.w as T, o.out as T, liveRows(o.rows, step), scratch);
    case "rope":
      return rope(o, o.x as T, o.invFreq as T, step);
    case "kv_write":
      return kvWrite(o.k as T, o.v as T, o.cache, step);
    case "attention":
      return attention(o, o.q as T, o.out as T, step);
    case "add": {
      const n = liveRows(o.rows, step) * width(o.a as T),
        a = (o.a as T).f32,
        b = (o.b as T).f32,
        c = (o.out as T).f32;
      for (let i = 0; i < n; i++) c[i] = a[i] + b[i];
      return;
    }
    case "silu_mul": {
      const n = step.nTokens * width(o.gate as T),
        g = (o.gate as T).f32,
        u = (o.up as T).f32,
        c = (o.out as T).f32;
      for (let i = 0; i < n; i++) c[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
      return;
    }
    case "argmax": {
      const n = width(o.x as T), xs = (o.x as T).f32, ids = (o.out as T).i32;
      for (let r = 0; r < step.logitRows.length; r++) ids[r] = argmaxRow(xs.subarray(r * n, (r + 1) * n));
      return;
    }
    case "sample":
      return sampleRows(o.x as T, o.out as T, step);
    case "gather_rows": {
      const n = width(o.x as T), xs = (o.x as T).f32, os = (o.out as T).f32;
      step.logitRows.forEach((row, i) => os.set(xs.subarray(row * n, (row + 1) * n), i * n));
      return;
    }
  }
}
