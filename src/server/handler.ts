/**
 * An OpenAI-compatible HTTP service as one fetch handler (`Request` in, `Response` out): no runtime APIs,
 * so Deno.serve, edge isolates and tests can all host it. Endpoints: POST /v1/completions, POST
 * /v1/chat/completions (streaming over server-sent events), GET /v1/models, GET /health, GET /metrics.
 * Generations go through the engine's scheduler, so concurrent requests share batched steps; a client that
 * disconnects cancels its sequence, a full queue answers 429 with Retry-After.
 * @module
 */
import type { Engine } from "../engine/engine.ts";
import type { GenerateEvent, GenerationHandle, GenerationResult } from "../engine/generation.ts";
import { ApiError, errorResponse, jsonResponse, toApiError } from "./errors.ts";
import { type ParsedRequest, parseRequest } from "./openai_request.ts";
import { ChatTemplate } from "./chat_template.ts";
import { ServerMetrics } from "./metrics.ts";

/** Options for {@link createServeHandler}. */
export interface ServeOptions {
  /** The engine, or a promise of it: until it resolves, /health answers 503 and generation requests 503. */
  readonly engine: Engine | Promise<Engine>;
  /** The model id clients must name (GET /v1/models lists it). Default "llama.ts". */
  readonly modelName?: string;
  /** When set, /v1/* and /metrics need `Authorization: Bearer <apiKey>` (compared in constant time). */
  readonly apiKey?: string;
  /**
   * The model's Jinja chat template (or a function giving it once the engine is ready); without one a
   * plain-text fallback is used.
   */
  readonly chatTemplate?: string | (() => string | undefined);
  /** Largest request body in bytes (default 8 MiB); larger bodies get 413. */
  readonly maxBodyBytes?: number;
  /** Extra gauges for /metrics from the host runtime (e.g. process memory), name to value. */
  readonly processMetrics?: () => Record<string, number>;
}

/** A fetch handler with its metrics. */
export interface ServeHandler {
  /** Answer one request. Never throws: every failure is an OpenAI-style error response. */
  fetch(request: Request): Promise<Response>;
  /** The server's metrics (also served at GET /metrics). */
  readonly metrics: ServerMetrics;
  /** Whether the model is loaded. */
  ready(): boolean;
}

const enc = new TextEncoder();
const nowS = (): number => performance.now() / 1000;

/** Compare a presented key with the expected one in time that depends only on the expected key's length. */
export function constantTimeEqual(given: string, expected: string): boolean {
  const a = enc.encode(given), b = enc.encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

async function readJson(req: Request, limit: number): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) {
    throw new ApiError(413, `the request body is ${declared} bytes; at most ${limit} are accepted`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    const reader = req.body.getReader();
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel();
        throw new ApiError(413, `the request body exceeds ${limit} bytes`);
      }
      chunks.push(value);
    }
  }
  const bytes = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    bytes.set(c, off);
    off += c.byteLength;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "the request body is not valid UTF-8", { code: "invalid_json" });
  }
  if (text.trim() === "") {
    throw new ApiError(400, "the request body is empty; send a JSON object", { code: "invalid_json" });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, {
      code: "invalid_json",
    });
  }
}

