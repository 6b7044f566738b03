/**
 * Planning a graph for the webgpu backend: the op list becomes nodes, fusing the decoder's patterns so
 * a decode step needs few dispatches:
 * - rms_norm + the 1..3 matmuls reading its output -> one matmul node with a norm prologue (QKV);
 * - matmul(w1) + matmul(w3) + silu_mul -> one node computing silu(w1 x) * (w3 x) (gate-up);
 * - matmul + residual add -> one node adding into the residual;
 * - gather_rows + rms_norm + matmul (the LM head) -> one node reading the logit rows directly;
 * - rope(q) + rope(k) + kv_write -> one rope_kv node.
 * A fusion that skips writing an intermediate applies only when no later op reads it. Whether a
 * matmul node runs as one GEMV dispatch or unfused as GEMM dispatches is decided per step (encode.ts).
 * @module
 */
import type { KvLayer, Op, Rows } from "../../ops.ts";
import type { Tensor } from "../../tensor.ts";
import { isMatmulOf, type MatmulOp, readLater, residualOf } from "../../fusion.ts";
import type { RopeStyle } from "../../model/config.ts";

/** One weight matrix of a matmul node and where its result goes. */
export interface MatOut {
  readonly w: Tensor;
  readonly out: Tensor;
}

/** A planned unit of work. */
export type Node =
  | { readonly kind: "embed"; readonly table: Tensor; readonly out: Tensor }
  | {
    readonly kind: "rms_norm";
    readonly x: Tensor;
    readonly weight: Tensor;
    readonly out: Tensor;
    readonly eps: number;
    readonly rows: Rows;
  }
  | {
    readonly kind: "matmul";
    /** The input; with `gather`, the full activations whose logit rows are read. */
    readonly x: Tensor;
    readonly rows: Rows;
    /** The gathered rows' tensor (written only when the node runs unfused). */
    readonly gather?: Tensor;
    /** RMSNorm of the input first; `out` is written only when the node runs unfused. */
    readonly norm?: { readonly weight: Tensor; readonly eps: number; readonly out: Tensor };
    /** 1..3 matrices sharing the input. */
    readonly mats: readonly MatOut[];
    /** mats = [gate, up]: the node's result is silu(gate x) * (up x), written here. */
    readonly silu?: Tensor;
    /** The result is added into mats[0].out (a residual stream) instead of replacing it. */
    readonly residual: boolean;
  }
  | {
    readonly kind: "rope_kv";
    /** Rotated in place: q (nHq heads), k (nHk heads); then k, v written into the cache. */
    readonly q?: Tensor;
    readonly nHq: number;
    readonly k?: Tensor;
    readonly nHk: number;
    readonly write?: { readonly k: Tensor; readonly v: Tensor; readonly cache: KvLayer };
    readonly headDim: number;
    readonly style: RopeStyle;
    readonly invFreq?: Tensor;
  }
  | Extract<Op, { op: "attention" }> & {
    readonly kind: "attention";
    /**
     * The rope + KV write node just before, when it feeds this attention (its q, its cache) and its rotated
     * q and k are read by nothing else: decode steps fold it into the attention dispatch.
     */
    readonly rope?: Extract<Node, { kind: "rope_kv" }>;
  }
  | {
    readonly kind: "add";
    readonly a: Tensor;
    readonly b: Tensor;
    readonly out: Tensor;
    readonly rows: Rows;
  }
  | { readonly kind: "silu_mul"; readonly gate: Tensor; readonly up: Tensor; readonly out: Tensor }
  | { readonly kind: "gather_rows"; readonly x: Tensor; readonly out: Tensor }
  | { readonly kind: "argmax" | "sample"; readonly x: Tensor; readonly out: Tensor }
  /** A matmul with int8 activations (W8A8): act_quant_int8 then matmul_a8, never fused. */
  | {
    readonly kind: "matmul_a8";
    readonly x: Tensor;
    readonly w: Tensor;
    readonly out: Tensor;
    readonly rows: Rows;
  };

/** Whether `o` is a float-activation matmul of input `x` over `rows` (int8-activation ones never fuse). */
function floatMatmulOf(o: Op | undefined, x: Tensor, rows: Rows): o is MatmulOp {
  return isMatmulOf(o, x, rows) && !o.actQuant;
}

/**
 * A matmul node from ops[i] (a matmul reading `x`), with an optional norm/gather prologue already
 * matched; returns the node and the index of the last op it covers.
 */
function matmulNode(
  ops: readonly Op[],
  i: number,
  x: Tensor,
  rows: Rows,
  pre: { gather?: Tensor; norm?: { weight: Tensor; eps: number; out: Tensor } },
): { node: Node; last: number } {
  const input = pre.norm?.out ?? pre.gather ?? x;
  const m1 = ops[i] as MatmulOp, m2 = ops[i + 1], s = ops[i + 2];
  if (
    floatMatmulOf(m2, input, rows) && s?.op === "silu_mul" && s.gate === m1.out && s.up === m2.out &&
    !readLater(ops, i + 3, m2.out) && (s.out === m1.out || !readLater(ops, i + 3, m1.out)) &&
    (!pre.norm || !readLater(ops, i + 3, input))
  ) {
    return {
      node: {
        kind: "matmul",
        x,
        rows,
        ...pre,
        mats: [{ w: m1.w, out: m1.out }, { w: m2.w, out: m2.out }],
        silu: s.out,
        residual: false,
      },
      last: i + 2,
    };
  }
  const mats: MatOut[] = [{ w: m1.w, out: m1.out }];
  while (mats.length < 3 && floatMatmulOf(ops[i + mats.length], input, rows)) {
    const m = ops[i + mats.length] as MatmulOp;
    mats.push({ w: m.w, out: m.out });
  }
  let last = i + mats.length - 1;
  let residual = false;
  if (mats.length === 1) {
    const r = residualOf(ops, last + 1, m1);
    if (r) {
      mats[0] = { w: m1.w, out: r };
      residual = true;
      last++;
    }
  }
  return { node: { kind: "matmul", x, rows, ...pre, mats, residual }, last };
}

