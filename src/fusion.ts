/**
 * Graph facts the backends' compilers share when they fuse op patterns into fewer kernels: which
 * tensors an op reads and writes, whether a tensor is still needed later, and the common patterns
 * (matmul of a given input, matmul + residual add).
 * @module
 */
import type { KvLayer, Op, Rows } from "./ops.ts";
import type { Tensor } from "./tensor.ts";

/** A matmul op. */
export type MatmulOp = Extract<Op, { op: "matmul" }>;

/** The tensors of a KV-cache layer: k, v and, for int8 caches, their scales. */
export function kvTensors(c: KvLayer): Tensor[] {
  return [c.k, c.v, ...(c.kScale && c.vScale ? [c.kScale, c.vScale] : [])];
}

/** Tensors an op reads and writes (rope reads and writes its x). */
export function opAccess(o: Op): { reads: Tensor[]; writes: Tensor[] } {
  switch (o.op) {
    case "embed":
      return { reads: [o.table], writes: [o.out] };
    case "rms_norm":
      return { reads: [o.x, o.weight], writes: [o.out] };
    case "matmul":
      return { reads: [o.x, o.w], writes: [o.out] };
    case "rope":
      return { reads: [o.x, o.invFreq], writes: [o.x] };
    case "kv_write":
      return { reads: [o.k, o.v], writes: kvTensors(o.cache) };
    case "attention":
      return { reads: [o.q, ...kvTensors(o.cache)], writes: [o.out] };
    case "add":
      return { reads: [o.a, o.b], writes: [o.out] };
    case "silu_mul":
      return { reads: [o.gate, o.up], writes: [o.out] };
    case "gather_rows":
    case "argmax":
    case "sample":
      return { reads: [o.x], writes: [o.out] };
  }
}

/** Whether an op from `from` on reads `t` before overwriting it (a fusion may skip writing `t` if not). */
export function readLater(ops: readonly Op[], from: number, t: Tensor): boolean {
  for (let i = from; i < ops.length; i++) {
    const a = opAccess(ops[i]);
    if (a.reads.includes(t)) return true;
    if (a.writes.includes(t)) return false;
  }
  return false;
}

/** Whether `o` is a matmul of input `x` over `rows`. */
export function isMatmulOf(o: Op | undefined, x: Tensor, rows: Rows): o is MatmulOp {
  return o?.op === "matmul" && o.x === x && o.rows === rows;
}

/**
 * The residual R when ops[at] is `R = R + m.out` (either order), R is not m's own input (a fused
 * kernel cannot read x while writing it), and m.out is not read later: then m can add into R itself.
 */
export function residualOf(ops: readonly Op[], at: number, m: MatmulOp): Tensor | undefined {
  const a = ops[at];
  if (a?.op !== "add" || a.rows !== m.rows) return undefined;
  const other = a.a === m.out ? a.b : a.b === m.out ? a.a : undefined;
  if (!other || other !== a.out || other === m.out || other === m.x) return undefined;
  if (readLater(ops, at + 1, m.out)) return undefined;
  return other;
}
