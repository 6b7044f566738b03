/**
 * The wasm backend: our SIMD128 kernels (kernels/wasm, embedded in kernels_wasm.ts) over one
 * WebAssembly.Memory holding weights, KV cache and activations. Each compiled graph is a program the
 * runtime walks in one call per step; with threads, Workers share the memory and take slices of each op.
 * Runs wherever WebAssembly SIMD does: Deno, browsers, edge isolates (no FFI, GPU or file system).
 * @module
 */
import type { Backend, BackendCaps, BackendFactory, BackendOptions, CompiledGraph } from "../../backend.ts";
import type { Tensor, TensorUsage } from "../../tensor.ts";
import type { DType, Shape } from "../../types.ts";
import type { Op, OpName, StepParams } from "../../ops.ts";
import { OP_NAMES } from "../../ops.ts";
import { BACKEND_API_VERSION } from "../../backend.ts";
import { byteLengthOf, dequantize } from "../../dtype.ts";
import { numel } from "../../tensor.ts";
import { LlmError } from "../../errors.ts";
import { WASM_MAX_BYTES, WasmHeap } from "./heap.ts";
import { compileProgram, type WasmTensorRef } from "./program.ts";
import { type Layout, layoutBytes, planLayout } from "./layout.ts";
import { mainCanWait, ThreadPool, threadsAvailable } from "./threads.ts";
import { type KernelVariant, loadKernels } from "./kernels.ts";

// "sample" (device-side top-k / top-p sampling) has no kernel here: steps read logits back instead.
const OPS: readonly OpName[] = OP_NAMES.filter((o) => o !== "sample");
const WEIGHT_DTYPES: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q6_k"];
/** Weight dtypes of int8-activation (W8A8) matmuls: blocks of 32 integers with one f16 scale. */
const ACT_INT8_WEIGHTS: readonly DType[] = ["q8_0", "q4_0"];
const STACK_BYTES = 64 * 1024;

interface Exports {
  llama_ts_abi(): number;
  llama_ts_run(prog: number, step: number, sync: number, tid: number, nth: number, canWait: number): number;
  llama_ts_prep_float(src: number, elemBytes: number, m: number, k: number, dst: number): void;
  llama_ts_prep_q8_0(src: number, m: number, k: number, dst: number): void;
  llama_ts_prep_q4_0(src: number, m: number, k: number, dst: number): void;
  llama_ts_prep_int8(src: number, fmt: number, m: number, k: number, dst: number): void;
  llama_ts_prep_int4(src: number, fmt: number, m: number, k: number, dst: number): void;
}

class WasmTensor implements WasmTensorRef {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly byteLength: number;
  readonly usage: TensorUsage;
  readonly label: string;
  readonly layout: Layout;
  ptr = 0;
  scales = 0;
  bias = 0;
  readonly allocations: number[] = [];
  /** Uploaded bytes waiting for preparation: in wasm memory (staging) or on the host (dequant). */
  staging?: { ptr: number; host?: Uint8Array; received: number };

  constructor(dtype: DType, shape: Shape, usage: TensorUsage, label: string, layout: Layout) {
    this.dtype = dtype;
    this.shape = [...shape];
    this.byteLength = byteLengthOf(dtype, numel(shape), label);
    this.usage = usage;
    this.label = label;
    this.layout = layout;
  }

  get fmt(): number {
    return this.layout.fmt;
  }

  get group(): number {
    return this.layout.group;
  }
}

class WasmBackend implements Backend {
  readonly name = "wasm" as const;
  readonly caps: BackendCaps;
  #heap: WasmHeap;
  #x: Exports;
  #pool?: ThreadPool;
  #threads: number;
  #quant?: "int8" | "int4";
  #syncPtr: number;
  #live = new Set<WasmTensor>();
  #disposed = false;

