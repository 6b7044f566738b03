/**
 * Compiling a graph for the CUDA runtime: fuse the decoder's op patterns into fewer kernels, then
 * encode them as int64 records (layouts in kernels/cuda/runtime.cuh's Op enum). Fusions:
 * - rms_norm + the 1..3 matmuls reading its output → one GEMV with a norm prologue (QKV in one launch);
 * - matmul(w1) + matmul(w3) + silu_mul (optionally after a norm) → one gate-up GEMV;
 * - matmul + residual add → one GEMV with a residual epilogue;
 * - rope(q) + rope(k) + kv_write → one launch.
 * int8-activation (W8A8) matmuls take the same patterns with their own record (MATMUL_A8: the activation
 * quantization, optionally after the norm, then int8 GEMV/GEMM), see {@link a8Record}.
 * KV records end with the int8 cache's scale pointers (0 for float caches).
 * A fusion that skips writing an intermediate applies only when no later op reads it.
 * @module
 */
import type { KvLayer, Op, Rows } from "../../ops.ts";
import { isMatmulOf, type MatmulOp, readLater, residualOf } from "../../fusion.ts";
import type { Tensor } from "../../tensor.ts";
import { LlmError } from "../../errors.ts";

/** What program.ts needs of a CUDA tensor. */
export interface DeviceTensor extends Tensor {
  /** Device address of the tensor's data (activations, caches, float weights). */
  readonly ptr: bigint;
  /** Device layout of a weight once uploaded: quants, scales, format, group, rows, columns. */
  readonly weight?: WeightLayout;
}

/** A weight as the kernels read it (kernels.cuh WeightRef). */
export interface WeightLayout {
  readonly q: bigint;
  readonly scales: bigint;
  readonly fmt: number;
  readonly group: number;
  readonly m: number;
  readonly k: number;
}

/** Opcodes of the CUDA runtime (kernels/cuda/runtime.cuh). */
export const OP = {
  EMBED: 1,
  RMS_NORM: 2,
  MATMUL: 3,
  MATMUL_MULTI: 4,
  GATEUP: 5,
  ROPE: 6,
  KV_WRITE: 7,
  ROPE_KV: 8,
  ATTENTION: 9,
  ADD: 10,
  SILU_MUL: 11,
  GATHER: 12,
  ARGMAX: 13,
  MATMUL_A8: 14,
  SAMPLE: 15,
} as const;

/** Scale pointers of an int8 cache (0 for float caches), appended to every KV record. */
function kvScaleWords(c: KvLayer): Word[] {
  return [dev(c.kScale), dev(c.vScale)];
}

type Word = bigint | number;

const f64 = new Float64Array(1);
const i64 = new BigInt64Array(f64.buffer);

function floatBits(x: number): bigint {
  f64[0] = x;
  return i64[0];
}

const width = (t: Tensor): number => t.shape[t.shape.length - 1];
const rowsWord = (r: Rows): number => (r === "tokens" ? 0 : 1);

function dev(t: Tensor | undefined): bigint {
  return t ? (t as DeviceTensor).ptr : 0n;
}

function weightWords(t: Tensor): Word[] {
  const w = (t as DeviceTensor).weight;
  if (!w) throw new LlmError("INTERNAL", `cuda: weight ${t.label} was compiled before its upload finished`);
  return [w.q, w.scales, w.fmt, w.group, w.m, w.k];
}

/** A float-activation matmul of x over rows (the float kernels' fusions take only these). */
function isFloatMatmulOf(o: Op | undefined, x: Tensor, rows: Rows): o is MatmulOp {
  return isMatmulOf(o, x, rows) && o.actQuant === undefined;
}

function isA8MatmulOf(o: Op | undefined, x: Tensor, rows: Rows): o is MatmulOp {
  return isMatmulOf(o, x, rows) && o.actQuant === "int8";
}

/**
 * The MATMUL_A8 record starting at ops[i] when ops[i] is an int8-activation matmul, or an rms_norm whose
 * output only such matmuls read: [x, ldx, normW, eps, rows, mode, nW, (W, y, ldy, res) * nW], and the
 * index of the last op it covers. mode 1 is norm? + gate and up matmuls + silu_mul (y_0 = silu(gate) * up,
 * y_1 the up tensor as scratch); mode 0 is 1..3 matmuls of one input (with the residual add when one).
 */
