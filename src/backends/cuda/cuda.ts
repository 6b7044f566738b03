/**
 * The cuda backend: tensors in device memory, weights repacked (GGUF q8_0/q4_0) or quantized
 * (weight-only int8/int4) on the device as they arrive, and each compiled graph run by the library's
 * program runtime: one FFI call per step, CUDA-graph replay for decode, output rows copied back in the
 * same call.
 * @module
 */
import type {
  Backend,
  BackendCaps,
  BackendFactory,
  BackendOptions,
  CompiledGraph,
  CompileOptions,
  GreedyDecodeOptions,
} from "../../backend.ts";
import type { Tensor, TensorUsage } from "../../tensor.ts";
import type { DType, Shape } from "../../types.ts";
import type { Op, StepParams } from "../../ops.ts";
import { OP_NAMES } from "../../ops.ts";
import { BACKEND_API_VERSION, quantizesAtLoad, queuedStepRows } from "../../backend.ts";
import { byteLengthOf } from "../../dtype.ts";
import { numel } from "../../tensor.ts";
import { LlmError } from "../../errors.ts";
import { check, CUDA_QUEUE_SLOTS, type CudaLib, defaultLibraryPath, openLibrary } from "./ffi.ts";
import { compileProgram, type DeviceTensor, type WeightLayout } from "./program.ts";
import { PICK_PARAMS } from "../../sample/pick.ts";

/**
 * decodeGreedy on the cuda backend: `depth` steps stay queued on the stream, each (after the first)
 * taking its rows' input tokens from the step before it on the device (llama_ts_program_queue, chained), so
 * the GPU runs step i + 1 while the host takes step i's ids and plans step i + 2. Measured on the H100 with
 * one FFI call and a host sync per step, the GPU idled ~200 us between decode steps (bench/RESULTS.md,
 * 2026-11-26 fifth session). Stopping early (EOS, a new request) waits for the steps still queued: they
 * only write cache rows past where the sequences stopped, in blocks the scheduler frees after this returns.
 */
const DEFAULT_QUEUE_DEPTH = 2;

async function* queuedDecode(
  lib: CudaLib,
  program: bigint,
  depth: number,
  hostCopies: Set<CudaTensor>,
  stepInts: (step: StepParams) => Int32Array,
  options: GreedyDecodeOptions,
): AsyncGenerator<Int32Array> {
  const inFlight: { slot: number; rows: number }[] = [];
  let index = 0, rows = 0, ended = false;
  const queueNext = (): void => {
    const step = index === 0 ? options.first : options.next(index);
    if (!step) {
      ended = true;
      return;
    }
    const n = rows = queuedStepRows("cuda", step, index, rows);
    // a chained step's own token ids are ignored by the device; the first step's are checked
    const ints = stepInts(index === 0 ? step : { ...step, tokens: new Int32Array(n) });
    const slot = index % CUDA_QUEUE_SLOTS;
    check(
      lib,
      lib.llama_ts_program_queue(program, ints, ints.length, index === 0 ? 0 : 1, slot),
      "queue step",
    );
    inFlight.push({ slot, rows: n });
    index++;
  };
  for (const t of hostCopies) t.hostFresh = false;
  try {
    while (true) {
      while (!ended && inFlight.length < depth) queueNext();
      const head = inFlight.shift();
      if (!head) return;
      const ids = new Int32Array(head.rows);
      check(
        lib,
        await lib.llama_ts_program_take(program, head.slot, ids, BigInt(ids.byteLength)),
        "queued step",
      );
      yield ids;
    }
  } finally {
    // stopped early or failed: wait for the steps still queued (their slots must be taken back)
    for (const q of inFlight.splice(0)) await lib.llama_ts_program_take(program, q.slot, null, 0n);
  }
}

/** kernels.cuh WeightFormat. */
const WF = { f32: 0, f16: 1, bf16: 2, i8: 3, i4: 4 } as const;

/** How a weight's uploaded bytes become its device layout. */
interface Pending {
  /** Staging buffer holding the uploaded bytes, freed after preparation. */
  readonly staging: bigint;
  /** weight_prepare op: 1 repack q8_0, 2 repack q4_0, 3 quantize int8/channel, 4 quantize int4 g128. */
  readonly prepare: number;
  readonly srcFmt: number;
  received: number;
}

