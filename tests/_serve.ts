/**
 * Test helpers for the HTTP service: an engine on stories260K, the handler served on loopback, and an SSE
 * reader.
 * @module
 */
import { createServeHandler, Engine, type EngineOptions, loadModel, type ServeOptions } from "../mod.ts";
import type { ServeHandler } from "../src/server/handler.ts";
import { sharedModel } from "./_util.ts";

export const modelPath: string | undefined = sharedModel("stories260K.bin");
export const tokPath: string | undefined = sharedModel("tok512.bin");
export const MODEL = "stories260K";

/** stories260K on the ref backend. */
export async function storiesEngine(options: EngineOptions = {}): Promise<Engine> {
  const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
  try {
    return await Engine.create(model, tokenizer, {
      backend: "ref",
      maxBatch: 8,
      kvCapacity: 4096,
      ...options,
    });
  } finally {
    model.close();
  }
}

/** A running server on 127.0.0.1 with a free port. */
export interface TestServer extends AsyncDisposable {
  readonly url: string;
  readonly handler: ServeHandler;
}

/** Serve `options` on loopback; dispose to stop the server (and the engine when one was given). */
export function serveHandler(options: Partial<ServeOptions> & Pick<ServeOptions, "engine">): TestServer {
  const handler = createServeHandler({ modelName: MODEL, ...options });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler.fetch);
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    handler,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      (await options.engine)[Symbol.dispose]();
    },
  };
}

/** POST JSON. */
export function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** Read an SSE body: the `data:` payloads in order (the last is "[DONE]" for a well-formed stream). */
export async function readSse(res: Response): Promise<string[]> {
  const text = await res.text();
  const out: string[] = [];
  for (const block of text.split("\n\n")) {
    if (block.trim() === "") continue;
    if (!block.startsWith("data: ")) throw new Error(`not an SSE data line: ${JSON.stringify(block)}`);
    out.push(block.slice(6));
  }
  return out;
}

/** A metric's value from the Prometheus text. */
export async function metric(
  url: string,
  name: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { headers })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`metric ${name} not found`);
  return Number(line.split(" ")[1]);
}
