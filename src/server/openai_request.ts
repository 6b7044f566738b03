/**
 * Validation of OpenAI completion and chat-completion request bodies. Every field is checked for type and
 * range; anything wrong is an {@link ApiError} (400) naming the field and the value. Unknown fields are
 * ignored, as OpenAI-compatible servers commonly do, so newer clients keep working.
 * @module
 */
import { ApiError } from "./errors.ts";

/** A chat message after validation (content flattened to text). */
export interface ChatMessage {
  readonly role: "system" | "user" | "assistant" | "developer" | "tool";
  readonly content: string;
}

/** Sampling fields of a request, in the engine's names. */
export interface RequestSampling {
  temperature: number;
  topP: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
  frequencyPenalty?: number;
  presencePenalty?: number;
  seed?: number;
}

/** A validated request. */
export interface ParsedRequest {
  readonly kind: "completion" | "chat";
  readonly model: string;
  /** completion: text or token ids. */
  readonly prompt?: string | number[];
  /** chat: the conversation. */
  readonly messages?: ChatMessage[];
  /** Most new tokens, when given. */
  readonly maxTokens?: number;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  /** completion: put the prompt before the completion text. */
  readonly echo: boolean;
  readonly sampling: RequestSampling;
  readonly stop: string[];
  /** Extension (vLLM's name): keep generating past end-of-sequence. */
  readonly ignoreEos: boolean;
}

const MAX_STOPS = 8; // OpenAI allows 4; the chat template may add its own
const MAX_MESSAGES = 4096;
const MAX_TEXT = 1 << 22; // 4 Mi characters: far beyond any context, small enough to never hurt

function bad(param: string, message: string, code = "invalid_value"): never {
  throw new ApiError(400, message, { param, code });
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "..." : v);
  if (Array.isArray(v)) return "an array";
  if (v === null) return "null";
  if (typeof v === "object") return "an object";
  return String(v);
}

interface NumRule {
  min?: number;
  max?: number;
  gt?: number;
  integer?: boolean;
}

function num(body: Record<string, unknown>, name: string, rule: NumRule): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  const range = [
    rule.integer ? "an integer" : "a number",
    rule.gt !== undefined ? `> ${rule.gt}` : rule.min !== undefined ? `>= ${rule.min}` : "",
    rule.max !== undefined ? `<= ${rule.max}` : "",
  ].filter(Boolean).join(" ");
  if (typeof v !== "number" || !Number.isFinite(v)) {
    bad(name, `${name} must be ${range}, got ${describe(v)}`, "invalid_type");
  }
  const ok = (!rule.integer || Number.isSafeInteger(v)) && (rule.min === undefined || v >= rule.min) &&
    (rule.gt === undefined || v > rule.gt) && (rule.max === undefined || v <= rule.max);
  if (!ok) bad(name, `${name} must be ${range}, got ${v}`);
  return v;
}

function bool(body: Record<string, unknown>, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") bad(name, `${name} must be true or false, got ${describe(v)}`, "invalid_type");
  return v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function tokenIds(v: unknown[], param: string, vocabSize: number): number[] {
  return v.map((id, i) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      bad(param, `${param}[${i}] must be a token id in 0..${vocabSize - 1}, got ${describe(id)}`);
    }
    return id;
  });
}

function prompt(body: Record<string, unknown>, vocabSize: number): string | number[] {
  const p = body.prompt;
  if (typeof p === "string") {
    if (p.length > MAX_TEXT) bad("prompt", `prompt has ${p.length} characters; at most ${MAX_TEXT}`);
    return p;
  }
  if (Array.isArray(p)) {
    if (p.length === 0) bad("prompt", "prompt must not be empty");
    if (p.every((x) => typeof x === "number")) {
      if (p.length > MAX_TEXT) bad("prompt", `prompt has ${p.length} tokens; at most ${MAX_TEXT}`);
      return tokenIds(p, "prompt", vocabSize);
    }
    if (p.length === 1) {
      const only = p[0];
      if (typeof only === "string") return prompt({ prompt: only }, vocabSize);
      if (Array.isArray(only)) return prompt({ prompt: only }, vocabSize);
    }
    bad(
      "prompt",
      "prompt must be a string, an array of token ids, or one of those in an array of one (batches of prompts are not supported: send one request per prompt)",
    );
  }
  if (p === undefined || p === null) bad("prompt", "prompt is required", "missing_required_parameter");
  bad("prompt", `prompt must be a string or an array of token ids, got ${describe(p)}`, "invalid_type");
}

const ROLES = new Set(["system", "user", "assistant", "developer", "tool"]);

