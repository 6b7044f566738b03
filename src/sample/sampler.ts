/**
 * Token sampling: penalties, temperature, top-k, top-p, min-p and a seeded RNG.
 *
 * Runtime-agnostic core: no Deno APIs, so it runs in browsers and edge isolates.
 *
 * The pipeline runs in this fixed order (llama.cpp's default chain, minus the exotic samplers):
 *
 * 1. penalties over the recent window: repetition (CTRL style), then frequency and presence (OpenAI style);
 * 2. temperature: `temperature === 0` means greedy argmax (lowest index on ties) and stops here;
 * 3. top-k: keep the k highest logits (partial selection, the vocabulary is never fully sorted);
 * 4. top-p (nucleus): keep the smallest prefix, by descending probability, whose mass reaches `topP` (found by
 *    quickselect after a mass-safe pre-filter, not by sorting the vocabulary);
 * 5. min-p: drop tokens whose probability is below `minP` times the most likely token's;
 * 6. draw one token from what is left, renormalized, walking it in token id order.
 *
 * Steps 2-6 are {@link pickToken} (src/sample/pick.ts), which the `sample` graph op shares, so a backend
 * can make the same choice on the device from the row's settings and this sampler's uniform draw.
 * @module
 */
import { LlmError } from "../errors.ts";
import { PICK_ALL_NEG_INF, PICK_NAN, PickScratch, pickToken } from "./pick.ts";

/** Sampling settings. Every field is optional; the defaults leave the model's distribution untouched. */
export interface SamplingOptions {
  /** Softmax temperature, >= 0. Default 1. 0 means greedy (argmax, lowest token id on ties). */
  temperature?: number;
  /** Keep only the k most likely tokens; integer >= 0. Default 0 (off). */
  topK?: number;
  /** Nucleus sampling: keep the smallest set whose probability mass reaches topP, in (0, 1]. Default 1 (off). */
  topP?: number;
  /** Drop tokens less likely than minP times the most likely token, in [0, 1]. Default 0 (off). */
  minP?: number;
  /**
   * CTRL / llama.cpp repetition penalty, > 0: for each distinct token in the recent window a positive logit is
   * divided by it and a negative logit multiplied by it. Default 1 (off).
   */
  repetitionPenalty?: number;
  /** OpenAI frequency penalty in [-2, 2]: logit -= frequencyPenalty * count in the window. Default 0. */
  frequencyPenalty?: number;
  /** OpenAI presence penalty in [-2, 2]: logit -= presencePenalty once if the token is in the window. Default 0. */
  presencePenalty?: number;
  /** How many of the most recent tokens the penalties look at: integer >= -1; -1 = all, 0 = none. Default 64. */
  penaltyLastN?: number;
  /** RNG seed, a safe integer. The same seed, logits and options give the same tokens. Default: random. */
  seed?: number;
}

/** Sampling options after validation, with every default filled in (`seed` stays undefined when not given). */
export type ValidatedSamplingOptions = Required<Omit<SamplingOptions, "seed">> & { seed: number | undefined };

const DEFAULTS: Required<Omit<SamplingOptions, "seed">> = {
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  frequencyPenalty: 0,
  presencePenalty: 0,
  penaltyLastN: 64,
};

function bad(field: string, value: unknown, allowed: string): never {
  throw new LlmError(
    "BAD_REQUEST",
    `sampling option ${field} must be ${allowed}, got ${
      String(value)
    }: pass a value in that range or leave it out`,
  );
}

function num(o: SamplingOptions, field: keyof SamplingOptions, allowed: string): number | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  // NaN and Infinity pass every `<`/`>` range check silently, so reject them first.
  if (typeof v !== "number" || !Number.isFinite(v)) bad(field, v, allowed);
  return v;
}

/**
 * Check sampling options and fill in defaults. Throws `BAD_REQUEST` naming the field, the value and the allowed
 * range for anything out of range (NaN, negative temperature, topP outside (0, 1], a fractional topK, ...).
 *
 * @example
 * ```ts
 * const o = validateSamplingOptions({ temperature: 0.8, topP: 0.95 });
 * console.log(o.topK); // 0
 * ```
 */
