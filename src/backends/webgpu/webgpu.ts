/**
 * The webgpu backend: WGSL kernels (kernels/wgsl/, embedded by tools/embed_wgsl.ts) on the runtime's
 * WebGPU (Deno 2.9.6: built in, no flag needed). Tensors live in device buffers; weight matrices are
 * repacked or quantized on the device as they stream in (weights.ts); graphs are planned into fused
 * nodes (program.ts), encoded per step shape (encode.ts) and run one command buffer per step (run.ts).
 * @module
 */
import type {
  Backend,
  BackendCaps,
  BackendFactory,
  BackendOptions,
  CompiledGraph,
  CompileOptions,
} from "../../backend.ts";
import type { Tensor, TensorUsage } from "../../tensor.ts";
import type { DType, Shape } from "../../types.ts";
import { type Op, OP_NAMES, type OpName } from "../../ops.ts";
import { BACKEND_API_VERSION } from "../../backend.ts";
import { LlmError } from "../../errors.ts";
import { type Gpu, openGpu, STORAGE } from "./device.ts";
import { allocWeight, freePart, uploadWeight, weightReady, writePadded } from "./weights.ts";
import { checkF16Matmul } from "./selfcheck.ts";
import { planNodes } from "./program.ts";
import { DEFAULT_TUNING, NodeEncoder, type Tuning } from "./encode.ts";
import { type GraphLimits, WgGraph } from "./run.ts";
import { WgTensor } from "./wg_tensor.ts";

// "sample" (device-side top-k / top-p sampling) has no kernel here: steps read logits back instead.
const OPS: readonly OpName[] = OP_NAMES;
const WEIGHT_DTYPES: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0"];
/** Uploads between waits for the queue, so staged copies do not pile up in host memory. */
const UPLOAD_SYNC_BYTES = 1 << 30;

/** Options of {@link createWebGpuBackend} beyond the common backend options. */
export interface WebGpuOptions extends BackendOptions {
  /** Use the f16 kernel variants where the device passed the self-check (default true). */
  readonly f16?: boolean;
  /** Kernel shape choices; unspecified fields keep their defaults. */
  readonly tuning?: Partial<Tuning>;
  /**
   * Split weight matrices over buffers of at most this many bytes (default, and at most: the adapter's
   * storage binding limit). Lower values exercise the splitting in tests.
   */
  readonly maxBindingBytes?: number;
  /**
   * W8A8 matmuls use the packed int8 dot product (`dot4I8Packed`) where the device's WGSL has it (default
   * true); false uses unpacked integer math (tests exercise both).
   */
  readonly packedDot?: boolean;
}

class WebGpuBackend implements Backend {
  readonly name = "webgpu" as const;
  readonly caps: BackendCaps;
  readonly gpu: Gpu;
  readonly f16: boolean;
  /** Kernel shape choices for graphs compiled from now on (benchmarks sweep them). */
  tuning: Tuning;
  #quant?: "int8" | "int4";
  #maxBinding: number;
  #packedDot: boolean;
  #live = new Set<WgTensor>();
  #graphs = new Set<WgGraph>();
  #sinceSync = 0;
  #disposed = false;