function messages(body: Record<string, unknown>): ChatMessage[] {
  const m = body.messages;
  if (m === undefined || m === null) bad("messages", "messages is required", "missing_required_parameter");
  if (!Array.isArray(m)) bad("messages", `messages must be an array, got ${describe(m)}`, "invalid_type");
  if (m.length === 0) bad("messages", "messages must hold at least one message");
  if (m.length > MAX_MESSAGES) bad("messages", `messages has ${m.length} entries; at most ${MAX_MESSAGES}`);
  let chars = 0;
  return m.map((msg, i) => {
    const param = `messages[${i}]`;
    if (!isRecord(msg)) {
      bad(param, `${param} must be an object with role and content, got ${describe(msg)}`, "invalid_type");
    }
    if (typeof msg.role !== "string" || !ROLES.has(msg.role)) {
      bad(
        `${param}.role`,
        `${param}.role must be one of ${[...ROLES].join(", ")}, got ${describe(msg.role)}`,
      );
    }
    let content: string;
    if (typeof msg.content === "string") content = msg.content;
    else if (msg.content === null && msg.role === "assistant") content = "";
    else if (Array.isArray(msg.content)) {
      content = msg.content.map((part, j) => {
        if (!isRecord(part) || part.type !== "text" || typeof part.text !== "string") {
          bad(
            `${param}.content[${j}]`,
            `${param}.content[${j}] must be {"type": "text", "text": "..."}; this model reads text only`,
          );
        }
        return part.text;
      }).join("");
    } else {
      bad(
        `${param}.content`,
        `${param}.content must be a string or an array of text parts, got ${describe(msg.content)}`,
        "invalid_type",
      );
    }
    chars += content.length;
    if (chars > MAX_TEXT) bad("messages", `messages hold over ${MAX_TEXT} characters`);
    return { role: msg.role as ChatMessage["role"], content };
  });
}

function stops(body: Record<string, unknown>): string[] {
  const s = body.stop;
  if (s === undefined || s === null) return [];
  const list = typeof s === "string" ? [s] : s;
  if (!Array.isArray(list) || !list.every((x) => typeof x === "string" && x.length > 0 && x.length <= 256)) {
    bad(
      "stop",
      `stop must be a non-empty string or an array of them (each at most 256 characters), got ${describe(s)}`,
    );
  }
  if (list.length > MAX_STOPS) bad("stop", `stop has ${list.length} strings; at most ${MAX_STOPS}`);
  return list;
}

/** Fields that are valid OpenAI but that this server cannot honour: refuse rather than ignore. */
function unsupported(body: Record<string, unknown>, kind: "completion" | "chat"): void {
  const n = num(body, "n", { min: 1, max: 1, integer: true });
  void n;
  num(body, "best_of", { min: 1, max: 1, integer: true });
  if (kind === "completion") {
    if (body.logprobs !== undefined && body.logprobs !== null && body.logprobs !== 0) {
      bad("logprobs", "logprobs are not supported by this server; leave logprobs out");
    }
    if (body.suffix !== undefined && body.suffix !== null && body.suffix !== "") {
      bad("suffix", "suffix (insertion) is not supported by this server; leave suffix out");
    }
  } else {
    if (body.logprobs === true) {
      bad("logprobs", "logprobs are not supported by this server; leave logprobs out");
    }
    if (Array.isArray(body.tools) && body.tools.length > 0) {
      bad("tools", "tool calling is not supported by this server; leave tools out");
    }
    const rf = body.response_format;
    if (rf !== undefined && rf !== null && !(isRecord(rf) && rf.type === "text")) {
      bad("response_format", 'only response_format {"type": "text"} is supported');
    }
  }
  const lb = body.logit_bias;
  if (lb !== undefined && lb !== null && !(isRecord(lb) && Object.keys(lb).length === 0)) {
    bad("logit_bias", "logit_bias is not supported by this server; leave it out");
  }
}

/**
 * Validate a parsed JSON body. `contextSize` bounds max_tokens; `vocabSize` bounds token-id prompts.
 * Throws ApiError 400 for anything malformed.
 */
export function parseRequest(
  kind: "completion" | "chat",
  body: unknown,
  limits: { contextSize: number; vocabSize: number },
): ParsedRequest {
  if (!isRecord(body)) {
    bad("body", `the request body must be a JSON object, got ${describe(body)}`, "invalid_type");
  }
  if (typeof body.model !== "string" || body.model.length === 0) {
    bad(
      "model",
      body.model === undefined ? "model is required" : `model must be a string, got ${describe(body.model)}`,
      body.model === undefined ? "missing_required_parameter" : "invalid_type",
    );
  }
  unsupported(body, kind);
  const maxTokens = num(
    body,
    kind === "chat" && body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens",
    {
      min: 0,
      max: limits.contextSize,
      integer: true,
    },
  );
  const so = body.stream_options;
  if (so !== undefined && so !== null && !isRecord(so)) {
    bad("stream_options", "stream_options must be an object", "invalid_type");
  }
  const includeUsage = isRecord(so) ? bool(so, "include_usage") ?? false : false;
  const topK = num(body, "top_k", { min: -1, integer: true, max: limits.vocabSize });
  return {
    kind,
    model: body.model,
    prompt: kind === "completion" ? prompt(body, limits.vocabSize) : undefined,
    messages: kind === "chat" ? messages(body) : undefined,
    maxTokens,
    stream: bool(body, "stream") ?? false,
    includeUsage,
    echo: kind === "completion" ? bool(body, "echo") ?? false : false,
    sampling: {
      temperature: num(body, "temperature", { min: 0, max: 2 }) ?? 1,
      topP: num(body, "top_p", { gt: 0, max: 1 }) ?? 1,
      topK: topK === -1 ? 0 : topK,
      minP: num(body, "min_p", { min: 0, max: 1 }),
      repetitionPenalty: num(body, "repetition_penalty", { gt: 0, max: 10 }),
      frequencyPenalty: num(body, "frequency_penalty", { min: -2, max: 2 }),
      presencePenalty: num(body, "presence_penalty", { min: -2, max: 2 }),
      seed: num(body, "seed", { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER, integer: true }),
    },
    stop: stops(body),
    ignoreEos: bool(body, "ignore_eos") ?? false,
  };
}
