/**
 * The engine: weights on a backend, a paged KV cache, the compiled decoder graph, a tokenizer, and the
 * scheduler that runs every generation: concurrent generate() calls share steps (in-flight batching, up
 * to `maxBatch` sequences); a single one runs alone, prompt chunks then one token per step.
 * @module
 */
import { type Backend, type CompiledGraph, quantizesAtLoad, WEIGHT_QUANT_ROW_MULTIPLE } from "../backend.ts";
import type { BackendName, DType, ProgressCallback } from "../types.ts";
import type { ModelFile } from "../format/model_file.ts";
import type { Tokenizer } from "../format/tokenizer.ts";
import { LlmError } from "../errors.ts";
import { backendsWithFeature, pickBackend } from "../registry.ts";
import { type LlamaWeights, uploadWeights } from "../model/weights.ts";
import { KvCache } from "../model/kv_cache.ts";
import { buildLlamaGraph, type LlamaGraph } from "../model/llama.ts";
import { kvDim, type LlamaConfig, parameterCount } from "../model/config.ts";
import { requiredTensors } from "../format/model_file.ts";
import { byteLengthOf } from "../dtype.ts";
import { checkTokenizerMatchesModel } from "../format/tokenizer_load.ts";
import { Sampler, validateSamplingOptions } from "../sample/sampler.ts";
import { StopMatcher } from "../sample/stop.ts";
import { Scheduler, type SchedulerStats, type StepInfo } from "./scheduler.ts";
import type {
  GenerateEvent,
  GenerateOptions,
  GenerationHandle,
  GenerationResult,
  SequenceSpec,
} from "./generation.ts";

const FLOAT_DTYPES: ReadonlySet<string> = new Set(["f32", "f16", "bf16"]);
/** Options for {@link Engine.create}. */
export interface EngineOptions {
  /** A backend name, "auto" (default), or a backend you created. */
  readonly backend?: BackendName | "auto" | Backend;
  /** Context length (KV capacity) in tokens; default min(model seqLen, 4096). */
  readonly contextSize?: number;
  /** KV cache storage dtype; default the backend's. */
  readonly kvDType?: DType;
  /** Most prompt tokens processed per step (prefill chunk); default: the backend's preference. */
  readonly maxStepTokens?: number;
  /** Worker threads for CPU backends. */
  readonly threads?: number;
  /** Path of the CUDA shared library (cuda backend). */
  readonly cudaLibrary?: string;
  /** Decode steps the cuda backend keeps queued ahead of the host (BackendOptions.cudaQueueDepth). */
  readonly cudaQueueDepth?: number;
  /** Quantize float weights while loading (weight-only int8 per channel or int4 g128; cuda backend). */
  readonly weightQuant?: "int8" | "int4";
  /** Called as weights are uploaded to the backend (bytes done over bytes total). */
  readonly onProgress?: ProgressCallback;
  /** Aborts loading (the weight upload). */
  readonly signal?: AbortSignal;
  /** Most sequences generating at once (in-flight batching); default 4. */
  readonly maxBatch?: number;
  /**
   * KV cache capacity in tokens over all sequences; default the context size (one full-length sequence,
   * or several shorter ones). At least the context size. `"auto"`: room for `maxBatch` full contexts,
   * capped to 90% of the device memory left after the weights where the backend reports it.
   */
  readonly kvCapacity?: number | "auto";
  /** Most generations waiting for a batch slot; more are refused with OVERLOADED. Default unbounded. */
  readonly maxQueue?: number;
  /** Reuse the KV blocks of identical prompt prefixes across generations. Default false. */
  readonly prefixCache?: boolean;
  /**
   * Sample on the device where the backend has a `sample` op (cuda, ref, webgpu): rows without penalties read
   * back one token id instead of a row of logits. Default true; false samples every non-greedy row on
   * the host (the A/B baseline). The tokens are the same either way (src/sample/pick.ts), except that
   * webgpu's f32 kernel may differ where a uniform or cut lands within its stated rounding of a boundary.
   */
  readonly deviceSampling?: boolean;
}

export type {
  FinishReason,
  GenerateEvent,
  GenerateOptions,
  GenerationHandle,
  GenerationResult,
  GenerationTimings,
} from "./generation.ts";

