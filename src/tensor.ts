/**
 * Tensor handles and shape helpers. A Tensor is a handle owned by a backend; the core only sees its
 * dtype, shape and size.
 * @module
 */
import type { DType, Shape } from "./types.ts";

/** What a tensor holds; backends may place each kind differently (e.g. KV in its own pool). */
export type TensorUsage = "weights" | "kv" | "compute";

/** A backend-owned tensor handle. */
export interface Tensor {
  /** Element type. */
  readonly dtype: DType;
  /** Dimensions, outermost first. */
  readonly shape: Shape;
  /** Size of the tensor's data in bytes (quantized dtypes count their packed blocks). */
  readonly byteLength: number;
  /** What the tensor holds. */
  readonly usage: TensorUsage;
  /** A readable name for errors and graph dumps. */
  readonly label: string;
}

/** Number of elements in a shape. */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** "(a, b, c)". */
export function shapeStr(shape: Shape): string {
  return `(${shape.join(", ")})`;
}
