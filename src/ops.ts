/**
 * The op set of the decoder graph. Ops name their tensors; per-step values (token ids, positions,
 * sequence slots, which rows need logits) come from {@link StepParams} at run time, never from new ops,
 * so a backend can capture a step once and replay it.
 *
 * Activations are `(rows, width)` with room for the most rows a step may carry; `rows` says how many
 * are live in a step: `tokens` = step.nTokens, `logits` = step.logitRows.length.
 * @module
 */
import type { Tensor } from "./tensor.ts";
import type { RopeStyle } from "./model/config.ts";
import { LlmError } from "./errors.ts";
import { shapeStr } from "./tensor.ts";

/** Which live row count an op runs over. */
export type Rows = "tokens" | "logits";

/** One layer's slice of the paged KV cache: `k`, `v` are `(nBlocks * blockSize, kvDim)`. */
export interface KvLayer {
  /** Cached keys, `(nBlocks * blockSize, kvDim)`. */
  readonly k: Tensor;
  /** Cached values, `(nBlocks * blockSize, kvDim)`. */
  readonly v: Tensor;
  /**
   * int8 caches only: f32 scales of `k`, `(nBlocks * blockSize, nKvHeads)`, one per cache row and kv head
   * (symmetric, `scale = max|x| / 127`, `x ≈ q * scale`).
   */
  readonly kScale?: Tensor;
  /** int8 caches only: f32 scales of `v`, laid out like `kScale`. */
  readonly vScale?: Tensor;
  /** Tokens per cache block (positions per physical block). */
  readonly blockSize: number;
}

/** Per-step inputs. Arrays are sized for this step only. */
export interface StepParams {
  /** Rows (tokens) in this step, over all sequences. */
  readonly nTokens: number;
  /** Token id per row. */
  readonly tokens: Int32Array;
  /** Absolute position per row within its sequence. */
  readonly positions: Int32Array;
  /** Which block table (sequence) each row belongs to. */
  readonly seqIndex: Int32Array;
  /** Block tables, `(nSeqs, maxBlocksPerSeq)` row-major: physical block of each logical block. */
  readonly blockTables: Int32Array;
  /** Columns of `blockTables`: block-table entries per sequence. */
  readonly maxBlocksPerSeq: number;
  /** Rows whose logits are produced, in output order (usually each sequence's last row). */
  readonly logitRows: Int32Array;
  /**
   * For graphs ending in a `sample` op: per logit row, in output order, `PICK_PARAMS` (5) values:
   * temperature, topK, topP, minP and the uniform u in [0, 1) (src/sample/pick.ts). Absent: every row
   * greedy.
   */
  readonly sampling?: Float64Array;
}

/** The decoder's ops. */
export type Op =
  /** out[r] = dequant(table[tokens[r]]). */
  | { readonly op: "embed"; readonly table: Tensor; readonly out: Tensor }
  /** out = x / rms(x) * weight, per row. */
  | {
    readonly op: "rms_norm";
    readonly x: Tensor;
    readonly weight: Tensor;
    readonly out: Tensor;
    readonly eps: number;
    readonly rows: Rows;
  }
  /**
   * out(r, m) = sum_k x(r, k) * w(m, k): y = x W^T, W in any weight dtype.
   *
   * With `actQuant: "int8"` (SmoothQuant W8A8 models) each row of x is first quantized to int8 with its
   * own scale (`sx = max|x(r, :)| / 127`, `qx = round(x / sx)` half away from zero, clamped to ±127, in
   * f32 as the int8 KV cache does), W must be an integer block type (q8_0, q4_0), and
   * `out(r, m) = sx * sum_b d(m, b) * sum_{k in b} qw(m, k) * qx(r, k)`: integer dot products per
   * weight block, scaled by the block's f16 scale. Backends that cannot run it say so in `supportsOp`
   * and leave `caps.opFeatures` without `"matmul_act_int8"`.
   */
  | {
    readonly op: "matmul";
    readonly x: Tensor;
    readonly w: Tensor;
    readonly out: Tensor;
    readonly rows: Rows;
    readonly actQuant?: "int8";
  }
  /** In-place rotary embedding of `nHeads` heads per row at the row's position; invFreq is (headDim/2). */
  | {
    readonly op: "rope";
    readonly x: Tensor;
    readonly nHeads: number;
    readonly headDim: number;
    readonly style: RopeStyle;
    readonly invFreq: Tensor;
  }
  /** Write each row's k and v into its sequence's cache slot at its position. */
  | { readonly op: "kv_write"; readonly k: Tensor; readonly v: Tensor; readonly cache: KvLayer }
  /**
   * Causal grouped-query attention of each row's q over its sequence's cache positions 0..pos
   * (kv_write for the same step runs first). out is (rows, nHeads*headDim).
   */
  | {
    readonly op: "attention";
    readonly q: Tensor;
    readonly cache: KvLayer;
    readonly out: Tensor;
    readonly nHeads: number;
    readonly nKvHeads: number;
    readonly headDim: number;
    readonly scale: number;
  }
  /** out = a + b (out may alias a). */
  | { readonly op: "add"; readonly a: Tensor; readonly b: Tensor; readonly out: Tensor; readonly rows: Rows }
  /** out = silu(gate) * up. */
  | { readonly op: "silu_mul"; readonly gate: Tensor; readonly up: Tensor; readonly out: Tensor }
  /** out[i] = x[logitRows[i]]. */
  | { readonly op: "gather_rows"; readonly x: Tensor; readonly out: Tensor }
  /**
   * Greedy sampling on the device: out[r] (i32) = the index of the largest of x's row r, over the
   * logit rows; ties go to the lowest index, and a row holding NaN gives -1. Optional: the engine
   * appends it only when the backend supports it and the sampler is greedy without penalties.
   */
  | { readonly op: "argmax"; readonly x: Tensor; readonly out: Tensor }
  /**
   * Sampling on the device: out[r] (i32) = `pickToken` (src/sample/pick.ts) of x's row r with the
   * settings and uniform of row r of `StepParams.sampling`, over the logit rows; without
   * `step.sampling` every row is greedy (as `argmax`). -1 for a row holding NaN, -2 for a row of only
   * -Infinity. Optional: the engine uses it in place of `argmax` where the backend supports it.
   */
  | { readonly op: "sample"; readonly x: Tensor; readonly out: Tensor };

