/**
 * The backend contract. Backends are leaves: they implement this interface and register a factory;
 * the core builds one graph and hands it to whichever backend was picked.
 * @module
 */
import type { BackendName, DType, Shape } from "./types.ts";
import type { Tensor, TensorUsage } from "./tensor.ts";
import type { Op, OpName, StepParams } from "./ops.ts";
import { LlmError } from "./errors.ts";

/** The contract version; a factory with another version is refused. */
export const BACKEND_API_VERSION = 1;

/** What a backend can do. */
export interface BackendCaps {
  /** Weight dtypes matmul/embed accept. */
  readonly weightDTypes: readonly DType[];
  /** KV cache dtypes. */
  readonly kvDTypes: readonly DType[];
  /** The KV dtype used when none is asked for. */
  readonly defaultKvDType: DType;
  /** Ops this backend runs. */
  readonly ops: readonly OpName[];
  /** Largest single tensor in bytes. */
  readonly maxTensorBytes: number;
  /** Device memory in bytes when known, else 0. */
  readonly memoryBytes: number;
  /** A human-readable device name for benchmarks ("CPU (plain TypeScript)", "NVIDIA H100 80GB HBM3"). */
  readonly device: string;
  /** Prompt tokens per step this backend prefers (the engine's default prefill chunk). */
  readonly preferredStepTokens: number;
  /**
   * Optional op variants this backend runs (see {@link OpFeature}); absent means none. The engine checks
   * it before compiling a model that needs one, because a backend written before a variant existed
   * would otherwise ignore the op property it does not know.
   */
  readonly opFeatures?: readonly OpFeature[];
}

/**
 * Optional op variants. `matmul_act_int8`: matmul with `actQuant: "int8"` (per-token int8 activations
 * times int8/int4 block weights, SmoothQuant W8A8 models).
 */
export type OpFeature = "matmul_act_int8";

/** Options for {@link Backend.compile}. */
export interface CompileOptions {
  /**
   * Tensors the caller downloads after every run (the logits). A backend may copy them back as part of
   * `run`, so the following `download` needs no further device call.
   */
  readonly outputs?: readonly Tensor[];
  /**
   * Most sequences (block-table rows) one step carries; default: the graph's most rows. A backend may
   * size per-step buffers by it.
   */
  readonly maxSeqs?: number;
  /**
   * Widest block table a step passes (`StepParams.maxBlocksPerSeq`); default: every block of the cache.
   * A cache shared by many sequences is far larger than one sequence's context, so passing the context's
   * block count keeps per-step uploads small.
   */
  readonly maxBlocksPerSeq?: number;
}

/** Options for {@link CompiledGraph.decodeGreedy}. */
export interface GreedyDecodeOptions {
  /**
   * The first step: decode rows only, one per sequence, row i with logit row i (`logitRows` = 0..n-1);
   * `tokens` are the rows' inputs.
   */
  readonly first: StepParams;
  /**
   * Step i (i >= 1): the same sequences in the same rows, each one position further; its `tokens` are
   * ignored (each row takes the previous step's device choice for its own logit row). Return undefined to
   * stop. Called ahead of the ids being known, so it must not depend on them; for a graph ending in a
   * `sample` op its `sampling` (settings and uniforms) is the step's, known ahead too.
   */
  readonly next: (i: number) => StepParams | undefined;
}

/**
 * For decodeGreedy implementations: the rows of queued step `index` (`rows`: the first step's), after
 * checking that it carries as many decode rows as the first, each its own logit row, in order; INTERNAL
 * naming `backend` otherwise.
 */
export function queuedStepRows(backend: BackendName, step: StepParams, index: number, rows: number): number {
  const n = step.nTokens;
  if ((index > 0 && n !== rows) || step.logitRows.length !== n || step.logitRows.some((r, i) => r !== i)) {
    throw new LlmError(
      "INTERNAL",
      `${backend}: queued decode steps carry the same decode rows, each its own logit row, in order`,
    );
  }
  return n;
}

/** A whole decode/prefill step, compiled once and run per step. */
export interface CompiledGraph extends Disposable {
  /** Run every op for one step. Resolves when the step's results can be downloaded. */
  run(step: StepParams): Promise<void>;
  /**
   * Optional, for graphs that end in an argmax or `sample` op of their logits (compiled with its ids as
   * the output): decoding queued on the device. Each step's input tokens are the previous step's ids,
   * so steps run back to back without the host in between; yields each step's ids (one per row, -1 for a
   * row whose logits hold NaN) in order. Stopping the iteration stops queueing steps; steps already
   * queued may still write cache rows past where the sequences stopped. For backends whose every
   * device-to-host read costs a fixed latency (WebGPU in Deno: ~10 ms).
   */
  decodeGreedy?(options: GreedyDecodeOptions): AsyncIterable<Int32Array>;
}