class CudaTensor implements DeviceTensor {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly byteLength: number;
  readonly usage: TensorUsage;
  readonly label: string;
  /** Data pointer (for prepared weights: the quants). */
  ptr: bigint;
  /** Every device allocation this tensor owns. */
  readonly allocations: bigint[] = [];
  weight?: WeightLayout;
  pending?: Pending;
  /** Host copy written by the last program run (outputs only), and whether it is current. */
  hostCopy?: Uint8Array;
  hostFresh = false;

  constructor(dtype: DType, shape: Shape, usage: TensorUsage, label: string, ptr: bigint) {
    this.dtype = dtype;
    this.shape = [...shape];
    this.byteLength = byteLengthOf(dtype, numel(shape), label);
    this.usage = usage;
    this.label = label;
    this.ptr = ptr;
  }
}

const OPS = OP_NAMES;
const WEIGHT_DTYPES: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
/** Weights an int8-activation (W8A8) matmul takes: integer blocks of 32 (kernels/cuda/w8a8.cu). */
const ACT_INT8_WEIGHTS: readonly DType[] = ["q8_0", "q4_0"];

class CudaBackend implements Backend {
  readonly name = "cuda" as const;
  readonly caps: BackendCaps;
  #lib: CudaLib;
  #quant?: "int8" | "int4";
  #queueDepth: number;
  #live = new Set<CudaTensor>();
  #programs = new Set<bigint>();
  /** Outputs with a host copy: every step makes all of them stale before refreshing its own. */
  #hostCopies = new Set<CudaTensor>();
  #disposed = false;

  constructor(
    lib: CudaLib,
    device: string,
    memory: number,
    quant?: "int8" | "int4",
    queueDepth = DEFAULT_QUEUE_DEPTH,
  ) {
    this.#lib = lib;
    this.#quant = quant;
    this.#queueDepth = queueDepth;
    this.caps = {
      weightDTypes: WEIGHT_DTYPES,
      kvDTypes: ["f16", "f32", "i8"],
      defaultKvDType: "f16",
      ops: OPS,
      maxTensorBytes: memory,
      memoryBytes: memory,
      device,
      preferredStepTokens: 512,
      opFeatures: ["matmul_act_int8"],
    };
  }

