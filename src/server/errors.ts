/**
 * OpenAI-style error responses: `{ error: { message, type, param, code } }` with the matching HTTP status.
 * @module
 */
import { LlmError } from "../errors.ts";

/** A request error with its HTTP status and OpenAI error fields. */
export class ApiError extends Error {
  /** HTTP status. */
  readonly status: number;
  /** OpenAI error type, e.g. `invalid_request_error`. */
  readonly type: string;
  /** The request field at fault, or null. */
  readonly param: string | null;
  /** A short machine-readable code, or null. */
  readonly code: string | null;
  /** Extra response headers (Retry-After, WWW-Authenticate). */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = options.type ?? (status >= 500 ? "server_error" : "invalid_request_error");
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  /** The JSON body OpenAI clients parse. */
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** Map any thrown value to an ApiError: LlmErrors by code, anything else as a 500 that names it. */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof LlmError) {
    switch (e.code) {
      case "BAD_REQUEST":
      case "TOKENIZER_MISMATCH":
        return new ApiError(400, e.message, { code: "invalid_value" });
      case "CONTEXT_OVERFLOW":
        return new ApiError(400, e.message, { param: "messages", code: "context_length_exceeded" });
      case "OVERLOADED":
        return new ApiError(429, e.message, {
          type: "rate_limit_error",
          code: "server_overloaded",
          headers: { "retry-after": "1" },
        });
      case "NOT_FOUND":
        return new ApiError(404, e.message, { code: "not_found" });
      case "ABORTED":
        return new ApiError(503, e.message, { type: "server_error", code: "shutting_down" });
      default:
        return new ApiError(500, `${e.code}: ${e.message}`, { code: e.code.toLowerCase() });
    }
  }
  return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, {
    code: "internal_error",
  });
}

/** A JSON response. */
export function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** The response for an error. */
export function errorResponse(e: ApiError): Response {
  return jsonResponse(e.status, e.body(), e.headers);
}
