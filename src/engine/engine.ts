/**
 * The engine: weights on a backend, a KV cache, the compiled decoder graph, a tokenizer, and the
 * generate loop (prefill in chunks, then one token per step). One sequence runs at a time here;
 * concurrent generate() calls queue. In-flight batching of many sequences lives in the scheduler.
 * @module
 */
import type { Backend, CompiledGraph } from "../backend.ts";
import type { BackendName, DType, ProgressCallback } from "../types.ts";
import type { ModelFile } from "../format/model_file.ts";
import type { Tokenizer } from "../format/tokenizer.ts";
import type { StepParams } from "../ops.ts";
import { LlmError } from "../errors.ts";
import { pickBackend } from "../registry.ts";
import { type LlamaWeights, uploadWeights } from "../model/weights.ts";
import { KvCache, SequenceSlots } from "../model/kv_cache.ts";
import { buildLlamaGraph, type LlamaGraph } from "../model/llama.ts";
import { type LlamaConfig, parameterCount } from "../model/config.ts";
import { checkTokenizerMatchesModel } from "../format/tokenizer_load.ts";
import { Sampler, type SamplingOptions, validateSamplingOptions } from "../sample/sampler.ts";
import { StopMatcher } from "../sample/stop.ts";

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
  /** Quantize float weights while loading (weight-only int8 per channel or int4 g128; cuda backend). */
  readonly weightQuant?: "int8" | "int4";
  /** Called as weights are uploaded to the backend (bytes done over bytes total). */
  readonly onProgress?: ProgressCallback;
  /** Aborts loading (the weight upload). */
  readonly signal?: AbortSignal;
}

/** Options for {@link Engine.generate}. */
export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens (default 256). Generation also ends at the context size. */
  readonly maxTokens?: number;
  /** Stop strings: the text ends before the first one. */
  readonly stop?: readonly string[];
  /** Stops generation between tokens. */
  readonly signal?: AbortSignal;
  /** Prepend BOS to a text prompt (default: the tokenizer's setting). */
  readonly addBos?: boolean;
  /** Keep generating past end-of-sequence tokens. */
  readonly ignoreEos?: boolean;
}

/** Why generation ended. */
export type FinishReason = "stop" | "length" | "abort";

/** Timings of one generation. */
export interface GenerationTimings {
  /** Tokens in the prompt. */
  readonly promptTokens: number;
  /** Time spent processing the prompt, in milliseconds. */
  readonly prefillMs: number;
  /** Prompt tokens processed per second (0 when not measurable). */
  readonly prefillTokPerS: number;
  /** Tokens generated (not counting a final end-of-sequence token). */
  readonly generatedTokens: number;
  /** Time from the end of prefill to the end of generation, in milliseconds. */
  readonly decodeMs: number;
  /** Tokens per second after the first generated token (0 when fewer than two were generated). */
  readonly decodeTokPerS: number;
}

/** The outcome of one generation. */
export interface GenerationResult {
  /** The prompt's token ids, as given or as encoded from text. */
  readonly promptIds: number[];
  /** Ids of the generated tokens, in order. */
  readonly generatedIds: number[];
  /** The generated text (stop strings removed). */
  readonly text: string;
  /** Why generation ended. */
  readonly finishReason: FinishReason;
  /** How long prefill and decode took. */
  readonly timings: GenerationTimings;
}

/** A streamed event: each new token's text, then one `done` with the result. */
export type GenerateEvent =
  | { readonly type: "token"; readonly id: number; readonly text: string }
  | { readonly type: "done"; readonly result: GenerationResult };

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
  /** Context length (KV capacity) in tokens. */
  readonly contextSize: number;
  /** Time {@link Engine.create} took (backend, weight upload, KV cache, graph), in milliseconds. */
  readonly loadMs: number;
}