  constructor(gpu: Gpu, options: WebGpuOptions) {
    this.gpu = gpu;
    this.#quant = options.weightQuant;
    this.#maxBinding = Math.min(options.maxBindingBytes ?? Infinity, gpu.limits.maxBinding);
    this.f16 = options.f16 !== false && gpu.f16Ok;
    // a software adapter runs workgroups on a few CPU threads: splitting short rows only adds work there
    // (lavapipe, stories15M shape at position 80: 5x the attention time with 11 splits)
    const base = gpu.fallback ? { ...DEFAULT_TUNING, splitGroups: 0 } : DEFAULT_TUNING;
    this.tuning = { ...base, ...options.tuning };
    const { TM, TN } = this.tuning.gemm;
    if (![4, 8].includes(TM) || ![4, 8].includes(TN)) {
      throw new LlmError(
        "BAD_REQUEST",
        `webgpu: tuning.gemm ${
          JSON.stringify(this.tuning.gemm)
        } is not supported: TM and TN must each be 4 or 8`,
      );
    }
    this.#packedDot = options.packedDot !== false;
    this.caps = {
      weightDTypes: WEIGHT_DTYPES,
      kvDTypes: ["f16", "f32", "i8"],
      defaultKvDType: "f16",
      ops: OPS,
      maxTensorBytes: gpu.limits.maxBinding,
      memoryBytes: 0,
      device: `${gpu.name} (WebGPU${this.f16 ? ", f16" : ""})`,
      preferredStepTokens: gpu.fallback ? 64 : 512,
      opFeatures: ["matmul_act_int8"],
    };
  }

