/**
 * The ref backend: plain TypeScript over host memory. The numeric oracle for every other backend and
 * the fallback that runs anywhere.
 * @module
 */
import type { Backend, BackendCaps, BackendFactory, BackendOptions, CompiledGraph } from "../../backend.ts";
import type { Tensor, TensorUsage } from "../../tensor.ts";
import type { DType, Shape } from "../../types.ts";
import type { Op, StepParams } from "../../ops.ts";
import { OP_NAMES } from "../../ops.ts";
import { BACKEND_API_VERSION } from "../../backend.ts";
import { byteLengthOf, DTYPES } from "../../dtype.ts";
import { numel } from "../../tensor.ts";
import { LlmError } from "../../errors.ts";
import { runRefOp } from "./ref_ops.ts";

/** A host-memory tensor. */
export class RefTensor implements Tensor {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly byteLength: number;
  readonly usage: TensorUsage;
  readonly label: string;
  readonly bytes: Uint8Array;
  #f32?: Float32Array;
  #u16?: Uint16Array;
  #i8?: Int8Array;
  #i32?: Int32Array;

  constructor(dtype: DType, shape: Shape, usage: TensorUsage, label: string) {
    this.dtype = dtype;
    this.shape = [...shape];
    this.byteLength = byteLengthOf(dtype, numel(shape), label);
    this.usage = usage;
    this.label = label;
    this.bytes = new Uint8Array(this.byteLength);
  }

  /** The data as f32 (only for f32 tensors). */
  get f32(): Float32Array {
    if (this.dtype !== "f32") throw new LlmError("INTERNAL", `${this.label} is ${this.dtype}, not f32`);
    return this.#f32 ??= new Float32Array(this.bytes.buffer, 0, this.byteLength / 4);
  }

  /** The data as int32 (i32 tensors). */
  get i32(): Int32Array {
    return this.#i32 ??= new Int32Array(this.bytes.buffer, 0, this.byteLength >> 2);
  }

  /** The data as signed bytes (i8 tensors). */
  get i8(): Int8Array {
    return this.#i8 ??= new Int8Array(this.bytes.buffer, 0, this.byteLength);
  }

  /** The data as raw 16-bit words (f16/bf16 tensors). */
  get u16(): Uint16Array {
    return this.#u16 ??= new Uint16Array(this.bytes.buffer, 0, this.byteLength >> 1);
  }
}

const OPS = OP_NAMES;

const WEIGHT_DTYPES: readonly DType[] = DTYPES.filter((d) => d !== "i8" && d !== "i32");
/** Weight dtypes of int8-activation matmuls: blocks of 32 integers with one f16 scale. */
const ACT_INT8_WEIGHTS: readonly DType[] = ["q8_0", "q4_0"];

class RefBackend implements Backend {
  readonly name = "ref" as const;
  readonly caps: BackendCaps = {
    weightDTypes: WEIGHT_DTYPES,
    kvDTypes: ["f32", "f16", "i8"],
    defaultKvDType: "f32",
    ops: OPS,
    maxTensorBytes: 2 ** 32,
    memoryBytes: 0,
    device: "CPU (plain TypeScript)",
    preferredStepTokens: 64,
    opFeatures: ["matmul_act_int8"],
  };
  #scratch = new Float32Array(0);

  alloc(dtype: DType, shape: Shape, usage: TensorUsage, label = "tensor"): Tensor {
    const bytes = byteLengthOf(dtype, numel(shape), label);
    if (bytes > this.caps.maxTensorBytes) {
      throw new LlmError("OUT_OF_MEMORY", `${label}: ${bytes} bytes exceeds the ref backend's tensor limit`);
    }
    return new RefTensor(dtype, shape, usage, label);
  }

  upload(dst: Tensor, src: ArrayBufferView, options?: { byteOffset?: number }): Promise<void> {
    const t = dst as RefTensor, off = options?.byteOffset ?? 0;
    if (off + src.byteLength > t.byteLength) {
      throw new LlmError(
        "INTERNAL",
        `upload of ${src.byteLength} bytes at ${off} overruns ${t.label} (${t.byteLength})`,
      );
    }
    t.bytes.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), off);
    return Promise.resolve();
  }

  download(src: Tensor, options?: { byteLength?: number }): Promise<ArrayBuffer> {
    const t = src as RefTensor;
    return Promise.resolve(t.bytes.slice(0, options?.byteLength ?? t.byteLength).buffer);
  }

  supportsOp(op: Op): boolean {
    if (!OPS.includes(op.op)) return false;
    if (op.op === "matmul") {
      const w = op.actQuant === "int8" ? ACT_INT8_WEIGHTS : WEIGHT_DTYPES;
      return w.includes(op.w.dtype) && op.x.dtype === "f32";
    }
    if (op.op === "embed") return WEIGHT_DTYPES.includes(op.table.dtype);
    if (op.op === "kv_write" || op.op === "attention") return this.caps.kvDTypes.includes(op.cache.k.dtype);
    return true;
  }

  compile(graph: readonly Op[]): CompiledGraph {
    for (const o of graph) {
      if (!this.supportsOp(o)) {
        const what = o.op === "matmul"
          ? ` (weights ${o.w.dtype}${o.actQuant ? `, ${o.actQuant} activations need q8_0 or q4_0` : ""})`
          : "";
        throw new LlmError("UNSUPPORTED_DTYPE", `ref backend cannot run op ${o.op} with these dtypes${what}`);
      }
    }
    const scratch = (n: number): Float32Array => {
      if (this.#scratch.length < n) this.#scratch = new Float32Array(n);
      return this.#scratch.subarray(0, n);
    };
    const ops = [...graph];
    return {
      run(step: StepParams): Promise<void> {
        for (const o of ops) runRefOp(o, step, scratch);
        return Promise.resolve();
      },
      [Symbol.dispose](): void {},
    };
  }

  synchronize(): Promise<void> {
    return Promise.resolve();
  }

  free(_t: Tensor): void {
    // host memory: the garbage collector frees it once the handle is dropped
  }

  [Symbol.dispose](): void {}
}

/** The ref backend's factory. Always available, with the lowest score so any real backend wins. */
export const refBackendFactory: BackendFactory = {
  name: "ref",
  apiVersion: BACKEND_API_VERSION,
  opFeatures: ["matmul_act_int8"],
  probe: () => Promise.resolve({ score: 1 }),
  create: (options?: BackendOptions) => {
    if (options?.weightQuant) {
      return Promise.reject(
        new LlmError(
          "BAD_REQUEST",
          `the ref backend does not quantize weights at load (weightQuant ${options.weightQuant}); ` +
            `use a quantized model file or the cuda backend`,
        ),
      );
    }
    return Promise.resolve(new RefBackend());
  },
};