/** An int8 cache needs f32 scales with one row per cache row; other caches have none. */
function checkKvScales(c: KvLayer, fail: (why: string) => never): void {
  const quantized = c.k.dtype === "i8";
  if (quantized !== (c.kScale !== undefined && c.vScale !== undefined)) {
    fail(`a ${c.k.dtype} cache ${quantized ? "needs" : "takes no"} kScale/vScale`);
  }
  if (c.kScale && c.vScale) {
    for (const t of [c.kScale, c.vScale]) {
      if (t.dtype !== "f32" || t.shape[0] !== c.k.shape[0] || c.k.shape[1] % t.shape[1] !== 0) {
        fail(`scales ${t.dtype} ${shapeStr(t.shape)} for cache ${shapeStr(c.k.shape)}`);
      }
    }
  }
}

/** Op names. */
export type OpName = Op["op"];

/** Every op name, in graph order of first use (a backend that runs them all can list this). */
export const OP_NAMES: readonly OpName[] = [
  "embed",
  "rms_norm",
  "matmul",
  "rope",
  "kv_write",
  "attention",
  "add",
  "silu_mul",
  "gather_rows",
  "argmax",
  "sample",
];

/** Check an op's tensor shapes against each other; throws INTERNAL naming the op and shapes. */
export function checkOp(o: Op): void {
  const fail = (why: string): never => {
    throw new LlmError("INTERNAL", `op ${o.op}: ${why}`);
  };
  const width = (t: Tensor): number => t.shape[t.shape.length - 1];
  switch (o.op) {
    case "embed":
      if (width(o.table) !== width(o.out)) {
        fail(`table ${shapeStr(o.table.shape)} vs out ${shapeStr(o.out.shape)}`);
      }
      return;
    case "rms_norm":
      if (width(o.x) !== o.weight.shape[0] || width(o.out) !== width(o.x)) {
        fail(`x ${shapeStr(o.x.shape)}, weight ${shapeStr(o.weight.shape)}, out ${shapeStr(o.out.shape)}`);
      }
      return;
    case "matmul":
      if (o.w.shape.length !== 2 || width(o.x) !== o.w.shape[1] || width(o.out) !== o.w.shape[0]) {
        fail(`x ${shapeStr(o.x.shape)} @ w ${shapeStr(o.w.shape)}^T -> out ${shapeStr(o.out.shape)}`);
      }
      return;
    case "rope":
      if (width(o.x) < o.nHeads * o.headDim || o.invFreq.shape[0] !== o.headDim / 2) {
        fail(`x ${shapeStr(o.x.shape)} for ${o.nHeads} heads of ${o.headDim}`);
      }
      return;
    case "kv_write":
      if (width(o.k) !== width(o.cache.k) || width(o.v) !== width(o.cache.v)) {
        fail(`k ${shapeStr(o.k.shape)} into cache ${shapeStr(o.cache.k.shape)}`);
      }
      checkKvScales(o.cache, fail);
      return;
    case "attention":
      if (o.nHeads % o.nKvHeads !== 0 || width(o.q) !== o.nHeads * o.headDim || width(o.out) !== width(o.q)) {
        fail(`q ${shapeStr(o.q.shape)}, ${o.nHeads}/${o.nKvHeads} heads of ${o.headDim}`);
      }
      if (width(o.cache.k) !== o.nKvHeads * o.headDim) fail(`cache ${shapeStr(o.cache.k.shape)}`);
      checkKvScales(o.cache, fail);
      if (o.cache.kScale && width(o.cache.kScale) !== o.nKvHeads) {
        fail(`scales ${shapeStr(o.cache.kScale.shape)} for ${o.nKvHeads} kv heads`);
      }
      return;
    case "argmax":
    case "sample":
      if (o.out.dtype !== "i32" || o.x.dtype !== "f32" || o.out.shape[0] !== o.x.shape[0]) {
        fail(`x ${o.x.dtype} ${shapeStr(o.x.shape)} -> out ${o.out.dtype} ${shapeStr(o.out.shape)}`);
      }
      return;
    case "add":
      if (width(o.a) !== width(o.b) || width(o.a) !== width(o.out)) fail("widths differ");
      return;
    case "silu_mul":
      if (width(o.gate) !== width(o.up) || width(o.gate) !== width(o.out)) fail("widths differ");
      return;
    case "gather_rows":
      if (width(o.x) !== width(o.out)) fail("widths differ");
      return;
  }
}

/** Live rows of an op's output for a step. */
export function liveRows(rows: Rows, step: StepParams): number {
  return rows === "tokens" ? step.nTokens : step.logitRows.length;
}