export function validateSamplingOptions(o: SamplingOptions): ValidatedSamplingOptions {
  if (o === null || typeof o !== "object") bad("options", o, "an object");
  const out: ValidatedSamplingOptions = { ...DEFAULTS, seed: undefined };
  const t = num(o, "temperature", "a finite number >= 0 (0 = greedy)");
  if (t !== undefined) {
    out.temperature = t >= 0 ? t : bad("temperature", t, "a finite number >= 0 (0 = greedy)");
  }
  const k = num(o, "topK", "an integer >= 0 (0 = off)");
  if (k !== undefined) {
    out.topK = Number.isInteger(k) && k >= 0 ? k : bad("topK", k, "an integer >= 0 (0 = off)");
  }
  const p = num(o, "topP", "a number in (0, 1] (1 = off)");
  if (p !== undefined) out.topP = p > 0 && p <= 1 ? p : bad("topP", p, "a number in (0, 1] (1 = off)");
  const m = num(o, "minP", "a number in [0, 1] (0 = off)");
  if (m !== undefined) out.minP = m >= 0 && m <= 1 ? m : bad("minP", m, "a number in [0, 1] (0 = off)");
  const r = num(o, "repetitionPenalty", "a number > 0 (1 = off, typical 1.1)");
  if (r !== undefined) {
    out.repetitionPenalty = r > 0 ? r : bad("repetitionPenalty", r, "a number > 0 (1 = off, typical 1.1)");
  }
  // [-2, 2] is OpenAI's documented range; beyond it the penalty swamps the logits of any real model.
  const f = num(o, "frequencyPenalty", "a number in [-2, 2] (0 = off)");
  if (f !== undefined) {
    out.frequencyPenalty = Math.abs(f) <= 2 ? f : bad("frequencyPenalty", f, "a number in [-2, 2]");
  }
  const pr = num(o, "presencePenalty", "a number in [-2, 2] (0 = off)");
  if (pr !== undefined) {
    out.presencePenalty = Math.abs(pr) <= 2 ? pr : bad("presencePenalty", pr, "a number in [-2, 2]");
  }
  const n = num(o, "penaltyLastN", "an integer >= -1 (-1 = whole context, 0 = off)");
  if (n !== undefined) {
    out.penaltyLastN = Number.isInteger(n) && n >= -1
      ? n
      : bad("penaltyLastN", n, "an integer >= -1 (-1 = whole context, 0 = off)");
  }
  const s = num(o, "seed", "a safe integer");
  if (s !== undefined) out.seed = Number.isSafeInteger(s) ? s : bad("seed", s, "a safe integer");
  return out;
}

/** SplitMix32 step: spreads a seed's bits so nearby seeds give unrelated xoshiro states. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * xoshiro128** (Blackman & Vigna): 128-bit state, fast in 32-bit integer arithmetic, good enough statistically
 * for sampling, and identical on every JS engine, which is what makes seeded runs reproducible.
 */
class Xoshiro128 {
  #s = new Uint32Array(4);

  constructor(seed: number) {
    // Both halves of a safe integer feed the state, so seeds that differ only above bit 32 still differ.
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) >>> 0;
    let x = splitmix32(lo ^ 0x5bd1e995);
    for (let i = 0; i < 4; i++) {
      x = splitmix32(x ^ (i === 1 ? hi : 0));
      this.#s[i] = x;
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1; // all-zero state is a fixpoint
  }

  /** Next uniform float in [0, 1). */
  next(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A random seed for unseeded samplers; crypto where available, since seeds must differ across isolates. */
function randomSeed(): number {
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint32Array) => Uint32Array } }).crypto;
  if (c?.getRandomValues) return c.getRandomValues(new Uint32Array(1))[0];
  return Math.floor(Math.random() * 4294967296);
}

/**
 * Picks the next token from a logits vector. Stateful only through its RNG: the same seed and the same
 * sequence of `sample` calls give the same tokens.
 *
 * @example
 * ```ts
 * const sampler = new Sampler(32000, { temperature: 0.7, topP: 0.9, seed: 42 });
 * const next = sampler.sample(logits, tokensSoFar);
 * console.log(sampler.seed); // 42; pass it back to reproduce an unseeded run
 * ```
 */
export class Sampler {
  /** The vocabulary size every logits vector must have. */
  readonly vocabSize: number;
  /** The validated options in effect. */
  readonly options: ValidatedSamplingOptions;
  /** The seed in use: the one passed in, or the random one picked when none was given. */
  readonly seed: number;
  #rng: Xoshiro128;
  /** Uniforms drawn from the RNG ahead of use (peeked), oldest first; the next draws come from here. */
  #ahead: number[] = [];
  // Reused between calls so a 128k-vocab step does not allocate megabytes each token.
  #work: Float32Array | undefined;
  #scratch = new PickScratch();

  /** Create a sampler for logits of length `vocabSize`; throws BAD_REQUEST for invalid options. */
  constructor(vocabSize: number, options: SamplingOptions = {}) {
    if (!Number.isSafeInteger(vocabSize) || vocabSize <= 0) {
      throw new LlmError("BAD_REQUEST", `Sampler: vocabSize must be a positive integer, got ${vocabSize}`);
    }
    this.vocabSize = vocabSize;
    this.options = validateSamplingOptions(options);
    this.seed = this.options.seed ?? randomSeed();
    this.#rng = new Xoshiro128(this.seed);
  }

  /**
   * True when the choice is the plain argmax of the logits (temperature 0, no penalties), so a backend
   * may pick the token on the device without reading the logits back.
   */
  get isPlainGreedy(): boolean {
    const o = this.options;
    return o.temperature === 0 && o.repetitionPenalty === 1 && o.frequencyPenalty === 0 &&
      o.presencePenalty === 0;
  }

