/**
 * SmoothQuant calibration: the largest |activation| each matmul input channel sees over a calibration
 * text. A wrapper backend runs the ordinary decoder graph op by op on any backend (ref by default) and,
 * after each decoder-layer matmul, reads its input back and folds it into per-channel maxima, so the
 * statistics come from the same forward pass that generates, not from a second implementation of it.
 * @module
 */
import type { Backend, BackendCaps, CompiledGraph, CompileOptions } from "../backend.ts";
import type { Tensor, TensorUsage } from "../tensor.ts";
import type { BackendName, DType, Shape } from "../types.ts";
import type { Op, StepParams } from "../ops.ts";
import type { ModelFile } from "../format/model_file.ts";
import type { Tokenizer } from "../format/tokenizer.ts";
import { liveRows } from "../ops.ts";
import { LlmError } from "../errors.ts";
import { pickBackend } from "../registry.ts";
import { Engine } from "../engine/engine.ts";

/** Per-channel activation maxima of each decoder-layer matmul input, keyed by weight name (`l0.wq`). */
export interface ActivationStats {
  /** `max |x_j|` over every calibration token, per input channel j of the named weight's matmul. */
  readonly absMax: ReadonlyMap<string, Float32Array>;
  /** Calibration tokens that went through the model. */
  readonly tokens: number;
}

const LAYER_WEIGHT = /^l\d+\.(wq|wk|wv|wo|w1|w2|w3)$/;

/**
 * A backend that delegates everything to `inner` but runs compiled graphs one op at a time, reading the
 * input of every decoder-layer matmul back after it runs. Slow by design (a calibration tool).
 */
export class CalibratingBackend implements Backend {
  readonly name: BackendName;
  readonly caps: BackendCaps;
  readonly #inner: Backend;
  readonly #labels = new WeakMap<Tensor, string>();
  readonly #absMax = new Map<string, Float32Array>();
  #tokens = 0;

  constructor(inner: Backend) {
    this.#inner = inner;
    this.name = inner.name;
    this.caps = inner.caps;
  }

  /** The statistics gathered so far. */
  stats(): ActivationStats {
    return { absMax: this.#absMax, tokens: this.#tokens };
  }

  alloc(dtype: DType, shape: Shape, usage: TensorUsage, label?: string): Tensor {
    const t = this.#inner.alloc(dtype, shape, usage, label);
    if (label !== undefined && LAYER_WEIGHT.test(label)) this.#labels.set(t, label);
    return t;
  }
  upload(dst: Tensor, src: ArrayBufferView, options?: { byteOffset?: number }): Promise<void> {
    return this.#inner.upload(dst, src, options);
  }
  download(src: Tensor, options?: { byteLength?: number }): Promise<ArrayBuffer> {
    return this.#inner.download(src, options);
  }
  supportsOp(op: Op): boolean {
    return this.#inner.supportsOp(op);
  }
  synchronize(): Promise<void> {
    return this.#inner.synchronize();
  }
  free(t: Tensor): void {
    this.#inner.free(t);
  }

  compile(graph: readonly Op[], options?: CompileOptions): CompiledGraph {
    const parts = graph.map((o) => ({ op: o, g: this.#inner.compile([o], options) }));
    const run = async (step: StepParams): Promise<void> => {
      this.#tokens += step.nTokens;
      for (const { op, g } of parts) {
        await g.run(step);
        const label = op.op === "matmul" ? this.#labels.get(op.w) : undefined;
        if (op.op !== "matmul" || label === undefined) continue;
        const k = op.x.shape[op.x.shape.length - 1], rows = liveRows(op.rows, step);
        await this.#inner.synchronize();
        const x = new Float32Array(await this.#inner.download(op.x, { byteLength: rows * k * 4 }));
        let m = this.#absMax.get(label);
        if (!m) this.#absMax.set(label, m = new Float32Array(k));
        for (let i = 0; i < rows * k; i++) {
          const a = Math.abs(x[i]), j = i % k;
          if (a > m[j]) m[j] = a;
        }
      }
    };
    return {
      run,
      [Symbol.dispose]: (): void => {
        for (const p of parts) p.g[Symbol.dispose]();
      },
    };
  }

  [Symbol.dispose](): void {
    this.#inner[Symbol.dispose]();
  }
}

/** Options of {@link collectActivationStats}. */
export interface CalibrationOptions {
  /** The backend to run the float model on (default ref). */
  readonly backend?: BackendName | Backend;
  /** Most calibration tokens used (default 4096). */
  readonly maxTokens?: number;
  /** Tokens per window, BOS included (default min(model seqLen, 512)). */
  readonly windowTokens?: number;
}

/**
 * Run the float model over `text` (BOS + up to `windowTokens - 1` tokens per window) and return the
 * per-channel input maxima of every decoder-layer matmul. BAD_REQUEST when the text encodes to nothing.
 */
export async function collectActivationStats(
  model: ModelFile,
  tokenizer: Tokenizer,
  text: string,
  options: CalibrationOptions = {},
): Promise<ActivationStats> {
  const window = Math.min(options.windowTokens ?? 512, model.config.seqLen);
  const maxTokens = options.maxTokens ?? 4096;
  const ids = tokenizer.encode(text, { addBos: false }).slice(0, maxTokens);
  if (ids.length === 0) {
    throw new LlmError(
      "BAD_REQUEST",
      "the calibration text encodes to no tokens; give a text file with some prose",
    );
  }
  const inner = typeof options.backend === "object"
    ? options.backend
    : await pickBackend(options.backend ?? "ref");
  const calib = new CalibratingBackend(inner);
  try {
    using engine = await Engine.create(model, tokenizer, {
      backend: calib,
      contextSize: window,
      kvDType: "f32",
      maxBatch: 1,
    });
    const bos = tokenizer.bosId === undefined ? [] : [tokenizer.bosId];
    const per = window - 1 - bos.length;
    for (let at = 0; at < ids.length; at += per) {
      await engine.complete([...bos, ...ids.slice(at, at + per)], { maxTokens: 1, temperature: 0 });
    }
    return calib.stats();
  } finally {
    if (typeof options.backend !== "object") calib[Symbol.dispose]();
  }
}