/** Static facts about a loaded engine. */
export interface EngineInfo {
  /** The backend the engine runs on. */
  readonly backend: BackendName;
  /** The backend's device name (its `caps.device`). */
  readonly device: string;
  /** The model's configuration. */
  readonly config: LlamaConfig;
  /** Parameter count computed from the config. */
  readonly parameters: number;
  /** Bytes of weight tensors on the backend. */
  readonly weightBytes: number;
  /** Distinct dtypes of the weight matrices, e.g. ["q8_0", "f32"]. */
  readonly weightDTypes: readonly DType[];
  /** Bytes of the KV cache (keys and values, all layers). */
  readonly kvBytes: number;
  /** KV cache storage dtype. */
  readonly kvDType: DType;
  /** Device memory in use by the whole process (bytes), where the backend can tell; else undefined. */
  readonly deviceMemoryUsed?: number;
  /** Context length in tokens (per sequence). */
  readonly contextSize: number;
  /** KV cache capacity in tokens over all sequences. */
  readonly kvCapacity: number;
  /** Most sequences generating at once. */
  readonly maxBatch: number;
  /** Time {@link Engine.create} took (backend, weight upload, KV cache, graph), in milliseconds. */
  readonly loadMs: number;
  /**
   * Where tokens are chosen for rows without penalties: `"sample"` (the backend's `sample` op: every
   * setting on the device), `"argmax"` (greedy rows on the device, sampled rows on the host) or `"host"`.
   */
  readonly devicePick: "sample" | "argmax" | "host";
}

/** Bytes of KV cache (with int8 scales) and activations an engine allocates besides the weights. */
function runtimeBytes(c: LlamaConfig, kvTokens: number, kvDType: DType, stepTokens: number): number {
  const rows = Math.ceil(kvTokens / 16) * 16, kd = kvDim(c), T = stepTokens;
  const kv = 2 * c.nLayers *
    (byteLengthOf(kvDType, rows * kd) + (kvDType === "i8" ? rows * c.nKvHeads * 4 : 0));
  const acts = 4 * T * (4 * c.dim + 2 * c.nHeads * c.headDim + 2 * kd + 2 * c.hiddenDim) +
    4 * (2 * c.dim + c.vocabSize);
  return kv + acts;
}

function now(): number {
  return performance.now();
}

function intOption(name: string, v: number | undefined, lo: number, hi: number): number | undefined {
  if (v !== undefined && (!Number.isInteger(v) || v < lo || v > hi)) {
    throw new LlmError("BAD_REQUEST", `${name} ${v} must be an integer in ${lo}..${hi}`);
  }
  return v;
}

/**
 * A loaded model ready to generate.
 *
 * @example
 * ```ts
 * import { Engine, loadModel } from "@llama-ts/llama";
 * const { model, tokenizer } = await loadModel("stories260K.bin", { tokenizer: "tok512.bin" });
 * using engine = await Engine.create(model, tokenizer, { backend: "ref" });
 * const result = await engine.complete("Once upon a time", { maxTokens: 32, temperature: 0 });
 * console.log(result.text);
 * ```
 */
export class Engine implements Disposable {
  /** The tokenizer used to encode prompts and decode output. */
  readonly tokenizer: Tokenizer;
  /** The backend holding the weights and running the graph. */
  readonly backend: Backend;
  /** The model's configuration. */
  readonly config: LlamaConfig;
  /** Context length in tokens: one sequence's prompt plus generated tokens must fit in it. */
  readonly contextSize: number;
  /** Most sequences generating at once. */
  readonly maxBatch: number;
  #weights: LlamaWeights;
  #kv: KvCache;
  #graph: LlamaGraph;
  #compiled: CompiledGraph;
  /** The graph with a device argmax or sample op, compiled on first use (backends that support it). */
  #greedy?: CompiledGraph;
  #scheduler: Scheduler;
  #loadMs: number;
  #ownsBackend: boolean;
  #disposed = false;