function now(): number {
  return performance.now();
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
  /** Context length (KV capacity) in tokens: prompt plus generated tokens must fit in it. */
  readonly contextSize: number;
  #weights: LlamaWeights;
  #kv: KvCache;
  #graph: LlamaGraph;
  #compiled: CompiledGraph;
  /** The graph with a device argmax, compiled on first greedy use (backends that support it). */
  #greedy?: CompiledGraph;
  #loadMs: number;
  #ownsBackend: boolean;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    backend: Backend,
    tokenizer: Tokenizer,
    weights: LlamaWeights,
    kv: KvCache,
    graph: LlamaGraph,
    contextSize: number,
    loadMs: number,
    ownsBackend: boolean,
  ) {
    this.#ownsBackend = ownsBackend;
    this.backend = backend;
    this.tokenizer = tokenizer;
    this.config = weights.config;
    this.#weights = weights;
    this.#kv = kv;
    this.#graph = graph;
    this.#compiled = backend.compile(graph.ops, { outputs: [graph.logits] });
    this.contextSize = contextSize;
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
    if (options.maxStepTokens !== undefined) {
      const n = options.maxStepTokens;
      if (!Number.isInteger(n) || n < 1 || n > 8192) {
        throw new LlmError("BAD_REQUEST", `maxStepTokens ${n} must be an integer in 1..8192`);
      }
    }
    const backend = typeof options.backend === "object" ? options.backend : await pickBackend(
      options.backend ?? "auto",
      { threads: options.threads, cudaLibrary: options.cudaLibrary, weightQuant: options.weightQuant },
    );
    const owns = typeof options.backend !== "object";
    const stepTokens = options.maxStepTokens ?? backend.caps.preferredStepTokens;
    let weights: LlamaWeights | undefined;
    try {
      weights = await uploadWeights(backend, model, {
        onProgress: options.onProgress,
        signal: options.signal,
      });
      const kv = new KvCache(backend, c, { capacity: ctx, dtype: options.kvDType });
      const graph = buildLlamaGraph(backend, weights, kv, {
        maxTokens: Math.min(stepTokens, ctx),
        maxLogitRows: 1,
      });
      return new Engine(backend, tokenizer, weights, kv, graph, ctx, now() - t0, owns);
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
      loadMs: this.#loadMs,
      deviceMemoryUsed: this.#deviceMemoryUsed(),
    };
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
   * CONTEXT_OVERFLOW when the prompt does not fit the context, BAD_REQUEST for bad options.
   */
  generate(prompt: string | readonly number[], options: GenerateOptions = {}): AsyncIterable<GenerateEvent> {
    const sampling = validateSamplingOptions(options);
    const maxTokens = options.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) {
      throw new LlmError("BAD_REQUEST", `maxTokens must be a non-negative integer, got ${maxTokens}`);
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
    return this.#run(promptIds, maxTokens, new Sampler(this.config.vocabSize, sampling), stops, options);
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

  /** Wait for the sequence slot (one sequence runs at a time); call the result to give it back. */
  async #acquire(): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => release = r);
    const before = this.#queue;
    this.#queue = before.then(() => mine);
    await before;
    return release;
  }

  /**
   * Teacher forcing: the logits after each prefix of `ids`. `result[i]` is the distribution predicting
   * `ids[i + 1]` (the last predicts the token after the sequence). For evaluation (perplexity, KL
   * divergence) and for comparing logits with other implementations.
   */
  async logitsFor(ids: readonly number[], options: { signal?: AbortSignal } = {}): Promise<Float32Array[]> {
    if (ids.length === 0 || ids.length > this.contextSize) {
      throw new LlmError(
        ids.length ? "CONTEXT_OVERFLOW" : "BAD_REQUEST",
        `logitsFor needs 1..${this.contextSize} tokens, got ${ids.length}`,
      );
    }
    this.#checkIds(ids);
    const release = await this.#acquire();
    const seq = new SequenceSlots(this.#kv);
    const vocab = this.config.vocabSize;
    try {
      const out: Float32Array[] = [];
      for (let i = 0; i < ids.length; i++) {
        options.signal?.throwIfAborted();
        await this.#step(seq, [ids[i]], i, true);
        out.push(
          new Float32Array(await this.backend.download(this.#graph.logits, { byteLength: vocab * 4 })),
        );
      }
      return out;
    } finally {
      seq.release();
      release();
    }
  }

  /** The compiled greedy graph, when the backend can take argmax on the device. */
  #greedyGraph(): CompiledGraph | undefined {
    const g = this.#graph.greedy;
    if (!g) return undefined;
    return this.#greedy ??= this.backend.compile(g.ops, { outputs: [g.ids] });
  }

  /** Read the next token: a device argmax (4 bytes) when `greedy`, else the logits through the sampler. */
  async #next(sampler: Sampler, history: readonly number[], greedy: boolean): Promise<number> {
    if (greedy) {
      const id = new Int32Array(await this.backend.download(this.#graph.greedy!.ids, { byteLength: 4 }))[0];
      if (id < 0 || id >= this.config.vocabSize) {
        throw new LlmError(
          "INTERNAL",
          `device argmax returned ${id}: the logits hold NaN; the model or backend kernel produced invalid numbers (try the ref backend to compare)`,
        );
      }
      return id;
    }
    const vocab = this.config.vocabSize;
    const logits = new Float32Array(
      await this.backend.download(this.#graph.logits, { byteLength: vocab * 4 }),
    );
    return sampler.sample(logits, history);
  }

  async #step(
    seq: SequenceSlots,
    ids: readonly number[],
    start: number,
    wantLogits: boolean,
    graph: CompiledGraph = this.#compiled,
  ): Promise<void> {
    const n = ids.length;
    seq.reserve(start + n);
    const step: StepParams = {
      nTokens: n,
      tokens: Int32Array.from(ids),
      positions: Int32Array.from({ length: n }, (_, i) => start + i),
      seqIndex: new Int32Array(n),
      blockTables: Int32Array.from(seq.blocks),
      maxBlocksPerSeq: seq.blocks.length,
      logitRows: wantLogits ? Int32Array.of(n - 1) : new Int32Array(0),
    };
    await graph.run(step);
    seq.length = start + n;
  }

  async *#run(
    promptIds: number[],
    maxTokens: number,
    sampler: Sampler,
    stops: StopMatcher,
    options: GenerateOptions,
  ): AsyncGenerator<GenerateEvent> {
    const release = await this.#acquire(); // one sequence at a time: wait for earlier generations
    const signal = options.signal;
    const seq = new SequenceSlots(this.#kv);
    const generated: number[] = [];
    const decoder = this.tokenizer.streamDecoder();
    for (const id of promptIds) decoder.push(id); // primes decoder state (e.g. the space after BOS)
    let text = "";
    let finish: FinishReason = "length";
    const t0 = now();
    let prefillMs = 0;
    try {
      const greedyGraph = sampler.isPlainGreedy ? this.#greedyGraph() : undefined;
      const last = greedyGraph ?? this.#compiled; // the graph of steps that produce the next token
      const T = this.#graph.maxTokens;
      for (let s = 0; s < promptIds.length; s += T) {
        signal?.throwIfAborted();
        const chunk = promptIds.slice(s, s + T);
        const final = s + chunk.length === promptIds.length;
        await this.#step(seq, chunk, s, final, final ? last : this.#compiled);
      }
      prefillMs = now() - t0;
      const history = [...promptIds];
      while (generated.length < maxTokens && seq.length < this.contextSize) {
        if (signal?.aborted) {
          finish = "abort";
          break;
        }
        const id = await this.#next(sampler, history, greedyGraph !== undefined);
        if (!options.ignoreEos && this.tokenizer.eosIds.includes(id)) {
          finish = "stop";
          break;
        }
        generated.push(id);
        history.push(id);
        const { emit, stopped } = stops.push(decoder.push(id));
        text += emit;
        if (emit || !stopped) yield { type: "token", id, text: emit };
        if (stopped) {
          finish = "stop";
          break;
        }
        if (generated.length < maxTokens && seq.length < this.contextSize) {
          await this.#step(seq, [id], seq.length, true, last);
        }
      }
      if (finish !== "stop") {
        const tail = stops.push(decoder.flush());
        const rest = tail.emit + (tail.stopped ? "" : stops.flush());
        if (tail.stopped) finish = "stop";
        text += rest;
        if (rest) yield { type: "token", id: -1, text: rest };
      }
    } catch (e) {
      if (signal?.aborted && (e as Error)?.name === "AbortError") finish = "abort";
      else throw e;
    } finally {
      seq.release();
      release();
    }
    const decodeMs = now() - t0 - prefillMs;
    yield {
      type: "done",
      result: {
        promptIds,
        generatedIds: generated,
        text,
        finishReason: finish,
        timings: {
          promptTokens: promptIds.length,
          prefillMs,
          prefillTokPerS: prefillMs > 0 ? (promptIds.length / prefillMs) * 1000 : 0,
          generatedTokens: generated.length,
          decodeMs,
          decodeTokPerS: decodeMs > 0 && generated.length > 1
            ? ((generated.length - 1) / decodeMs) * 1000
            : 0,
        },
      },
    };
  }

  /** Free device memory, and the backend when the engine created it. */
  [Symbol.dispose](): void {
    this.#compiled[Symbol.dispose]();
    this.#greedy?.[Symbol.dispose]();
    this.#graph.free();
    this.#kv[Symbol.dispose]();
    for (const t of this.#weights.all) this.backend.free(t);
    if (this.#ownsBackend) this.backend[Symbol.dispose]();
  }
}