function a8Record(ops: readonly Op[], i: number): { fields: Word[]; last: number } | undefined {
  const o = ops[i];
  let x: Tensor, rows: Rows, norm: Word[], first: number;
  if (o.op === "rms_norm") {
    if (!isA8MatmulOf(ops[i + 1], o.out, o.rows)) return undefined;
    x = o.out;
    rows = o.rows;
    norm = [dev(o.x), width(o.x), dev(o.weight), floatBits(o.eps)];
    first = i + 1;
  } else if (o.op === "matmul" && o.actQuant === "int8") {
    x = o.x;
    rows = o.rows;
    norm = [dev(o.x), width(o.x), 0n, floatBits(0)];
    first = i;
  } else {
    return undefined;
  }
  const head = [...norm, rowsWord(rows)];
  const wy = (
    m: MatmulOp,
    y: Tensor,
    res?: Tensor,
  ): Word[] => [...weightWords(m.w), dev(y), width(y), dev(res)];
  const m1 = ops[first], m2 = ops[first + 1], s = ops[first + 2];
  if (
    isA8MatmulOf(m1, x, rows) && isA8MatmulOf(m2, x, rows) && s?.op === "silu_mul" && s.gate === m1.out &&
    s.up === m2.out && s.out !== m2.out && m1.out !== x && !readLater(ops, first + 3, m2.out) &&
    (s.out === m1.out || !readLater(ops, first + 3, m1.out)) &&
    (first === i || !readLater(ops, first + 3, x))
  ) {
    return { fields: [...head, 1, 2, ...wy(m1, s.out), ...wy(m2, m2.out)], last: first + 2 };
  }
  const mats: MatmulOp[] = [];
  while (mats.length < 3 && isA8MatmulOf(ops[first + mats.length], x, rows)) {
    const m = ops[first + mats.length] as MatmulOp;
    mats.push(m);
    if (m.out === x) break; // a later matmul would read the new x
  }
  const after = first + mats.length;
  if (first !== i && readLater(ops, after, x)) return undefined; // the norm's output is needed: no fusion
  const res = mats.length === 1 ? residualOf(ops, after, mats[0]) : undefined;
  return {
    fields: [...head, 0, mats.length, ...mats.flatMap((m) => wy(m, res ?? m.out, res))],
    last: after - 1 + (res ? 1 : 0),
  };
}

