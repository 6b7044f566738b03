/**
 * One generation request as the scheduler sees it: its tokens, its place in the KV cache, how it samples
 * and stops, and the events it streams to its consumer. Also the public generation types.
 * @module
 */
import type { SamplingOptions } from "../sample/sampler.ts";
import type { Sampler } from "../sample/sampler.ts";
import type { StopMatcher } from "../sample/stop.ts";
import type { StreamDecoder } from "../format/tokenizer.ts";

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
  /** Time spent waiting for a batch slot and KV blocks before the first step, in milliseconds. */
  readonly queueMs: number;
  /** Prompt tokens whose KV blocks were reused from an earlier prompt (prefix cache). */
  readonly cachedTokens: number;
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

/** A submitted generation: its events, and a way to stop it. */
export interface GenerationHandle {
  /** Token events, then one `done` event. Iterate once. */
  readonly events: AsyncIterable<GenerateEvent>;
  /** Tokens in the prompt. */
  readonly promptTokens: number;
  /**
   * Take the events already produced and not yet taken, without waiting (empty when there are none).
   * For consumers that batch their output, e.g. a server writing all of a step's tokens at once: wait on
   * `events` for one event, then drain the rest. Each event is delivered once, by either.
   */
  drain(): GenerateEvent[];
  /** Stop the generation: it ends with finish reason `abort` and its KV blocks are freed within one step. */
  cancel(): void;
}

/** What a sequence needs besides its prompt. */
export interface SequenceSpec {
  readonly promptIds: readonly number[];
  readonly maxTokens: number;
  readonly sampler?: Sampler;
  readonly stops?: StopMatcher;
  readonly decoder?: StreamDecoder;
  readonly eosIds: readonly number[];
  readonly ignoreEos?: boolean;
  /** Teacher forcing: deliver the logits of every prompt position to this callback, generate nothing. */
  readonly onLogits?: (position: number, logits: Float32Array) => void;
  /** Most prompt tokens of this sequence per step (default: the scheduler's chunk). */
  readonly chunk?: number;
  /** Whether the prompt may reuse, and offer, prefix-cache blocks. */
  readonly prefixCache?: boolean;
}

/** An unbounded single-consumer event queue. */
class EventQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;
  #failed = false;
  /** Called when the consumer stops early (break / return). */
  onReturn: (() => void) | undefined;

  push(v: T): void {
    this.#items.push(v);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  /** Remove and return the items not yet taken by the consumer. */
  dropPending(): T[] {
    return this.#items.length ? this.#items.splice(0) : [];
  }

  fail(e: unknown): void {
    this.#failed = true;
    this.#error = e;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    let finished = false;
    try {
      while (true) {
        while (this.#items.length) yield this.#items.shift()!;
        if (this.#failed) throw this.#error;
        if (this.#ended) {
          finished = true;
          return;
        }
        await new Promise<void>((r) => this.#wake = r);
        this.#wake = undefined;
      }
    } finally {
      if (!finished) this.onReturn?.();
    }
  }
}

let nextId = 1;

/** A sequence's state in the scheduler. Text handling follows the old single-sequence loop exactly. */
export class Sequence {
  readonly id: number = nextId++;
  readonly spec: SequenceSpec;
  readonly promptLen: number;
  /** Prompt then generated ids; the last may not be in the cache yet. */
  readonly tokens: number[];
  readonly generated: number[] = [];
  /** Tokens whose keys and values are in the cache. */
  computed = 0;
  /** Physical KV blocks, in logical order. */
  readonly blocks: number[] = [];
  /** Blocks this sequence may still take (reserved at admission). */
  reserveLeft = 0;
  /** Prompt tokens served from the prefix cache. */
  cachedTokens = 0;
  /** The cached block standing for this prompt's prefix so far (-1: none), and blocks offered. */
  prefixParent = -1;
  prefixOffered = 0;
  /** Scratch of the step being planned: this sequence's index among its sequences, and its end position. */
  stepSlot = -1;
  stepUpto = 0;
  state: "waiting" | "running" | "done" = "waiting";
  cancelled = false;
  text = "";
  readonly events: EventQueue<GenerateEvent> = new EventQueue();
  readonly submittedAt: number;
  admittedAt = 0;
  prefillEndAt = 0;
  #truncated = false;

  constructor(spec: SequenceSpec, now: number) {
    this.spec = spec;
    this.promptLen = spec.promptIds.length;
    this.tokens = [...spec.promptIds];
    this.submittedAt = now;
  }

  /** Whether all prompt tokens are in the cache. */
  get prefilled(): boolean {
    return this.computed >= this.promptLen;
  }

  /**
   * Take a sampled token. Returns the finish reason when the sequence is done, else undefined (the token
   * is then appended and must be run through the model next step).
   */
  accept(id: number, contextSize: number): FinishReason | undefined {
    const s = this.spec;
    if (!s.ignoreEos && s.eosIds.includes(id)) return "stop";
    this.generated.push(id);
    this.tokens.push(id);
    const { emit, stopped } = s.stops!.push(s.decoder!.push(id));
    this.text += emit;
    if (emit || !stopped) this.events.push({ type: "token", id, text: emit });
    if (stopped) return "stop";
    if (this.generated.length >= s.maxTokens || this.tokens.length >= contextSize) return "length";
    return undefined;
  }

  /**
   * On cancel: forget tokens the consumer has not taken yet (the scheduler runs ahead of a slow
   * consumer), so the result holds exactly the tokens it saw before it stopped.
   */
  dropUndelivered(): void {
    const pending = this.events.dropPending();
    if (pending.length === 0) return;
    let n = 0, chars = 0;
    for (const ev of pending) {
      if (ev.type !== "token") continue;
      n++;
      chars += ev.text.length;
    }
    this.generated.length -= n;
    this.tokens.length -= n;
    this.text = this.text.slice(0, this.text.length - chars);
    this.#truncated = true;
  }

  /** Emit the final events. */
  finish(reason: FinishReason, now: number): void {
    if (this.state === "done") return;
    this.state = "done";
    const s = this.spec;
    if (s.stops && s.decoder && reason !== "stop" && !this.#truncated) {
      const tail = s.stops.push(s.decoder.flush());
      const rest = tail.emit + (tail.stopped ? "" : s.stops.flush());
      if (tail.stopped) reason = "stop";
      this.text += rest;
      if (rest) this.events.push({ type: "token", id: -1, text: rest });
    }
    const admitted = this.admittedAt || now;
    const prefillEnd = this.prefillEndAt || now;
    const prefillMs = prefillEnd - admitted, decodeMs = now - prefillEnd;
    const n = this.generated.length, computedPrompt = this.promptLen - this.cachedTokens;
    this.events.push({
      type: "done",
      result: {
        promptIds: [...s.promptIds],
        generatedIds: this.generated,
        text: this.text,
        finishReason: reason,
        timings: {
          promptTokens: this.promptLen,
          prefillMs,
          prefillTokPerS: prefillMs > 0 && this.prefillEndAt ? (computedPrompt / prefillMs) * 1000 : 0,
          generatedTokens: n,
          decodeMs,
          decodeTokPerS: decodeMs > 0 && n > 1 ? ((n - 1) / decodeMs) * 1000 : 0,
          queueMs: admitted - this.submittedAt,
          cachedTokens: this.cachedTokens,
        },
      },
    });
    this.events.end();
  }

  /** End the event stream with an error (a failed step). */
  fail(e: unknown): void {
    if (this.state === "done") return;
    this.state = "done";
    this.events.fail(e);
  }
}