  /**
   * Choose the next token id. `logits` (length `vocabSize`) is never modified; `history` holds the tokens so
   * far (prompt and generated), of which the last `penaltyLastN` feed the penalties.
   * Throws `INTERNAL` for NaN logits or when every logit is -Infinity (nothing can be chosen).
   */
  sample(logits: Float32Array, history: readonly number[] = []): number {
    const V = this.vocabSize;
    if (logits.length !== V) {
      throw new LlmError(
        "INTERNAL",
        `Sampler: got ${logits.length} logits for a vocabulary of ${V}; the model and the sampler disagree on the vocabulary size`,
      );
    }
    const l = this.#penalize(logits, history);
    const id = pickToken(l, this.options, () => this.#draw(), this.#scratch);
    if (id === PICK_NAN) {
      // A NaN logit means a broken model or kernel, and sampling from it would silently emit garbage.
      throw new LlmError(
        "INTERNAL",
        `Sampler: logit ${
          l.findIndex((v) => v !== v)
        } is NaN; the model or backend kernel produced invalid numbers (try the ref backend to compare)`,
      );
    }
    if (id === PICK_ALL_NEG_INF) {
      throw new LlmError("INTERNAL", `Sampler: all ${V} logits are -Infinity, so no token can be chosen`);
    }
    return id;
  }

  /**
   * True when this sampler's choice depends only on the logits row and one uniform draw (no penalties
   * apply), so a backend with the `sample` op can make it on the device: see {@link devicePick}.
   */
  get canPickOnDevice(): boolean {
    const o = this.options;
    return (o.repetitionPenalty === 1 && o.frequencyPenalty === 0 && o.presencePenalty === 0) ||
      o.penaltyLastN === 0;
  }

  /**
   * The next token's row of `StepParams.sampling` (temperature, topK, topP, minP, u) into `out` at
   * `offset`, drawing u from this sampler's RNG exactly as {@link sample} would (not at temperature 0).
   * The device's choice then equals `sample` on the same logits (up to f64 rounding at a boundary; see
   * src/sample/pick.ts). Only for samplers with {@link canPickOnDevice}. With `ahead`, u is
   * {@link peekUniform}(ahead) and nothing is drawn (the caller commits the draws it keeps).
   */
  devicePick(out: Float64Array, offset: number, options: { ahead?: number } = {}): void {
    const o = this.options;
    out[offset] = o.temperature;
    out[offset + 1] = o.topK;
    out[offset + 2] = o.topP;
    out[offset + 3] = o.minP;
    if (o.temperature === 0) out[offset + 4] = 0;
    else out[offset + 4] = options.ahead === undefined ? this.#draw() : this.peekUniform(options.ahead);
  }

  /**
   * The uniform that the `ahead`-th next draw (0: the very next) will use, without using it up: a
   * decode queued on the device gives each step its uniform before any of their tokens are known, and
   * only the steps whose tokens are kept {@link commitUniforms}, so a queue cut short leaves the RNG
   * where an unqueued run would be.
   *
   * @example
   * ```ts
   * const s = new Sampler(8, { seed: 3 });
   * const u = s.peekUniform(0);
   * s.commitUniforms(1); // the token drawn with u was kept
   * ```
   */
  peekUniform(ahead: number): number {
    if (!(Number.isInteger(ahead) && ahead >= 0 && ahead < 1 << 20)) {
      throw new LlmError("INTERNAL", `Sampler: peekUniform(${ahead}) needs an integer in 0..2^20`);
    }
    while (this.#ahead.length <= ahead) this.#ahead.push(this.#rng.next());
    return this.#ahead[ahead];
  }

  /** Use up the next `n` draws (peeked or not), as `n` samples at a temperature above 0 would. */
  commitUniforms(n: number): void {
    for (let i = 0; i < n; i++) this.#draw();
  }

  /** The next uniform: a peeked one first. */
  #draw(): number {
    return this.#ahead.length ? this.#ahead.shift()! : this.#rng.next();
  }

  /** Apply the penalties to a private copy (or return `logits` itself when none applies). */
  #penalize(logits: Float32Array, history: readonly number[]): Float32Array {
    const o = this.options;
    const active = o.repetitionPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0;
    const lastN = o.penaltyLastN === -1 ? history.length : Math.min(o.penaltyLastN, history.length);
    if (!active || lastN === 0) return logits;
    const counts = new Map<number, number>();
    for (let i = history.length - lastN; i < history.length; i++) {
      const t = history[i];
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) {
        throw new LlmError(
          "BAD_REQUEST",
          `Sampler: history[${i}] = ${t} is not a token id of this vocabulary (0..${this.vocabSize - 1})`,
        );
      }
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    if (this.#work === undefined) this.#work = new Float32Array(this.vocabSize);
    const w = this.#work;
    w.set(logits);
    for (const [t, c] of counts) {
      let v = w[t];
      // Dividing a negative logit would raise it, i.e. reward repetition; CTRL multiplies those instead.
      v = v <= 0 ? v * o.repetitionPenalty : v / o.repetitionPenalty;
      v -= c * o.frequencyPenalty + o.presencePenalty;
      w[t] = v;
    }
    return w;
  }
}