/** Plan an op list into nodes. */
export function planNodes(ops: readonly Op[]): Node[] {
  const nodes: Node[] = [];
  for (let i = 0; i < ops.length; i++) {
    const o = ops[i];
    if (o.op === "gather_rows") {
      const n = ops[i + 1], m = ops[i + 2];
      if (
        n?.op === "rms_norm" && n.x === o.out && n.rows === "logits" && floatMatmulOf(m, n.out, "logits") &&
        !readLater(ops, i + 3, o.out) && !readLater(ops, i + 3, n.out)
      ) {
        const r = matmulNode(ops, i + 2, o.x, "logits", {
          gather: o.out,
          norm: { weight: n.weight, eps: n.eps, out: n.out },
        });
        nodes.push(r.node);
        i = r.last;
        continue;
      }
      nodes.push({ kind: "gather_rows", x: o.x, out: o.out });
      continue;
    }
    if (o.op === "rms_norm") {
      const m = ops[i + 1];
      if (floatMatmulOf(m, o.out, o.rows) && o.out !== o.x) {
        const r = matmulNode(ops, i + 1, o.x, o.rows, { norm: { weight: o.weight, eps: o.eps, out: o.out } });
        // the norm's output must not be needed after the node (it is not written by the fused form)
        if (!readLater(ops, r.last + 1, o.out)) {
          nodes.push(r.node);
          i = r.last;
          continue;
        }
      }
      nodes.push({ kind: "rms_norm", x: o.x, weight: o.weight, out: o.out, eps: o.eps, rows: o.rows });
      continue;
    }
    if (o.op === "matmul" && o.actQuant) {
      nodes.push({ kind: "matmul_a8", x: o.x, w: o.w, out: o.out, rows: o.rows });
      continue;
    }
    if (o.op === "matmul") {
      const r = matmulNode(ops, i, o.x, o.rows, {});
      nodes.push(r.node);
      i = r.last;
      continue;
    }
    if (o.op === "rope" || o.op === "kv_write") {
      const r = ropeNode(ops, i);
      const a = ops[r.last + 1], rn = r.node as Extract<Node, { kind: "rope_kv" }>;
      if (
        a?.op === "attention" && rn.q === a.q && rn.k && rn.write?.cache === a.cache && rn.nHq === a.nHeads &&
        rn.nHk === a.nKvHeads && rn.headDim === a.headDim && !readLater(ops, r.last + 2, a.q) &&
        !readLater(ops, r.last + 2, rn.k)
      ) {
        nodes.push({ ...a, kind: "attention", rope: rn });
        i = r.last + 1;
        continue;
      }
      nodes.push(r.node);
      i = r.last;
      continue;
    }
    switch (o.op) {
      case "embed":
        nodes.push({ kind: "embed", table: o.table, out: o.out });
        break;
      case "attention":
        nodes.push({ ...o, kind: "attention" });
        break;
      case "add":
        nodes.push({ kind: "add", a: o.a, b: o.b, out: o.out, rows: o.rows });
        break;
      case "silu_mul":
        nodes.push({ kind: "silu_mul", gate: o.gate, up: o.up, out: o.out });
        break;
      case "argmax":
      case "sample":
        nodes.push({ kind: o.op, x: o.x, out: o.out });
        break;
    }
  }
  return nodes;
}

type RopeOp = Extract<Op, { op: "rope" }>;

/** rope(q) [+ rope(k)] [+ kv_write(k, v)] as one node. */
function ropeNode(ops: readonly Op[], i: number): { node: Node; last: number } {
  const o = ops[i];
  if (o.op === "kv_write") {
    return { node: { kind: "rope_kv", nHq: 0, nHk: 0, write: o, headDim: 0, style: "interleaved" }, last: i };
  }
  const a = o as RopeOp;
  const b = ops[i + 1];
  const same = (r: Op | undefined): r is RopeOp =>
    r?.op === "rope" && r.invFreq === a.invFreq && r.style === a.style && r.headDim === a.headDim &&
    r.x !== a.x;
  const base = { headDim: a.headDim, style: a.style, invFreq: a.invFreq };
  if (same(b)) {
    const w = ops[i + 2];
    if (w?.op === "kv_write" && w.k === b.x && w.v !== a.x) {
      return {
        node: { kind: "rope_kv", q: a.x, nHq: a.nHeads, k: b.x, nHk: b.nHeads, write: w, ...base },
        last: i + 2,
      };
    }
    return { node: { kind: "rope_kv", q: a.x, nHq: a.nHeads, k: b.x, nHk: b.nHeads, ...base }, last: i + 1 };
  }
  if (b?.op === "kv_write" && b.k === a.x && b.v !== a.x) {
    return { node: { kind: "rope_kv", nHq: 0, k: a.x, nHk: a.nHeads, write: b, ...base }, last: i + 1 };
  }
  return { node: { kind: "rope_kv", q: a.x, nHq: a.nHeads, nHk: 0, ...base }, last: i };
}