  #malloc(bytes: number, label: string): bigint {
    const out = new BigUint64Array(1);
    check(
      this.#lib,
      this.#lib.llama_ts_mem_alloc(BigInt(Math.max(bytes, 1)), out),
      `alloc of ${label} (${bytes} bytes)`,
    );
    return out[0];
  }

  /** Device memory: [total, free] bytes. */
  memoryInfo(): { total: number; free: number } {
    const m = new BigUint64Array(2);
    check(this.#lib, this.#lib.llama_ts_mem_info(m), "mem_info");
    return { total: Number(m[0]), free: Number(m[1]) };
  }

  alloc(dtype: DType, shape: Shape, usage: TensorUsage, label = "tensor"): Tensor {
    const bytes = byteLengthOf(dtype, numel(shape), label);
    const t = new CudaTensor(dtype, shape, usage, label, 0n);
    try {
      if (usage === "weights" && shape.length === 2) this.#allocWeight(t);
      else {
        t.ptr = this.#malloc(bytes, label);
        t.allocations.push(t.ptr);
        if (usage === "weights" && shape.length === 1 && dtype === "f32") {
          // 1-D f32 weights (norms, RoPE frequencies) are read directly
          t.weight = { q: t.ptr, scales: 0n, fmt: WF.f32, group: 0, m: 1, k: shape[0] };
        }
      }
    } catch (e) {
      this.#freeAll(t);
      throw e;
    }
    this.#live.add(t);
    return t;
  }

  #allocWeight(t: CudaTensor): void {
    const [m, k] = t.shape;
    const float = t.dtype === "f32" || t.dtype === "f16" || t.dtype === "bf16";
    const quant = float ? this.#quant : undefined;
    const canQuant = quant !== undefined && quantizesAtLoad(quant, k);
    if (float && !canQuant) {
      t.ptr = this.#malloc(t.byteLength, t.label);
      t.allocations.push(t.ptr);
      t.weight = { q: t.ptr, scales: 0n, fmt: WF[t.dtype as "f32" | "f16" | "bf16"], group: 0, m, k };
      return;
    }
    if (!float && t.dtype !== "q8_0" && t.dtype !== "q4_0") {
      throw new LlmError("UNSUPPORTED_DTYPE", `cuda: weight dtype ${t.dtype} of ${t.label} is not supported`);
    }
    const toI8 = t.dtype === "q8_0" || quant === "int8";
    const group = t.dtype === "q8_0" || t.dtype === "q4_0" ? 32 : quant === "int8" ? k : 128;
    const q = this.#malloc(toI8 ? m * k : (m * k) / 2, `${t.label} quants`);
    t.allocations.push(q);
    const scales = this.#malloc((m * k / group) * 2, `${t.label} scales`);
    t.allocations.push(scales);
    const staging = this.#malloc(t.byteLength, `${t.label} staging`);
    t.allocations.push(staging);
    t.ptr = q;
    t.weight = { q, scales, fmt: toI8 ? WF.i8 : WF.i4, group, m, k };
    const prepare = t.dtype === "q8_0" ? 1 : t.dtype === "q4_0" ? 2 : quant === "int8" ? 3 : 4;
    t.pending = { staging, prepare, srcFmt: float ? WF[t.dtype as "f32" | "f16" | "bf16"] : 0, received: 0 };
  }

  async upload(dst: Tensor, src: ArrayBufferView, options?: { byteOffset?: number }): Promise<void> {
    const t = dst as CudaTensor, off = options?.byteOffset ?? 0;
    if (off + src.byteLength > t.byteLength) {
      throw new LlmError("INTERNAL", `cuda: upload of ${src.byteLength} bytes at ${off} overruns ${t.label}`);
    }
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const base = t.pending ? t.pending.staging : t.ptr;
    check(
      this.#lib,
      await this.#lib.llama_ts_mem_upload(base + BigInt(off), bytes, BigInt(bytes.byteLength)),
      `upload ${t.label}`,
    );
    t.hostFresh = false;
    const p = t.pending;
    if (!p) return;
    p.received += bytes.byteLength;
    if (p.received < t.byteLength) return;
    const w = t.weight!;
    const args = BigInt64Array.of(
      BigInt(p.prepare),
      p.staging,
      BigInt(w.m),
      BigInt(w.k),
      BigInt(p.srcFmt),
      w.q,
      w.scales,
      BigInt(w.group),
    );
    check(this.#lib, await this.#lib.llama_ts_weight_prepare(args), `prepare ${t.label}`);
    check(this.#lib, this.#lib.llama_ts_mem_free(p.staging), `free staging of ${t.label}`);
    t.allocations.splice(t.allocations.indexOf(p.staging), 1);
    t.pending = undefined;
  }

  async download(src: Tensor, options?: { byteLength?: number }): Promise<ArrayBuffer> {
    const t = src as CudaTensor;
    const n = options?.byteLength ?? t.byteLength;
    if (t.hostFresh && t.hostCopy && n <= t.hostCopy.byteLength) return t.hostCopy.slice(0, n).buffer;
    if (t.pending || t.weight && t.weight.fmt >= WF.i8) {
      throw new LlmError(
        "BAD_REQUEST",
        `cuda: ${t.label} is stored repacked on the device and cannot be downloaded`,
      );
    }
    const out = new Uint8Array(n);
    check(this.#lib, await this.#lib.llama_ts_mem_download(out, t.ptr, BigInt(n)), `download ${t.label}`);
    return out.buffer;
  }

  supportsOp(op: Op): boolean {
    if (op.op === "matmul") {
      const w = op.actQuant === "int8" ? ACT_INT8_WEIGHTS : WEIGHT_DTYPES;
      return w.includes(op.w.dtype) && op.x.dtype === "f32";
    }
    if (op.op === "embed") return WEIGHT_DTYPES.includes(op.table.dtype);
    if (op.op === "kv_write" || op.op === "attention") return this.caps.kvDTypes.includes(op.cache.k.dtype);
    return OPS.includes(op.op);
  }

  compile(graph: readonly Op[], options?: CompileOptions): CompiledGraph {
    for (const o of graph) {
      if (!this.supportsOp(o)) {
        const why = o.op === "matmul"
          ? ` (weights ${o.w.dtype}${o.actQuant ? `, ${o.actQuant} activations need q8_0 or q4_0` : ""})`
          : "";
        throw new LlmError("UNSUPPORTED_DTYPE", `cuda backend cannot run op ${o.op} with these dtypes${why}`);
      }
    }
    const output = options?.outputs?.[0] as CudaTensor | undefined;
    const words = compileProgram(graph);
    // capacities from the graph's own tensors: the most rows any activation has, and the rows of the
    // gathered (logit) tensors
    const embed = graph.find((o) => o.op === "embed");
    const rowsOf = (t: Tensor): number => t.usage === "compute" ? t.shape[0] : 1;
    const acts = graph.flatMap((o) =>
      Object.values(o).filter((v): v is Tensor => typeof v === "object" && "usage" in v)
    );
    const maxTokens = Math.max(1, ...acts.map(rowsOf));
    const gathers = graph.flatMap((o) =>
      o.op === "gather_rows" || o.op === "argmax" || o.op === "sample" ? [o.out.shape[0]] : []
    );
    const samples = graph.some((o) => o.op === "sample");
    const maxLogitRows = Math.max(output ? output.shape[0] : 0, ...gathers);
    const cache = graph.find((o) => o.op === "attention" || o.op === "kv_write");
    const kvCache = cache && (cache.op === "attention" || cache.op === "kv_write") ? cache.cache : undefined;
    const cacheBlocks = kvCache ? Math.ceil(kvCache.k.shape[0] / kvCache.blockSize) : 1;
    const maxBlocksPerSeq = Math.max(1, Math.min(options?.maxBlocksPerSeq ?? cacheBlocks, cacheBlocks));
    const rowBytes = output ? output.byteLength / output.shape[0] : 0;
    const vocab = embed && embed.op === "embed" ? embed.table.shape[0] : Infinity;
    const config = BigInt64Array.of(
      BigInt(maxTokens),
      BigInt(maxLogitRows),
      BigInt(Math.max(1, Math.min(options?.maxSeqs ?? maxTokens, maxTokens))),
      BigInt(maxBlocksPerSeq),
      output ? output.ptr : 0n,
      BigInt(rowBytes),
    );
    const handle = new BigUint64Array(1);
    check(
      this.#lib,
      this.#lib.llama_ts_program_create(new Uint8Array(words.buffer), words.length, config, handle),
      "program_create",
    );
    const program = handle[0];
    this.#programs.add(program);
    if (output) {
      output.hostCopy = new Uint8Array(output.byteLength);
      this.#hostCopies.add(output);
    }
    const hostCopies = this.#hostCopies;
    const lib = this.#lib;
    const programs = this.#programs;
    // the step's ints (llama_ts_program_run's layout), validated against what the program was built for
    const stepInts = (step: StepParams): Int32Array => {
      const nSeqs = step.blockTables.length / step.maxBlocksPerSeq;
      if (kvCache && step.maxBlocksPerSeq > maxBlocksPerSeq) {
        throw new LlmError(
          "INTERNAL",
          `cuda: block table of ${step.maxBlocksPerSeq} blocks exceeds ${maxBlocksPerSeq}`,
        );
      }
      const nT = step.nTokens, nL = step.logitRows.length;
      // the kernels would write NaN rows for bad ids; fail like the ref backend instead
      for (let r = 0; r < nT; r++) {
        const id = step.tokens[r];
        if (!(id >= 0 && id < vocab)) {
          throw new LlmError("BAD_REQUEST", `token id ${id} is outside the vocabulary (0..${vocab - 1})`);
        }
      }
      // sampling rows (programs with a sample op): 5 doubles per logit row after the block tables
      const sp = samples && step.sampling ? step.sampling.subarray(0, nL * PICK_PARAMS) : undefined;
      if (sp && sp.length !== nL * PICK_PARAMS) {
        throw new LlmError(
          "INTERNAL",
          `cuda: step.sampling holds ${sp.length} values for ${nL} logit rows`,
        );
      }
      const tail = 3 * nT + nL + nSeqs * maxBlocksPerSeq;
      const ints = new Int32Array(4 + tail + (sp ? 2 * sp.length : 0));
      ints.set([nT, nL, nSeqs, sp ? 1 : 0]);
      if (sp) ints.set(new Int32Array(sp.slice().buffer), 4 + tail);
      ints.set(step.tokens.subarray(0, nT), 4);
      ints.set(step.positions.subarray(0, nT), 4 + nT);
      ints.set(step.seqIndex.subarray(0, nT), 4 + 2 * nT);
      ints.set(step.logitRows, 4 + 3 * nT);
      // re-stride the block tables to the program's fixed width
      const width = Math.min(step.maxBlocksPerSeq, maxBlocksPerSeq); // programs without a cache ignore them
      for (let s = 0; s < nSeqs; s++) {
        ints.set(
          step.blockTables.subarray(s * step.maxBlocksPerSeq, s * step.maxBlocksPerSeq + width),
          4 + 3 * nT + nL + s * maxBlocksPerSeq,
        );
      }
      return ints;
    };
    const graphObject: CompiledGraph = {
      async run(step: StepParams): Promise<void> {
        const ints = stepInts(step);
        const nL = step.logitRows.length;
        for (const t of hostCopies) t.hostFresh = false;
        const out = output?.hostCopy ?? new Uint8Array(0);
        check(
          lib,
          await lib.llama_ts_program_run(program, ints, ints.length, out, BigInt(out.byteLength)),
          "step",
        );
        if (output) output.hostFresh = nL > 0;
      },
      [Symbol.dispose](): void {
        if (programs.delete(program)) lib.llama_ts_program_destroy(program);
      },
    };
    // Graphs whose output is the ids of their argmax / sample op decode queued on the device.
    const idsOp = output && graph.find((o) => (o.op === "argmax" || o.op === "sample") && o.out === output);
    const depth = this.#queueDepth;
    if (idsOp && depth > 0) {
      graphObject.decodeGreedy = (options) =>
        queuedDecode(lib, program, depth, hostCopies, stepInts, options);
    }
    return graphObject;
  }

  async synchronize(): Promise<void> {
    check(this.#lib, await this.#lib.llama_ts_synchronize(), "synchronize");
  }

  #freeAll(t: CudaTensor): void {
    for (const p of t.allocations) this.#lib.llama_ts_mem_free(p);
    t.allocations.length = 0;
  }

  free(t: Tensor): void {
    const c = t as CudaTensor;
    if (!this.#live.delete(c)) return;
    this.#hostCopies.delete(c);
    this.#freeAll(c);
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const p of this.#programs) this.#lib.llama_ts_program_destroy(p);
    this.#programs.clear();
    for (const t of this.#live) this.#freeAll(t);
    this.#live.clear();
  }
}

// The library stays loaded for the life of the process: CUDA contexts do not survive dlclose.
let opened: { lib: CudaLib; path: string } | undefined;
let device: { name: string; memory: number } | undefined;

function init(path?: string): { lib: CudaLib; name: string; memory: number } {
  const want = path ?? defaultLibraryPath();
  if (opened && opened.path !== want) {
    throw new LlmError(
      "BAD_REQUEST",
      `cuda: library ${opened.path} is already loaded; one library per process`,
    );
  }
  if (!opened) {
    opened = { lib: openLibrary(want).lib, path: want };
    device = undefined;
  }
  if (!device) {
    const name = new Uint8Array(256), mem = new BigUint64Array(2), sm = new Int32Array(3);
    check(opened.lib, opened.lib.llama_ts_device_init(0, name, mem, sm), "device_init");
    const text = new TextDecoder().decode(name.subarray(0, name.indexOf(0)));
    if (sm[0] < 8) {
      throw new LlmError(
        "BACKEND_UNAVAILABLE",
        `cuda: ${text} has compute capability ${sm[0]}.${sm[1]}; 8.0 or newer is needed`,
      );
    }
    device = { name: text, memory: Number(mem[0]) };
  }
  return { ...opened, ...device };
}

/** The cuda backend's factory. Probing opens the library and the device once. */
export const cudaBackendFactory: BackendFactory = {
  name: "cuda",
  apiVersion: BACKEND_API_VERSION,
  opFeatures: ["matmul_act_int8"],
  probe(options?: BackendOptions): Promise<{ score: number; reason?: string }> {
    try {
      init(options?.cudaLibrary);
      return Promise.resolve({ score: 100 });
    } catch (e) {
      return Promise.resolve({ score: 0, reason: (e as Error).message });
    }
  },
  create(options?: BackendOptions): Promise<Backend> {
    const d = init(options?.cudaLibrary);
    const depth = options?.cudaQueueDepth ?? DEFAULT_QUEUE_DEPTH;
    if (!Number.isInteger(depth) || depth < 0 || depth > CUDA_QUEUE_SLOTS) {
      throw new LlmError(
        "BAD_REQUEST",
        `cudaQueueDepth ${depth} must be an integer from 0 (queued decoding off) to ${CUDA_QUEUE_SLOTS}`,
      );
    }
    return Promise.resolve(new CudaBackend(d.lib, d.name, d.memory, options?.weightQuant, depth));
  },
};