  /** The graphs compiled on this backend and not yet disposed (benchmarks profile them). */
  compiledGraphs(): readonly WgGraph[] {
    return [...this.#graphs];
  }

  /**
   * WebGPU cannot query device memory: `total` is what this process has allocated on the device (the
   * figure `info` reports as used) and `free` is 0.
   */
  memoryInfo(): { total: number; free: number } {
    return { total: this.gpu.bytes, free: 0 };
  }

  alloc(dtype: DType, shape: Shape, usage: TensorUsage, label = "tensor"): Tensor {
    this.#alive();
    const t = new WgTensor(dtype, shape, usage, label);
    if (usage === "weights" && shape.length === 2) {
      t.weight = allocWeight(this.gpu, dtype, shape, label, {
        quant: this.#quant,
        maxBinding: this.#maxBinding,
      });
    } else {
      if (t.byteLength > this.gpu.limits.maxBinding) {
        throw new LlmError(
          "OUT_OF_MEMORY",
          `webgpu: ${label} (${t.byteLength} bytes) exceeds the largest storage binding (${this.gpu.limits.maxBinding}); ` +
            `lower the context size or the step size`,
        );
      }
      t.buffer = this.gpu.buffer(t.byteLength, STORAGE, label);
      if (usage === "weights" && dtype === "f32" && t.byteLength <= 1 << 20) {
        t.host = new Float32Array(shape[0]);
      }
    }
    this.#live.add(t);
    return t;
  }

  async upload(dst: Tensor, src: ArrayBufferView, options?: { byteOffset?: number }): Promise<void> {
    this.#alive();
    const t = dst as WgTensor, off = options?.byteOffset ?? 0;
    if (off + src.byteLength > t.byteLength) {
      throw new LlmError(
        "INTERNAL",
        `webgpu: upload of ${src.byteLength} bytes at ${off} overruns ${t.label}`,
      );
    }
    const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    t.hostFresh = 0;
    if (t.weight) {
      uploadWeight(this.gpu, t.weight, bytes, off, t.label);
    } else {
      if (off % 4 !== 0) {
        throw new LlmError("INTERNAL", `webgpu: upload offset ${off} is not a multiple of 4`);
      }
      writePadded(this.gpu, t.buffer!, off, bytes);
      if (t.host) new Uint8Array(t.host.buffer).set(bytes, off);
    }
    this.#sinceSync += bytes.byteLength;
    if (this.#sinceSync >= UPLOAD_SYNC_BYTES) {
      this.#sinceSync = 0;
      await this.gpu.idle();
    }
    this.gpu.check(`upload of ${t.label}`);
  }

  async download(src: Tensor, options?: { byteLength?: number }): Promise<ArrayBuffer> {
    this.#alive();
    const t = src as WgTensor;
    const n = options?.byteLength ?? t.byteLength;
    if (t.hostRows && n <= t.hostFresh) return t.hostRows.slice(0, n).buffer;
    let buf = t.buffer;
    if (t.weight) {
      const w = t.weight;
      if (w.prepare.kind !== "none" || w.parts.length !== 1) {
        throw new LlmError(
          "BAD_REQUEST",
          `webgpu: ${t.label} is stored repacked on the device and cannot be downloaded`,
        );
      }
      buf = w.parts[0].q;
    }
    const size = Math.ceil(n / 4) * 4;
    // activations keep their read-back buffer: a step that reads logits or ids makes none
    const keep = t.usage === "compute" && (!t.readback || t.readback.mapState === "unmapped");
    const rb = keep && t.readback ? t.readback : this.gpu.buffer(
      keep ? Math.ceil(t.byteLength / 4) * 4 : size,
      GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      `download ${t.label}`,
    );
    if (keep) t.readback = rb; // (a concurrent download of the same tensor takes a buffer of its own)
    try {
      const enc = this.gpu.device.createCommandEncoder();
      enc.copyBufferToBuffer(buf!, 0, rb, 0, size);
      this.gpu.device.queue.submit([enc.finish()]);
      await rb.mapAsync(GPUMapMode.READ, 0, size);
      const out = new Uint8Array(rb.getMappedRange(0, size)).slice(0, n);
      rb.unmap();
      this.gpu.check(`download of ${t.label}`);
      return out.buffer;
    } finally {
      if (!keep) this.gpu.destroy(rb);
    }
  }

  supportsOp(op: Op): boolean {
    switch (op.op) {
      case "matmul":
        if (op.actQuant === "int8") {
          // W8A8: int8 activations times q8_0 / q4_0 blocks (act_quant_int8 + matmul_a8)
          return (op.w.dtype === "q8_0" || op.w.dtype === "q4_0") && op.x.dtype === "f32" &&
            op.w.shape[1] % 32 === 0;
        }
        return WEIGHT_DTYPES.includes(op.w.dtype) && op.x.dtype === "f32" && op.actQuant === undefined;
      case "embed":
        return WEIGHT_DTYPES.includes(op.table.dtype);
      case "kv_write":
      case "attention":
        return this.caps.kvDTypes.includes(op.cache.k.dtype);
      case "argmax":
      case "sample":
        // sample: one workgroup walks a row; keys and counts are u32, ids f32-exact below 2^24
        return op.x.dtype === "f32" && op.out.dtype === "i32" &&
          (op.op === "argmax" || op.x.byteLength / op.x.shape[0] / 4 < 1 << 24);
      default:
        return OPS.includes(op.op);
    }
  }

  compile(graph: readonly Op[], options?: CompileOptions): CompiledGraph {
    this.#alive();
    for (const o of graph) {
      if (!this.supportsOp(o)) {
        throw new LlmError("UNSUPPORTED_DTYPE", `webgpu backend cannot run op ${o.op} with these dtypes`);
      }
      for (const v of Object.values(o)) {
        const w = (v as WgTensor)?.weight;
        if (w && !weightReady(w)) {
          throw new LlmError(
            "INTERNAL",
            `webgpu: weight ${(v as WgTensor).label} was compiled before its upload finished`,
          );
        }
      }
    }
    const output = options?.outputs?.[0] as WgTensor | undefined;
    const rowsOf = (t: Tensor): number => t.usage === "compute" ? t.shape[0] : 1;
    const tensors = graph.flatMap((o) =>
      Object.values(o).filter((v): v is Tensor => typeof v === "object" && v !== null && "usage" in v)
    );
    const cacheOp = graph.find((o) => o.op === "attention" || o.op === "kv_write");
    const cache = cacheOp && (cacheOp.op === "attention" || cacheOp.op === "kv_write")
      ? cacheOp.cache
      : undefined;
    const embed = graph.find((o) => o.op === "embed");
    const gathers = graph.flatMap((o) =>
      o.op === "gather_rows" || o.op === "argmax" || o.op === "sample" ? [o.out.shape[0]] : []
    );
    const cacheRows = cache ? cache.k.shape[0] : 0;
    const blocksPerSeq = cache ? options?.maxBlocksPerSeq ?? Math.ceil(cacheRows / cache.blockSize) : 1;
    const maxTokens = Math.max(1, ...tensors.map(rowsOf));
    const last = graph[graph.length - 1];
    const kvHeads = graph.flatMap((o) => o.op === "attention" ? [o.nKvHeads] : []);
    const limits: GraphLimits = {
      maxTokens,
      maxLogitRows: Math.max(output ? output.shape[0] : 0, ...gathers, 1),
      blocksPerSeq,
      nBlocks: cache ? Math.floor(cacheRows / cache.blockSize) : 1,
      blockSize: cache?.blockSize ?? 1,
      vocab: embed?.op === "embed" ? embed.table.shape[0] : 0,
      maxPos: cache ? blocksPerSeq * cache.blockSize - 1 : (1 << 16) - 1,
      hasAttention: !!cache,
      kvHeads: kvHeads.length ? Math.min(...kvHeads) : 1,
      maxSeqs: Math.max(1, options?.maxSeqs ?? Math.min(maxTokens, 64)),
      gathers: graph.some((o) => o.op === "gather_rows"),
      argmax: (last?.op === "argmax" || last?.op === "sample") && last.out === output,
    };
    const owned: GPUBuffer[] = [];
    const tables = new Map<Tensor, Map<number, GPUBuffer>>();
    let heads = 1, hd = 4;
    for (const o of graph) {
      if (o.op === "attention") {
        heads = Math.max(heads, o.nHeads);
        hd = Math.max(hd, o.headDim);
      }
    }
    const partials = this.gpu.buffer(
      this.tuning.gemvMaxRows * heads * this.tuning.maxSplits * (hd + 2) * 4,
      STORAGE,
      "attention partials",
    );
    owned.push(partials);
    // W8A8: one int8 copy of the widest activation rows and their scales, shared by every such matmul
    let actScratch: { q: GPUBuffer; s: GPUBuffer } | undefined;
    const a8 = graph.filter((o) => o.op === "matmul" && o.actQuant);
    if (a8.length) {
      const rows = Math.max(...a8.map((o) => (o as { x: Tensor }).x.shape[0]));
      const k = Math.max(...a8.map((o) => (o as { w: Tensor }).w.shape[1]));
      actScratch = {
        q: this.gpu.buffer(rows * k, STORAGE, "int8 activations"),
        s: this.gpu.buffer(rows * 4, STORAGE, "int8 activation scales"),
      };
      owned.push(actScratch.q, actScratch.s);
    }
    const encoder = new NodeEncoder({
      actScratch,
      packedDot: this.#packedDot && this.gpu.hasDot4,
      gpu: this.gpu,
      f16: this.f16,
      tuning: this.tuning,
      partials,
      ropeTable: (invFreq, headDim) => {
        let byDim = tables.get(invFreq);
        if (!byDim) tables.set(invFreq, byDim = new Map());
        let b = byDim.get(headDim);
        if (!b) {
          b = ropeTable(this.gpu, invFreq as WgTensor, headDim, limits.maxPos);
          byDim.set(headDim, b);
          owned.push(b);
        }
        return b;
      },
    });
    const g = new WgGraph(this.gpu, planNodes(graph), encoder, {
      limits,
      tuning: this.tuning,
      output,
      owned,
    });
    this.#graphs.add(g);
    const graphs = this.#graphs;
    const dispose = g[Symbol.dispose].bind(g);
    g[Symbol.dispose] = () => {
      if (graphs.delete(g)) dispose();
    };
    return g;
  }

  async synchronize(): Promise<void> {
    await this.gpu.idle();
    this.gpu.check("synchronize");
  }

  free(t: Tensor): void {
    const w = t as WgTensor;
    if (!this.#live.delete(w)) return;
    this.gpu.destroy(w.buffer);
    this.gpu.destroy(w.readback);
    if (w.weight) { for (const p of w.weight.parts) freePart(this.gpu, p); }
  }

  #alive(): void {
    if (this.#disposed) throw new LlmError("INTERNAL", "webgpu: the backend was disposed");
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    for (const g of [...this.#graphs]) g[Symbol.dispose]();
    for (const t of [...this.#live]) this.free(t);
    this.#disposed = true;
  }
}

/**
 * RoPE cos/sin tables for positions 0..maxPos, computed in f64 on the host: (cos, sin) of p * invFreq[j]
 * for p < 64, then for p = 64 i (the kernel combines the two by the angle-sum formula).
 */
function ropeTable(gpu: Gpu, invFreq: WgTensor, headDim: number, maxPos: number): GPUBuffer {
  const f = invFreq.host;
  if (!f) {
    throw new LlmError("INTERNAL", `webgpu: RoPE frequencies ${invFreq.label} were not uploaded as f32`);
  }
  const half = headDim / 2;
  const hi = Math.floor(maxPos / 64) + 1;
  const data = new Float32Array((64 + hi) * half * 2);
  for (let r = 0; r < 64 + hi; r++) {
    const pos = r < 64 ? r : (r - 64) * 64;
    for (let j = 0; j < half; j++) {
      const a = pos * f[j];
      data[(r * half + j) * 2] = Math.cos(a);
      data[(r * half + j) * 2 + 1] = Math.sin(a);
    }
  }
  const b = gpu.buffer(data.byteLength, STORAGE, `rope table ${invFreq.label}`);
  gpu.device.queue.writeBuffer(b, 0, data);
  return b;
}

const matmulChecked = new WeakSet<Gpu>();

/** Create a webgpu backend (throws BACKEND_UNAVAILABLE where WebGPU cannot run). */
export async function createWebGpuBackend(options: WebGpuOptions = {}): Promise<Backend> {
  const gpu = await openGpu();
  if (!("device" in gpu)) throw new LlmError("BACKEND_UNAVAILABLE", `webgpu: ${gpu.reason}`);
  if (options.weightQuant && options.weightQuant !== "int8" && options.weightQuant !== "int4") {
    throw new LlmError("BAD_REQUEST", `webgpu: weightQuant must be int8 or int4, got ${options.weightQuant}`);
  }
  if (gpu.f16Ok && !matmulChecked.has(gpu)) {
    // the f16 matmul kernels must match f64 products before any backend may use them
    matmulChecked.add(gpu);
    using probe = new WebGpuBackend(gpu, {
      f16: true,
      tuning: { gemm: { ...DEFAULT_TUNING.gemm, f16Tiles: true } },
    });
    await checkF16Matmul(gpu, probe);
  }
  return new WebGpuBackend(gpu, options);
}

/** Facts about the shared WebGPU device, for tests and benchmarks. */
export async function webGpuInfo(): Promise<
  { available: false; reason: string } | {
    available: true;
    name: string;
    fallback: boolean;
    f16: boolean;
    f16Note: string;
    limits: Gpu["limits"];
  }
> {
  const gpu = await openGpu();
  if (!("device" in gpu)) return { available: false, reason: gpu.reason };
  return {
    available: true,
    name: gpu.name,
    fallback: gpu.fallback,
    f16: gpu.f16Ok,
    f16Note: gpu.f16Note,
    limits: gpu.limits,
  };
}

/**
 * The webgpu backend's factory. A hardware adapter scores 50 (above ref, below cuda); a software one
 * (lavapipe) 0.5, so `auto` keeps ref there while `--backend webgpu` still works.
 */
export const webgpuBackendFactory: BackendFactory = {
  name: "webgpu",
  apiVersion: BACKEND_API_VERSION,
  opFeatures: ["matmul_act_int8"],
  async probe(): Promise<{ score: number; reason?: string }> {
    const gpu = await openGpu();
    if (!("device" in gpu)) return { score: 0, reason: gpu.reason };
    return { score: gpu.fallback ? 0.5 : 50 };
  },
  create(options?: BackendOptions): Promise<Backend> {
    return createWebGpuBackend(options);
  },
};