/** Encode ops (after fusion) as runtime records. */
export function compileProgram(ops: readonly Op[]): BigInt64Array {
  const words: Word[] = [];
  const emit = (opcode: number, fields: Word[]): void => {
    words.push(opcode, fields.length + 2, ...fields);
  };

  for (let i = 0; i < ops.length; i++) {
    const o = ops[i];
    const a8 = a8Record(ops, i);
    if (a8) {
      emit(OP.MATMUL_A8, a8.fields);
      i = a8.last;
      continue;
    }
    // rms_norm feeding matmuls: fuse the norm into their prologue
    if (o.op === "rms_norm") {
      const n = o.out;
      const m1 = ops[i + 1], m2 = ops[i + 2], s = ops[i + 3];
      if (
        isFloatMatmulOf(m1, n, o.rows) && isFloatMatmulOf(m2, n, o.rows) && s?.op === "silu_mul" &&
        s.gate === m1.out &&
        s.up === m2.out && !readLater(ops, i + 4, n) && !readLater(ops, i + 4, m2.out) &&
        (s.out === m1.out || !readLater(ops, i + 4, m1.out))
      ) {
        emit(OP.GATEUP, [
          dev(o.x),
          width(o.x),
          dev(o.weight),
          floatBits(o.eps),
          dev(n),
          ...weightWords(m1.w),
          ...weightWords(m2.w),
          dev(s.out),
          dev(m2.out),
          rowsWord(o.rows),
        ]);
        i += 3;
        continue;
      }
      const mats: MatmulOp[] = [];
      while (mats.length < 3 && isFloatMatmulOf(ops[i + 1 + mats.length], n, o.rows)) {
        mats.push(ops[i + 1 + mats.length] as MatmulOp);
      }
      const after = i + 1 + mats.length;
      if (mats.length > 0 && !readLater(ops, after, n)) {
        const res = mats.length === 1 ? residualOf(ops, after, mats[0]) : undefined;
        if (mats.length === 1) {
          const m = mats[0];
          emit(OP.MATMUL, [
            dev(o.x),
            width(o.x),
            ...weightWords(m.w),
            dev(res ?? m.out),
            width(m.out),
            dev(res),
            dev(o.weight),
            floatBits(o.eps),
            dev(n),
            rowsWord(o.rows),
          ]);
          i = after - 1 + (res ? 1 : 0);
        } else {
          emit(OP.MATMUL_MULTI, [
            dev(o.x),
            width(o.x),
            dev(o.weight),
            floatBits(o.eps),
            dev(n),
            rowsWord(o.rows),
            mats.length,
            ...mats.flatMap((m) => [...weightWords(m.w), dev(m.out)]),
          ]);
          i = after - 1;
        }
        continue;
      }
      emit(OP.RMS_NORM, [
        dev(o.x),
        dev(o.weight),
        dev(o.out),
        width(o.x),
        floatBits(o.eps),
        rowsWord(o.rows),
      ]);
      continue;
    }
    if (o.op === "matmul") {
      const m2 = ops[i + 1], s = ops[i + 2];
      if (
        isFloatMatmulOf(m2, o.x, o.rows) && s?.op === "silu_mul" && s.gate === o.out && s.up === m2.out &&
        !readLater(ops, i + 3, m2.out) && (s.out === o.out || !readLater(ops, i + 3, o.out))
      ) {
        emit(OP.GATEUP, [
          dev(o.x),
          width(o.x),
          0n,
          floatBits(0),
          0n,
          ...weightWords(o.w),
          ...weightWords(m2.w),
          dev(s.out),
          dev(m2.out),
          rowsWord(o.rows),
        ]);
        i += 2;
        continue;
      }
      const res = residualOf(ops, i + 1, o);
      emit(OP.MATMUL, [
        dev(o.x),
        width(o.x),
        ...weightWords(o.w),
        dev(res ?? o.out),
        width(o.out),
        dev(res),
        0n,
        floatBits(0),
        0n,
        rowsWord(o.rows),
      ]);
      if (res) i++;
      continue;
    }
    if (o.op === "rope") {
      const r2 = ops[i + 1], kw = ops[i + 2];
      if (
        r2?.op === "rope" && kw?.op === "kv_write" && kw.k === r2.x && r2.invFreq === o.invFreq &&
        r2.style === o.style && r2.headDim === o.headDim && width(o.x) === o.nHeads * o.headDim &&
        width(r2.x) === r2.nHeads * r2.headDim
      ) {
        emit(OP.ROPE_KV, [
          dev(o.x),
          dev(r2.x),
          dev(kw.v),
          o.nHeads,
          r2.nHeads,
          o.headDim,
          o.style === "interleaved" ? 0 : 1,
          dev(o.invFreq),
          dev(kw.cache.k),
          dev(kw.cache.v),
          kvFormat(kw.cache.k),
          kw.cache.blockSize,
          ...kvScaleWords(kw.cache),
        ]);
        i += 2;
        continue;
      }
      emit(OP.ROPE, [
        dev(o.x),
        width(o.x),
        o.nHeads,
        o.headDim,
        o.style === "interleaved" ? 0 : 1,
        dev(o.invFreq),
      ]);
      continue;
    }
    switch (o.op) {
      case "embed":
        emit(OP.EMBED, [...weightWords(o.table), dev(o.out)]);
        break;
      case "kv_write":
        emit(OP.KV_WRITE, [
          dev(o.k),
          dev(o.v),
          width(o.k),
          dev(o.cache.k),
          dev(o.cache.v),
          kvFormat(o.cache.k),
          o.cache.blockSize,
          ...kvScaleWords(o.cache),
          o.cache.kScale ? width(o.cache.kScale) : 0,
        ]);
        break;
      case "attention":
        emit(OP.ATTENTION, [
          dev(o.q),
          dev(o.cache.k),
          dev(o.cache.v),
          kvFormat(o.cache.k),
          dev(o.out),
          o.nHeads,
          o.nKvHeads,
          o.headDim,
          floatBits(o.scale),
          o.cache.blockSize,
          o.cache.k.shape[0],
          ...kvScaleWords(o.cache),
        ]);
        break;
      case "add":
        emit(OP.ADD, [dev(o.a), dev(o.b), dev(o.out), width(o.out), rowsWord(o.rows)]);
        break;
      case "silu_mul":
        emit(OP.SILU_MUL, [dev(o.gate), dev(o.up), dev(o.out), width(o.out)]);
        break;
      case "gather_rows":
        emit(OP.GATHER, [dev(o.x), dev(o.out), width(o.out)]);
        break;
      case "argmax":
        emit(OP.ARGMAX, [dev(o.x), dev(o.out), width(o.x)]);
        break;
      case "sample":
        emit(OP.SAMPLE, [dev(o.x), dev(o.out), width(o.x)]);
        break;
    }
  }
  return BigInt64Array.from(words, (w) => BigInt(w));
}

function kvFormat(t: Tensor): number {
  if (t.dtype === "f32") return 0;
  if (t.dtype === "f16") return 1;
  if (t.dtype === "i8") return 2;
  throw new LlmError("UNSUPPORTED_DTYPE", `cuda: KV cache dtype ${t.dtype} is not supported (f32, f16, i8)`);
}