  constructor(
    heap: WasmHeap,
    exports: Exports,
    options: { pool?: ThreadPool; syncPtr: number; quant?: "int8" | "int4"; variant: KernelVariant },
  ) {
    this.#heap = heap;
    this.#x = exports;
    this.#pool = options.pool;
    this.#threads = options.pool?.threads ?? 1;
    this.#syncPtr = options.syncPtr;
    this.#quant = options.quant;
    const simd = options.variant.endsWith("relaxed") ? "SIMD128 + relaxed" : "SIMD128";
    this.caps = {
      weightDTypes: WEIGHT_DTYPES,
      kvDTypes: ["f32", "f16", "i8"],
      defaultKvDType: "f32",
      ops: OPS,
      maxTensorBytes: WASM_MAX_BYTES,
      memoryBytes: WASM_MAX_BYTES,
      device: `CPU (wasm ${simd}, ${this.#threads} thread${this.#threads > 1 ? "s" : ""})`,
      preferredStepTokens: 128,
      opFeatures: ["matmul_act_int8"],
    };
  }

  /** Threads each step runs on. */
  get threads(): number {
    return this.#threads;
  }

  memoryInfo(): { total: number; free: number } {
    return { total: WASM_MAX_BYTES, free: WASM_MAX_BYTES - this.#heap.used };
  }

  checkFits(tensors: readonly { dtype: DType; shape: Shape; name: string }[], extraBytes: number): void {
    let weights = 0, staging = 0;
    for (const t of tensors) {
      const l = planLayout(t.dtype, t.shape, { weights: true, weightQuant: this.#quant });
      weights += layoutBytes(l);
      // uploaded bytes wait in wasm memory (dequantized ones as f32) until the tensor is repacked
      if (l.prepare !== "none") {
        staging = Math.max(
          staging,
          l.prepare === "dequant" ? numel(t.shape) * 4 : byteLengthOf(t.dtype, numel(t.shape)),
        );
      }
    }
    const need = weights + extraBytes + staging, left = WASM_MAX_BYTES - this.#heap.top;
    if (need > left) {
      const g = (n: number): string => `${(n / 1024 ** 3).toFixed(2)} GiB`;
      throw new LlmError(
        "OUT_OF_MEMORY",
        `wasm: this model needs ${g(need)} of wasm memory (weights ${
          g(weights)
        } as the wasm backend stores ` +
          `them, KV cache and activations ${g(extraBytes)}, upload staging ${
            g(staging)
          }) but wasm32 addresses ` +
          `4 GiB (${
            g(left)
          } free); use a more quantized model (q4_0, --weight-quant int4), a shorter context, ` +
          `or another backend`,
      );
    }
  }

  alloc(dtype: DType, shape: Shape, usage: TensorUsage, label = "tensor"): Tensor {
    const weights = usage === "weights";
    if (weights && shape.length === 2 && !WEIGHT_DTYPES.includes(dtype)) {
      throw new LlmError("UNSUPPORTED_DTYPE", `wasm: weight dtype ${dtype} of ${label} is not supported`);
    }
    const layout = planLayout(dtype, shape, { weights, weightQuant: this.#quant });
    const t = new WasmTensor(dtype, shape, usage, label, layout);
    try {
      const take = (bytes: number, what: string): number => {
        const p = this.#heap.alloc(bytes, `${label} ${what}`);
        t.allocations.push(p);
        return p;
      };
      t.ptr = take(layout.dataBytes, "data");
      if (layout.prepare === "dequant") {
        t.staging = { ptr: 0, host: new Uint8Array(t.byteLength), received: 0 };
      } else if (layout.prepare !== "none") t.staging = { ptr: take(t.byteLength, "staging"), received: 0 };
    } catch (e) {
      for (const p of t.allocations) this.#heap.free(p);
      throw e;
    }
    this.#live.add(t);
    return t;
  }

  upload(dst: Tensor, src: ArrayBufferView, options?: { byteOffset?: number }): Promise<void> {
    const t = dst as WasmTensor, off = options?.byteOffset ?? 0;
    if (!this.#live.has(t)) throw new LlmError("INTERNAL", `wasm: upload to freed tensor ${t.label}`);
    if (off < 0 || off + src.byteLength > t.byteLength) {
      throw new LlmError("INTERNAL", `wasm: upload of ${src.byteLength} bytes at ${off} overruns ${t.label}`);
    }
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const s = t.staging;
    if (!s) {
      this.#heap.u8.set(bytes, t.ptr + off);
      return Promise.resolve();
    }
    if (s.host) s.host.set(bytes, off);
    else this.#heap.u8.set(bytes, s.ptr + off);
    s.received += bytes.byteLength;
    if (s.received >= t.byteLength) this.#prepare(t);
    return Promise.resolve();
  }

  #prepare(t: WasmTensor): void {
    const s = t.staging!, [m, k] = t.shape, x = this.#x, n = m * k;
    const srcFmt = t.dtype === "f16" ? 1 : t.dtype === "bf16" ? 2 : 0;
    this.#heap.u8.fill(0, t.ptr, t.ptr + t.layout.dataBytes); // padding rows and columns
    switch (t.layout.prepare) {
      case "float":
        x.llama_ts_prep_float(s.ptr, t.dtype === "f32" ? 4 : 2, m, k, t.ptr);
        break;
      case "q8_0":
        x.llama_ts_prep_q8_0(s.ptr, m, k, t.ptr);
        break;
      case "q4_0":
        x.llama_ts_prep_q4_0(s.ptr, m, k, t.ptr);
        break;
      case "int8":
        x.llama_ts_prep_int8(s.ptr, srcFmt, m, k, t.ptr);
        break;
      case "int4":
        x.llama_ts_prep_int4(s.ptr, srcFmt, m, k, t.ptr);
        break;
      case "dequant": {
        s.ptr = this.#heap.alloc(n * 4, `${t.label} staging`);
        t.allocations.push(s.ptr);
        dequantize(t.dtype, s.host!, new Float32Array(this.#heap.memory.buffer, s.ptr, n));
        x.llama_ts_prep_float(s.ptr, 4, m, k, t.ptr);
        break;
      }
    }
    if (s.ptr) {
      this.#heap.free(s.ptr);
      t.allocations.splice(t.allocations.indexOf(s.ptr), 1);
    }
    t.staging = undefined;
  }

  download(src: Tensor, options?: { byteLength?: number }): Promise<ArrayBuffer> {
    const t = src as WasmTensor;
    if (t.layout.prepare !== "none") {
      throw new LlmError("BAD_REQUEST", `wasm: ${t.label} is stored repacked and cannot be downloaded`);
    }
    const n = Math.min(options?.byteLength ?? t.byteLength, t.byteLength);
    return Promise.resolve(this.#heap.u8.slice(t.ptr, t.ptr + n).buffer);
  }

  supportsOp(op: Op): boolean {
    if (op.op === "matmul") {
      const w = op.actQuant === "int8" ? ACT_INT8_WEIGHTS : WEIGHT_DTYPES;
      return w.includes(op.w.dtype) && op.x.dtype === "f32";
    }
    if (op.op === "embed") return WEIGHT_DTYPES.includes(op.table.dtype);
    if (op.op === "kv_write" || op.op === "attention") return this.caps.kvDTypes.includes(op.cache.k.dtype);
    if (op.op === "argmax") return op.x.dtype === "f32" && op.out.dtype === "i32";
    return OPS.includes(op.op);
  }

  compile(graph: readonly Op[]): CompiledGraph {
    for (const o of graph) {
      if (!this.supportsOp(o)) {
        const what = o.op === "matmul"
          ? ` (weights ${o.w.dtype}${o.actQuant ? `, ${o.actQuant} activations need q8_0 or q4_0` : ""})`
          : "";
        throw new LlmError(
          "UNSUPPORTED_DTYPE",
          `wasm backend cannot run op ${o.op} with these dtypes${what}`,
        );
      }
      for (const v of Object.values(o)) {
        if (v instanceof WasmTensor && v.staging) {
          throw new LlmError("INTERNAL", `wasm: ${v.label} was not fully uploaded before compile`);
        }
      }
    }
    const heap = this.#heap;
    const program = compileProgram(graph, {
      alloc: (bytes, label) => heap.alloc(bytes, label),
      free: (p) => heap.free(p),
      views: () => {
        const b = heap.memory.buffer;
        return { i32: new Int32Array(b), f32: new Float32Array(b), f64: new Float64Array(b) };
      },
    }, this.#threads);
    const x = this.#x, pool = this.#pool, sync = this.#syncPtr, nth = this.#threads;
    const canWait = pool && mainCanWait() ? 1 : 0;
    let live = true;
    return {
      run(step: StepParams): Promise<void> {
        if (!live) throw new LlmError("INTERNAL", "wasm: run of a disposed graph");
        const stepPtr = program.prepare(step);
        let rc = 0;
        if (pool) {
          pool.run(
            program.ptr,
            stepPtr,
            () => rc = x.llama_ts_run(program.ptr, stepPtr, sync, 0, nth, canWait),
          );
        } else rc = x.llama_ts_run(program.ptr, stepPtr, sync, 0, 1, 0);
        if (rc !== 0) throw new LlmError("INTERNAL", `wasm: runtime returned ${rc}`);
        return Promise.resolve();
      },
      [Symbol.dispose](): void {
        if (live) program.free();
        live = false;
      },
    };
  }

  synchronize(): Promise<void> {
    return Promise.resolve();
  }

  free(t: Tensor): void {
    const w = t as WasmTensor;
    if (!this.#live.delete(w)) return;
    for (const p of w.allocations) this.#heap.free(p);
    w.allocations.length = 0;
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#pool?.[Symbol.dispose]();
    this.#live.clear();
  }
}

function wasmSupport(): string | undefined {
  if (typeof WebAssembly === "undefined") return "WebAssembly is not available";
  return undefined;
}

/**
 * Create a wasm backend. `relaxed: false` forces the plain-SIMD128 kernel build (tests compare the two
 * builds; hosts without relaxed SIMD get it automatically).
 */
export async function createWasmBackend(
  options: BackendOptions = {},
  internal: { relaxed?: boolean } = {},
): Promise<Backend> {
  const hw = typeof navigator !== "undefined" && navigator.hardwareConcurrency
    ? navigator.hardwareConcurrency
    : 1;
  const want = options.threads ?? hw;
  if (!Number.isInteger(want) || want < 1 || want > 256) {
    throw new LlmError("BAD_REQUEST", `threads must be an integer in 1..256, got ${want}`);
  }
  if (options.weightQuant !== undefined && options.weightQuant !== "int8" && options.weightQuant !== "int4") {
    throw new LlmError("BAD_REQUEST", `weightQuant must be int8 or int4, got ${String(options.weightQuant)}`);
  }
  let threads = want;
  const noThreads = threads > 1 ? threadsAvailable() : undefined;
  if (noThreads) {
    console.warn(`wasm: running single-threaded (${noThreads})`);
    threads = 1;
  }
  const k = await loadKernels({ threads: threads > 1, relaxed: internal.relaxed });
  const memory = k.memory;
  const instance = await WebAssembly.instantiate(k.module, { env: { memory } });
  const x = instance.exports as unknown as Exports;
  if (x.llama_ts_abi() !== 1) {
    throw new LlmError(
      "BACKEND_UNAVAILABLE",
      `wasm: kernel ABI ${x.llama_ts_abi()}, expected 1; rebuild them`,
    );
  }
  const heap = new WasmHeap(memory, (instance.exports.__heap_base as WebAssembly.Global).value as number);
  const ctrl = heap.alloc(64, "thread control");
  new Int32Array(memory.buffer, ctrl, 16).fill(0);
  let pool: ThreadPool | undefined;
  if (threads > 1) {
    const stacks = Array.from({ length: threads - 1 }, () => heap.alloc(STACK_BYTES, "stack") + STACK_BYTES);
    try {
      pool = await ThreadPool.start(k.module, memory, { threads, ctrlPtr: ctrl, stacks });
    } catch (e) {
      console.warn(`wasm: running single-threaded (${(e as Error).message})`);
      return await createWasmBackend({ ...options, threads: 1 }, internal);
    }
  }
  return new WasmBackend(heap, x, {
    pool,
    syncPtr: pool ? pool.syncPtr : ctrl + 16,
    quant: options.weightQuant,
    variant: k.variant,
  });
}

/** The wasm backend's factory: available wherever WebAssembly SIMD128 validates. */
export const wasmBackendFactory: BackendFactory = {
  name: "wasm",
  apiVersion: BACKEND_API_VERSION,
  opFeatures: ["matmul_act_int8"],
  async probe(): Promise<{ score: number; reason?: string }> {
    const why = wasmSupport();
    if (why) return { score: 0, reason: why };
    try {
      await loadKernels({ threads: false });
      return { score: 10 };
    } catch (e) {
      return { score: 0, reason: (e as Error).message };
    }
  },
  create: (options?: BackendOptions) => createWasmBackend(options),
};
