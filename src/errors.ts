/**
 * The one error type of llama.ts. Codes are stable and safe to switch on; messages say what failed,
 * the offending value, and what to do next.
 * @module
 */

/** Stable error codes. */
export type LlmErrorCode =
  | "MODEL_FORMAT"
  | "UNSUPPORTED_DTYPE"
  | "UNSUPPORTED_MODEL"
  | "TOKENIZER_MISMATCH"
  | "TOKENIZER_FORMAT"
  | "BACKEND_UNAVAILABLE"
  | "OUT_OF_MEMORY"
  | "CONTEXT_OVERFLOW"
  | "BAD_REQUEST"
  | "NETWORK"
  | "NOT_FOUND"
  | "ABORTED"
  | "OVERLOADED"
  | "INTERNAL";

/**
 * An error with a stable `code`.
 *
 * @example
 * ```ts
 * import { LlmError } from "@llama-ts/llama";
 * try {
 *   throw new LlmError("BAD_REQUEST", "temperature must be >= 0, got -1: pass a value like 0.8");
 * } catch (e) {
 *   if (e instanceof LlmError && e.code === "BAD_REQUEST") console.error(e.message);
 * }
 * ```
 */
export class LlmError extends Error {
  /** The stable code. */
  readonly code: LlmErrorCode;
  /** Create an error; `cause` keeps the underlying error. */
  constructor(code: LlmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LlmError";
    this.code = code;
  }
}

/** Throw `MODEL_FORMAT` unless `cond` holds. Used by the parsers to validate untrusted bytes. */
export function formatCheck(cond: unknown, message: string): asserts cond {
  if (!cond) throw new LlmError("MODEL_FORMAT", message);
}
