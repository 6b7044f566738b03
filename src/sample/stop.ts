/**
 * Streaming stop-string detection over decoded text chunks.
 *
 * Runtime-agnostic core: no Deno APIs. Matching is on exact UTF-16 code units (no Unicode normalization), the
 * same as OpenAI's `stop` parameter behaves in practice.
 * @module
 */
import { LlmError } from "../errors.ts";

/** The most stop strings one request may carry; OpenAI allows 4, llama.cpp servers more, 16 covers both. */
export const MAX_STOPS = 16;

/** Result of {@link StopMatcher.push}. */
export interface StopPushResult {
  /** Text that is safe to show: it cannot become part of a stop string any more. */
  emit: string;
  /** True once a stop string has been seen; the stop string and everything after it are never emitted. */
  stopped: boolean;
}

/**
 * Finds stop strings in a stream of text chunks. Text that could still be the start of a stop string is held
 * back until the next chunk decides it, so a stop split across chunks is still caught and never shown.
 *
 * @example
 * ```ts
 * const m = new StopMatcher(["\nUser:"]);
 * m.push("Hello\nUs"); // { emit: "Hello", stopped: false }
 * m.push("er: hi");    // { emit: "", stopped: true }
 * ```
 */
export class StopMatcher {
  readonly #stops: readonly string[];
  #held = "";
  #stopped = false;
  #matched: string | undefined;

  /** Create a matcher; throws BAD_REQUEST for empty or non-string stops, or more than {@link MAX_STOPS}. */
  constructor(stops: readonly string[]) {
    if (!Array.isArray(stops)) {
      throw new LlmError("BAD_REQUEST", `stop must be an array of strings, got ${typeof stops}`);
    }
    if (stops.length > MAX_STOPS) {
      throw new LlmError(
        "BAD_REQUEST",
        `stop has ${stops.length} strings; at most ${MAX_STOPS} are allowed: drop some of them`,
      );
    }
    for (let i = 0; i < stops.length; i++) {
      const s = stops[i];
      if (typeof s !== "string" || s.length === 0) {
        throw new LlmError(
          "BAD_REQUEST",
          `stop[${i}] must be a non-empty string, got ${
            JSON.stringify(s)
          }: an empty stop would end every generation at once`,
        );
      }
    }
    this.#stops = [...stops];
  }

  /** Whether a stop string has been seen. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** The stop string that ended the stream, once `stopped`. */
  get matched(): string | undefined {
    return this.#matched;
  }

  /** Feed the next decoded chunk; returns what can be shown now. After a stop, always `{ emit: "", stopped: true }`. */
  push(text: string): StopPushResult {
    if (this.#stopped) return { emit: "", stopped: true };
    const buf = this.#held + text;
    // The earliest stop wins, whichever string it is: text before it is all the user may see.
    let at = -1;
    for (const s of this.#stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        this.#matched = s;
      }
    }
    if (at >= 0) {
      this.#stopped = true;
      this.#held = "";
      return { emit: buf.slice(0, at), stopped: true };
    }
    let keep = this.#partialSuffix(buf);
    // Never emit half of a surrogate pair: a chunk boundary inside an emoji would print two U+FFFD.
    const cut = buf.length - keep;
    if (cut > 0 && isHighSurrogate(buf.charCodeAt(cut - 1))) keep++;
    this.#held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stopped: false };
  }

  /** End of stream: returns the held-back text (it turned out not to be a stop), or "" after a stop. */
  flush(): string {
    const out = this.#stopped ? "" : this.#held;
    this.#held = "";
    return out;
  }

  /**
   * Length of the longest suffix of `buf` that is a proper prefix of some stop. Any future match must start
   * inside that suffix (no full match is in `buf`), so everything before it is safe to emit.
   */
  #partialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.#stops) {
      const max = Math.min(s.length - 1, buf.length);
      for (let n = max; n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