  private constructor(
    backend: Backend,
    tokenizer: Tokenizer,
    parts: { weights: LlamaWeights; kv: KvCache; graph: LlamaGraph },
    options: {
      contextSize: number;
      maxBatch: number;
      prefillChunk: number;
      maxQueue?: number;
      prefixCache?: boolean;
    },
    loadMs: number,
    ownsBackend: boolean,
  ) {
    this.#ownsBackend = ownsBackend;
    this.backend = backend;
    this.tokenizer = tokenizer;
    this.config = parts.weights.config;
    this.#weights = parts.weights;
    this.#kv = parts.kv;
    this.#graph = parts.graph;
    this.contextSize = options.contextSize;
    this.maxBatch = options.maxBatch;
    const maxBlocksPerSeq = Math.ceil(options.contextSize / parts.kv.blockSize);
    this.#compiled = backend.compile(parts.graph.ops, {
      outputs: [parts.graph.logits],
      maxSeqs: options.maxBatch,
      maxBlocksPerSeq,
    });
    const g = parts.graph.greedy;
    // compiled on first greedy use: a cuda program allocates its own scratch
    const greedy = g
      ? {
        ids: g.ids,
        sampling: g.sampling,
        compiled: (): CompiledGraph =>
          this.#greedy ??= backend.compile(g.ops, {
            outputs: [g.ids],
            maxSeqs: options.maxBatch,
            maxBlocksPerSeq,
          }),
      }
      : undefined;
    this.#scheduler = new Scheduler(
      {
        backend,
        kv: parts.kv,
        graph: parts.graph,
        compiled: this.#compiled,
        vocabSize: this.config.vocabSize,
        greedy,
      },
      options,
    );
    this.#loadMs = loadMs;
  }

  /** Upload a parsed model to a backend and build its graph. */
  static async create(model: ModelFile, tokenizer: Tokenizer, options: EngineOptions = {}): Promise<Engine> {
    const t0 = now();
    const c = model.config;
    checkTokenizerMatchesModel(tokenizer, c.vocabSize, model.format);
    const ctx = options.contextSize ?? Math.min(c.seqLen, 4096);
    if (!Number.isInteger(ctx) || ctx < 1 || ctx > 1 << 20) {
      throw new LlmError("BAD_REQUEST", `context size ${ctx} is not a positive integer up to 1048576`);
    }
    intOption("maxStepTokens", options.maxStepTokens, 1, 8192);
    const maxBatch = intOption("maxBatch", options.maxBatch, 1, 1024) ?? 4;
    const auto = options.kvCapacity === "auto";
    let kvCapacity = auto
      ? ctx * maxBatch
      : intOption("kvCapacity", options.kvCapacity as number, ctx, 1 << 24) ?? ctx;
    const matrixDTypes = new Set(
      [...model.tensors.values()].filter((t) => t.shape.length === 2).map((t) => t.dtype),
    );
    if (options.weightQuant && ![...matrixDTypes].some((d) => FLOAT_DTYPES.has(d))) {
      throw new LlmError(
        "BAD_REQUEST",
        `weightQuant ${options.weightQuant} quantizes float weight matrices, but every matrix of this model is ` +
          `already quantized (${[...matrixDTypes].join(", ")}); ` +
          `drop --weight-quant, or start from the float model`,
      );
    }
    if (options.weightQuant) {
      // every backend quantizes a float matrix only when its rows split into whole groups and keeps the
      // others float (quantizesAtLoad): when none qualifies, the flag would do nothing
      const q = options.weightQuant;
      const floats = [...model.tensors.values()].filter((t) =>
        t.shape.length === 2 && FLOAT_DTYPES.has(t.dtype)
      );
      if (floats.length > 0 && !floats.some((t) => quantizesAtLoad(q, t.shape[1]))) {
        const widths = [...new Set(floats.map((t) => t.shape[1]))].sort((a, b) => a - b).join(", ");
        throw new LlmError(
          "BAD_REQUEST",
          `weightQuant ${q} needs matrix rows whose length is a multiple of ${
            WEIGHT_QUANT_ROW_MULTIPLE[q]
          }, but this ` +
            `model's rows are ${widths} values long, so nothing would be quantized` +
            (q === "int4" && floats.some((t) => quantizesAtLoad("int8", t.shape[1]))
              ? "; use --weight-quant int8 instead"
              : "; leave --weight-quant out"),
        );
      }
    }
    if (options.maxQueue !== undefined && !(options.maxQueue >= 0)) {
      throw new LlmError("BAD_REQUEST", `maxQueue ${options.maxQueue} must be >= 0`);
    }
    const backend = typeof options.backend === "object" ? options.backend : await pickBackend(
      options.backend ?? "auto",
      {
        threads: options.threads,
        cudaLibrary: options.cudaLibrary,
        cudaQueueDepth: options.cudaQueueDepth,
        weightQuant: options.weightQuant,
      },
    );
    const owns = typeof options.backend !== "object";
    if (c.activationQuant && !backend.caps.opFeatures?.includes("matmul_act_int8")) {
      if (owns) backend[Symbol.dispose]();
      throw new LlmError(
        "UNSUPPORTED_MODEL",
        `this model is SmoothQuant W8A8 (per-token int8 activations), which the ${backend.name} backend ` +
          `cannot run yet; backends that can: ${
            backendsWithFeature("matmul_act_int8").join(", ") || "none"
          }. ` +
          `Pick one with --backend, or quantize weight-only (quantize --scheme int8_per_channel)`,
      );
    }
    const prefillChunk = Math.min(options.maxStepTokens ?? backend.caps.preferredStepTokens, ctx);
    let weights: LlamaWeights | undefined;
    try {
      if (backend.checkFits) {
        const tensors = requiredTensors(c).map((name) => ({ ...model.tensors.get(name)!, name }));
        backend.checkFits(
          tensors,
          runtimeBytes(
            c,
            kvCapacity,
            options.kvDType ?? backend.caps.defaultKvDType,
            Math.max(prefillChunk, maxBatch),
          ),
        );
      }
      weights = await uploadWeights(backend, model, {
        onProgress: options.onProgress,
        signal: options.signal,
      });
      const mem = auto ? backend.memoryInfo?.() : undefined;
      if (mem) {
        const kvDType = options.kvDType ?? backend.caps.defaultKvDType;
        const perToken = 2 * c.nLayers *
          (byteLengthOf(kvDType, kvDim(c)) + (kvDType === "i8" ? 4 * c.nKvHeads : 0));
        kvCapacity = Math.max(ctx, Math.min(kvCapacity, Math.floor((0.9 * mem.free) / perToken)));
      }
      const kv = new KvCache(backend, c, { capacity: kvCapacity, dtype: options.kvDType });
      // a step carries a prompt chunk, or a decode row for every sequence in the batch, or a mix
      const graph = buildLlamaGraph(backend, weights, kv, {
        maxTokens: Math.max(prefillChunk, maxBatch),
        maxLogitRows: maxBatch,
        deviceSampling: options.deviceSampling,
      });
      return new Engine(
        backend,
        tokenizer,
        { weights, kv, graph },
        {
          contextSize: ctx,
          maxBatch,
          prefillChunk,
          maxQueue: options.maxQueue,
          prefixCache: options.prefixCache,
        },
        now() - t0,
        owns,
      );
    } catch (e) {
      // free what was placed on the device; a backend we created goes with it
      if (weights) { for (const t of weights.all) backend.free(t); }
      if (owns) backend[Symbol.dispose]();
      throw e;
    }
  }

  /** What was loaded, where, and how much memory it takes. */
  info(): EngineInfo {
    return {
      backend: this.backend.name,
      device: this.backend.caps.device,
      config: this.config,
      parameters: parameterCount(this.config),
      weightBytes: this.#weights.byteLength,
      weightDTypes: [...new Set(this.#weights.all.map((t) => t.dtype))],
      kvBytes: this.#kv.byteLength,
      kvDType: this.#kv.dtype,
      contextSize: this.contextSize,
      kvCapacity: this.#kv.nBlocks * this.#kv.blockSize,
      maxBatch: this.maxBatch,
      loadMs: this.#loadMs,
      deviceMemoryUsed: this.#deviceMemoryUsed(),
      devicePick: this.#graph.greedy ? (this.#graph.greedy.sampling ? "sample" : "argmax") : "host",
    };
  }

  /** Queue depth, batch and KV block use of the scheduler right now. */
  stats(): SchedulerStats {
    return this.#scheduler.stats();
  }

  /** Called after every step with its row and sequence counts (for metrics); one listener. */
  set onStep(f: ((info: StepInfo) => void) | undefined) {
    this.#scheduler.onStep = f;
  }

  #deviceMemoryUsed(): number | undefined {
    const m = this.backend.memoryInfo?.();
    return m ? m.total - m.free : undefined;
  }

  /** Generate and collect the whole result. */
  async complete(
    prompt: string | readonly number[],
    options: GenerateOptions = {},
  ): Promise<GenerationResult> {
    for await (const ev of this.generate(prompt, options)) if (ev.type === "done") return ev.result;
    throw new LlmError("INTERNAL", "generation ended without a result");
  }

  /**
   * Stream a generation. Text prompts are tokenized; id prompts are used as given. Throws
   * CONTEXT_OVERFLOW when the prompt does not fit the context, BAD_REQUEST for bad options. The request
   * is queued when iteration starts; leaving the loop early cancels it.
   */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): AsyncIterable<GenerateEvent> {
    const spec = this.#prepare(prompt, options);
    const scheduler = this.#scheduler;
    return (async function* (): AsyncGenerator<GenerateEvent> {
      const h = scheduler.submit(spec);
      const onAbort = (): void => h.cancel();
      options.signal?.addEventListener("abort", onAbort);
      try {
        if (options.signal?.aborted) h.cancel();
        yield* h.events;
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
        h.cancel();
      }
    })();
  }

  /**
   * Queue a generation now and return its handle: like {@link Engine.generate}, but the request enters
   * the queue at once, so a full queue throws OVERLOADED here (servers answer 429), and `cancel()` stops it.
   */
  submit(prompt: string | readonly number[], options: GenerateOptions = {}): GenerationHandle {
    const h = this.#scheduler.submit(this.#prepare(prompt, options));
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) h.cancel();
      else signal.addEventListener("abort", () => h.cancel(), { once: true });
    }
    return h;
  }

  /** Tokenize, validate and build the scheduler's request (throws before anything is queued). */
  #prepare(prompt: string | readonly number[], options: GenerateOptions): SequenceSpec {
    if (this.#disposed) throw new LlmError("ABORTED", "the engine was disposed; create a new one");
    const sampling = validateSamplingOptions(options);
    const maxTokens = options.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) {
      throw new LlmError(
        "BAD_REQUEST",
        `maxTokens must be a non-negative integer, got ${maxTokens}: pass 0 or more, or leave it out (256)`,
      );
    }
    const stops = new StopMatcher(options.stop ?? []);
    const promptIds = typeof prompt === "string"
      ? this.tokenizer.encode(prompt, { addBos: options.addBos })
      : [...prompt];
    if (promptIds.length === 0) {
      throw new LlmError("BAD_REQUEST", "the prompt encodes to no tokens; give some text or enable BOS");
    }
    this.#checkIds(promptIds);
    if (promptIds.length >= this.contextSize) {
      throw new LlmError(
        "CONTEXT_OVERFLOW",
        `the prompt is ${promptIds.length} tokens but the context holds ${this.contextSize} ` +
          `(and at least one more is needed to generate); shorten the prompt or raise the context size ` +
          `(this model was trained for ${this.config.seqLen})`,
      );
    }
    const decoder = this.tokenizer.streamDecoder();
    for (const id of promptIds) decoder.push(id); // primes decoder state (e.g. the space after BOS)
    return {
      promptIds,
      maxTokens,
      sampler: new Sampler(this.config.vocabSize, sampling),
      stops,
      decoder,
      eosIds: this.tokenizer.eosIds,
      ignoreEos: options.ignoreEos,
    };
  }

  /** Throw BAD_REQUEST for any id outside the vocabulary. */
  #checkIds(ids: readonly number[]): void {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new LlmError(
          "BAD_REQUEST",
          `token id ${id} is outside the vocabulary (0..${this.config.vocabSize - 1})`,
        );
      }
    }
  }

  /**
   * Teacher forcing: the logits after each prefix of `ids`. `result[i]` is the distribution predicting
   * `ids[i + 1]` (the last predicts the token after the sequence). For evaluation (perplexity, KL
   * divergence) and for comparing logits with other implementations. Each position runs as its own row
   * of a step, as decoding does.
   */
  async logitsFor(ids: readonly number[], options: { signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    if (ids.length === 0 || ids.length > this.contextSize) {
      throw new LlmError(
        ids.length ? "CONTEXT_OVERFLOW" : "BAD_REQUEST",
        `logitsFor needs 1..${this.contextSize} tokens, got ${ids.length}`,
      );
    }
    this.#checkIds(ids);
    options.signal?.throwIfAborted();
    const out: Float32Array[] = new Array(ids.length);
    const h = this.#scheduler.submit({
      promptIds: [...ids],
      maxTokens: 0,
      eosIds: [],
      chunk: 1,
      onLogits: (pos, row) => out[pos] = row,
    });
    const onAbort = (): void => h.cancel();
    options.signal?.addEventListener("abort", onAbort);
    try {
      for await (const ev of h.events) {
        if (ev.type === "done" && ev.result.finishReason === "abort") options.signal?.throwIfAborted();
      }
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
    return out;
  }

  /** Stop every generation and free device memory (and the backend when the engine created it). */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    // a step in flight still uses the buffers: free them once it has returned
    this.#scheduler.close(() => {
      this.#compiled[Symbol.dispose]();
      this.#greedy?.[Symbol.dispose]();
      this.#graph.free();
      this.#kv[Symbol.dispose]();
      for (const t of this.#weights.all) this.backend.free(t);
      if (this.#ownsBackend) this.backend[Symbol.dispose]();
    });
  }
}