function sseText(data: unknown): string {
  return `data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

function usageOf(r: GenerationResult): Usage {
  const p = r.promptIds.length, c = r.generatedIds.length;
  return {
    prompt_tokens: p,
    completion_tokens: c,
    total_tokens: p + c,
    prompt_tokens_details: { cached_tokens: r.timings.cachedTokens },
  };
}

const finishOf = (r: GenerationResult): "stop" | "length" => r.finishReason === "length" ? "length" : "stop";

/**
 * Create the OpenAI-compatible fetch handler over an engine.
 *
 * @example
 * ```ts
 * import { createEngine, createServeHandler } from "@llama-ts/llama";
 * const engine = createEngine("stories260K.bin", { tokenizer: "tok512.bin", maxBatch: 16 });
 * const handler = createServeHandler({ engine, modelName: "stories260K" });
 * Deno.serve({ port: 8080 }, handler.fetch);
 * ```
 */
export function createServeHandler(options: ServeOptions): ServeHandler {
  const metrics = new ServerMetrics();
  const modelName = options.modelName ?? "llama.ts";
  const maxBody = options.maxBodyBytes ?? 8 << 20;
  const created = Math.floor(Date.now() / 1000);
  let engine: Engine | undefined;
  let template: ChatTemplate | undefined;
  let loadError: string | undefined;
  const attach = (e: Engine): void => {
    const tk = e.tokenizer;
    const text = (id: number | undefined): string | undefined =>
      id === undefined ? undefined : tk.tokenText(id);
    const source = typeof options.chatTemplate === "function" ? options.chatTemplate() : options.chatTemplate;
    template = new ChatTemplate(source, {
      bosToken: text(tk.bosId),
      eosToken: text(tk.eosIds[0]),
    });
    e.onStep = (info) => metrics.step(info);
    engine = e;
  };
  const given = options.engine;
  if (given instanceof Promise) {
    const failed = (err: unknown): void => {
      loadError = (err as Error)?.message ?? String(err);
    };
    given.then((e) => {
      try {
        attach(e);
      } catch (err) {
        failed(err);
      }
    }, failed);
  } else attach(given);

  function authorized(req: Request): boolean {
    if (options.apiKey === undefined) return true;
    const h = req.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(.*)$/i.exec(h);
    return constantTimeEqual(m ? m[1].trim() : "", options.apiKey);
  }

  function ready(): Engine {
    if (engine) return engine;
    throw new ApiError(
      503,
      loadError ? `the model failed to load: ${loadError}` : "the model is still loading; retry shortly",
      {
        type: "server_error",
        code: loadError ? "model_load_failed" : "model_loading",
        headers: loadError ? {} : { "retry-after": "5" },
      },
    );
  }

  /** Prompt ids and the stop strings of a request. */
  function encode(e: Engine, p: ParsedRequest): { ids: number[]; stops: string[]; promptText?: string } {
    if (p.kind === "chat") {
      const text = template!.render(p.messages!);
      const ids = e.tokenizer.encode(text, { addBos: !template!.startsWithBos(text), parseSpecial: true });
      return { ids, stops: [...p.stop, ...template!.stops] };
    }
    const ids = typeof p.prompt === "string" ? e.tokenizer.encode(p.prompt) : p.prompt!;
    return {
      ids,
      stops: p.stop,
      promptText: typeof p.prompt === "string" ? p.prompt : e.tokenizer.decode(ids),
    };
  }

  async function generate(req: Request, kind: "completion" | "chat", t0: number): Promise<Response> {
    const e = ready();
    const p = parseRequest(kind, await readJson(req, maxBody), {
      contextSize: e.contextSize,
      vocabSize: e.config.vocabSize,
    });
    if (p.model !== modelName) {
      throw new ApiError(404, `the model '${p.model}' does not exist; this server serves '${modelName}'`, {
        param: "model",
        code: "model_not_found",
      });
    }
    const { ids, stops, promptText } = encode(e, p);
    if (ids.length === 0) throw new ApiError(400, "the prompt encodes to no tokens", { param: "prompt" });
    if (ids.length >= e.contextSize) {
      throw new ApiError(
        400,
        `this model's context holds ${e.contextSize} tokens, but the prompt has ${ids.length} ` +
          `(and at least one more is needed to generate); shorten the ${
            kind === "chat" ? "messages" : "prompt"
          } ` +
          `by at least ${ids.length - e.contextSize + 1} tokens`,
        { param: kind === "chat" ? "messages" : "prompt", code: "context_length_exceeded" },
      );
    }
    const maxTokens = p.maxTokens ?? (kind === "completion" ? 16 : e.contextSize - ids.length);
    const h = e.submit(ids, {
      ...p.sampling,
      maxTokens,
      stop: stops,
      ignoreEos: p.ignoreEos,
    });
    metrics.inFlight(1);
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${crypto.randomUUID().replaceAll("-", "")}`;
    const created = Math.floor(Date.now() / 1000);
    const echo = p.echo ? promptText ?? "" : "";
    const track = tracker(t0, req.signal);
    if (!p.stream) {
      let result: GenerationResult | undefined;
      let text = "";
      // a client that goes away before the answer cancels the generation (streams see it as a cancel)
      const onAbort = (): void => h.cancel();
      req.signal.addEventListener("abort", onAbort);
      try {
        for await (const ev of h.events) {
          track.event(ev);
          if (ev.type === "token") text += ev.text;
          else result = ev.result;
        }
      } finally {
        req.signal.removeEventListener("abort", onAbort);
        track.end(result);
      }
      const r = result!;
      const choice = kind === "chat"
        ? {
          index: 0,
          message: { role: "assistant", content: text, refusal: null },
          logprobs: null,
          finish_reason: finishOf(r),
        }
        : { index: 0, text: echo + text, logprobs: null, finish_reason: finishOf(r) };
      return jsonResponse(200, {
        id,
        object: kind === "chat" ? "chat.completion" : "text_completion",
        created,
        model: modelName,
        choices: [choice],
        usage: usageOf(r),
        system_fingerprint: null,
      });
    }
    return streamResponse(h, { kind, id, created, echo, includeUsage: p.includeUsage, track });
  }

  interface Tracker {
    event(ev: GenerateEvent): void;
    end(result: GenerationResult | undefined, disconnected?: boolean): void;
  }

  /** Latency metrics of one generation. */
  function tracker(t0: number, signal: AbortSignal): Tracker {
    let last = 0, ended = false;
    return {
      event(ev) {
        if (ev.type !== "token" || ev.id < 0) return;
        const t = nowS();
        if (last === 0) metrics.firstToken(t - t0);
        else metrics.interToken(t - last);
        last = t;
      },
      end(result, disconnected = false) {
        if (ended) return;
        ended = true;
        metrics.inFlight(-1);
        if (result) {
          metrics.tokens(result.promptIds.length, result.timings.cachedTokens, result.generatedIds.length);
          metrics.requestDone(nowS() - t0);
        }
        if (disconnected || signal.aborted || result?.finishReason === "abort") metrics.disconnect();
      },
    };
  }

  function streamResponse(
    h: GenerationHandle,
    s: {
      kind: "completion" | "chat";
      id: string;
      created: number;
      echo: string;
      includeUsage: boolean;
      track: Tracker;
    },
  ): Response {
    const object = s.kind === "chat" ? "chat.completion.chunk" : "text_completion";
    const chunk = (choice: Record<string, unknown> | undefined, usage?: Usage | null): string =>
      sseText({
        id: s.id,
        object,
        created: s.created,
        model: modelName,
        system_fingerprint: null,
        choices: choice ? [choice] : [],
        ...(s.includeUsage ? { usage: usage ?? null } : {}),
      });
    // A token's event is the JSON of `chunk(delta(text))` built from fixed parts (the same bytes, without
    // stringifying the whole object for every token).
    const head = `data: {"id":${JSON.stringify(s.id)},"object":"${object}","created":${s.created},` +
      `"model":${JSON.stringify(modelName)},"system_fingerprint":null,"choices":[{"index":0,`;
    const tail = `,"logprobs":null,"finish_reason":null}]${s.includeUsage ? ',"usage":null' : ""}}\n\n`;
    const tokenEvent = (text: string, first: boolean): string =>
      head + (s.kind === "chat"
        ? (first ? '"delta":{"role":"assistant","content":' : '"delta":{"content":') + JSON.stringify(text) +
          "}"
        : '"text":' + JSON.stringify(text)) +
      tail;
    const it = h.events[Symbol.asyncIterator]();
    let first = true, done = false;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        if (s.kind === "chat" || s.echo) {
          controller.enqueue(enc.encode(tokenEvent(s.echo, true)));
          first = false;
        }
      },
      async pull(controller) {
        try {
          while (true) {
            const { value: ev, done: end } = await it.next();
            if (end) {
              if (!done) throw new Error("the generation ended without a result");
              controller.close();
              return;
            }
            // with the first event, every event already queued (a step's token, or several when this
            // client reads slower than steps run): one write for all of them
            let out = "";
            for (const e of [ev, ...h.drain()]) {
              s.track.event(e);
              if (e.type === "token") {
                if (e.text === "") continue;
                out += tokenEvent(e.text, first);
                first = false;
                continue;
              }
              done = true;
              s.track.end(e.result);
              const fin = s.kind === "chat"
                ? { index: 0, delta: {}, logprobs: null, finish_reason: finishOf(e.result) }
                : { index: 0, text: "", logprobs: null, finish_reason: finishOf(e.result) };
              out += chunk(fin);
              if (s.includeUsage) out += chunk(undefined, usageOf(e.result));
              out += sseText("[DONE]");
            }
            if (out === "") continue;
            controller.enqueue(enc.encode(out));
            return;
          }
        } catch (e) {
          s.track.end(undefined);
          const err = toApiError(e);
          controller.enqueue(enc.encode(sseText(err.body()) + sseText("[DONE]")));
          controller.close();
        }
      },
      cancel() {
        // the client went away: stop the sequence so its KV blocks are freed at the next step
        h.cancel();
        s.track.end(undefined, true);
        void it.return?.();
      },
    });
    return new Response(stream, {
      status: 200,
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
      },
    });
  }

  async function route(req: Request, path: string, t0: number): Promise<Response> {
    if (path === "/health") {
      if (engine) return jsonResponse(200, { status: "ok" });
      return jsonResponse(503, {
        status: loadError ? "error" : "loading",
        ...(loadError ? { error: loadError } : {}),
      });
    }
    if (!path.startsWith("/v1/") && path !== "/metrics") {
      throw new ApiError(
        404,
        `no route ${req.method} ${path}; see /v1/models, /v1/completions, /v1/chat/completions`,
        {
          code: "not_found",
        },
      );
    }
    if (!authorized(req)) {
      throw new ApiError(401, "missing or incorrect API key; send it as 'Authorization: Bearer <key>'", {
        code: "invalid_api_key",
        headers: { "www-authenticate": "Bearer" },
      });
    }
    const method = (want: string): void => {
      if (req.method !== want) {
        throw new ApiError(405, `${path} takes ${want}, not ${req.method}`, {
          code: "method_not_allowed",
          headers: { allow: want },
        });
      }
    };
    switch (path) {
      case "/metrics":
        method("GET");
        return new Response(
          metrics.render(engine?.stats(), engine !== undefined, options.processMetrics?.()),
          {
            headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
          },
        );
      case "/v1/models":
        method("GET");
        return jsonResponse(200, {
          object: "list",
          data: [{ id: modelName, object: "model", created, owned_by: "llama.ts" }],
        });
      case "/v1/completions":
        method("POST");
        return await generate(req, "completion", t0);
      case "/v1/chat/completions":
        method("POST");
        return await generate(req, "chat", t0);
    }
    if (path.startsWith("/v1/models/")) {
      method("GET");
      const name = decodeURIComponent(path.slice("/v1/models/".length));
      if (name !== modelName) {
        throw new ApiError(404, `the model '${name}' does not exist`, { code: "model_not_found" });
      }
      return jsonResponse(200, { id: modelName, object: "model", created, owned_by: "llama.ts" });
    }
    throw new ApiError(404, `no route ${req.method} ${path}`, { code: "not_found" });
  }

  return {
    metrics,
    ready: () => engine !== undefined,
    async fetch(req: Request): Promise<Response> {
      const t0 = nowS();
      let path = "/";
      try {
        path = new URL(req.url).pathname;
      } catch { /* keep "/" */ }
      let res: Response;
      try {
        res = await route(req, path, t0);
      } catch (e) {
        res = errorResponse(toApiError(e));
      }
      const known = ["/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"];
      metrics.request(known.includes(path) ? path : "other", res.status);
      return res;
    },
  };
}
