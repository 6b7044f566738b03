/**
 * A small graph builder: it allocates activations on the backend, shape-checks each op as it is added,
 * and keeps the op list. Activations are allocated once per graph and reused by every layer (as
 * llama2.c's RunState does), so a 32-layer model needs the same scratch as a 1-layer one.
 * @module
 */
import type { Backend } from "./backend.ts";
import type { Tensor } from "./tensor.ts";
import type { DType, Shape } from "./types.ts";
import { checkOp, type Op } from "./ops.ts";

/** Collects ops and the activations they use. */
export class GraphBuilder {
  readonly ops: Op[] = [];
  readonly activations: Tensor[] = [];
  #backend: Backend;

  constructor(backend: Backend) {
    this.#backend = backend;
  }

  /** A compute tensor owned by the graph. */
  act(label: string, shape: Shape, dtype: DType = "f32"): Tensor {
    const t = this.#backend.alloc(dtype, shape, "compute", label);
    this.activations.push(t);
    return t;
  }

  /** Add an op after checking its shapes. */
  push(op: Op): void {
    checkOp(op);
    this.ops.push(op);
  }

  /** Free the activations. */
  free(): void {
    for (const t of this.activations) this.#backend.free(t);
    this.activations.length = 0;
  }
}