/** A compute backend. */
export interface Backend extends Disposable {
  /** Which backend this is. */
  readonly name: BackendName;
  /** What this backend instance supports (dtypes, ops, limits). */
  readonly caps: BackendCaps;
  /** Allocate a tensor (contents undefined until uploaded or written by an op). */
  alloc(dtype: DType, shape: Shape, usage: TensorUsage, label?: string): Tensor;
  /** Copy bytes into a tensor, at `byteOffset` within it (default 0). */
  upload(dst: Tensor, src: ArrayBufferView, options?: { byteOffset?: number }): Promise<void>;
  /** Copy a tensor's bytes out. `byteLength` limits the read to a prefix. */
  download(src: Tensor, options?: { byteLength?: number }): Promise<ArrayBuffer>;
  /** Whether this backend can run the op with these dtypes. */
  supportsOp(op: Op): boolean;
  /** Compile a graph; throws UNSUPPORTED_DTYPE / BACKEND_UNAVAILABLE naming the first op it cannot run. */
  compile(graph: readonly Op[], options?: CompileOptions): CompiledGraph;
  /** Wait for outstanding work. */
  synchronize(): Promise<void>;
  /** Free a tensor. */
  free(t: Tensor): void;
  /** Device memory in bytes (total and free), where the backend can tell. */
  memoryInfo?(): { total: number; free: number };
  /**
   * Before a model is loaded: throw OUT_OF_MEMORY, with the numbers, when weights of these dtypes and
   * shapes (stored as this backend stores them) plus `extraBytes` (KV cache, activations) cannot fit.
   * Backends with a hard address-space limit (wasm32's 4 GiB) implement it.
   */
  checkFits?(tensors: readonly { dtype: DType; shape: Shape; name: string }[], extraBytes: number): void;
}

/** Creates backends of one kind. */
export interface BackendFactory {
  /** Name of the backends this factory creates; the key it is registered and picked under. */
  readonly name: BackendName;
  /** Backend contract version it implements; must equal the core's `BACKEND_API_VERSION` to register. */
  readonly apiVersion: number;
  /** The optional op variants its backends run (as their `caps.opFeatures`), for error messages. */
  readonly opFeatures?: readonly OpFeature[];
  /**
   * How well this backend suits the machine: 0 = unavailable, higher = better. Cheap and side-effect
   * free; `reason` explains a 0.
   */
  probe(options?: BackendOptions): Promise<{ score: number; reason?: string }>;
  /** Create a backend instance; dispose of it when done. */
  create(options?: BackendOptions): Promise<Backend>;
}

/** Options passed to a backend factory. */
export interface BackendOptions {
  /** Worker threads for CPU backends (default: available cores). */
  readonly threads?: number;
  /** Path of the CUDA shared library (default: `build/libllama_ts_cuda.so` beside the package). */
  readonly cudaLibrary?: string;
  /**
   * Quantize float weight matrices while loading them (weight-only, TensorRT-LLM style): `int8` per
   * output channel, or `int4` in groups of 128. Backends without it reject the option.
   */
  readonly weightQuant?: "int8" | "int4";
  /**
   * cuda: decode steps kept queued on the device ahead of the host in queued decoding (decodeGreedy), each
   * step's tokens the previous step's device choice; default 2. 0 turns queued decoding off: one
   * synchronous FFI call per token (the A/B baseline of bench/RESULTS.md's 2026-11-26 fifth-session entry).
   */
  readonly cudaQueueDepth?: number;
}

/** Row lengths load-time weight quantization needs a multiple of: int8 whole blocks of 32, int4 groups of 128. */
export const WEIGHT_QUANT_ROW_MULTIPLE = { int8: 32, int4: 128 } as const;

/**
 * Whether `weightQuant` quantizes a float matrix whose rows are `k` wide; every backend keeps the others float.
 */
export function quantizesAtLoad(weightQuant: "int8" | "int4", k: number): boolean {
  return k % WEIGHT_QUANT_ROW_MULTIPLE[weightQuant] === 0;
}
