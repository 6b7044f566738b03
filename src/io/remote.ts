/**
 * Loading a model from a URL or from bytes, with web APIs only (fetch, Range requests): what an edge
 * isolate or a browser can do without a file system. A server that honours `Range` is read tensor by
 * tensor; one that does not is downloaded whole.
 * @module
 */
import type { ModelFile } from "../format/model_file.ts";
import type { Tokenizer, TokenizerData } from "../format/tokenizer.ts";
import { type ByteSource, bytesSource, checkRange } from "./byte_source.ts";
import { LlmError } from "../errors.ts";
import { parseGguf } from "../format/gguf.ts";
import { parseLlama2c } from "../format/llama2c.ts";
import { parseLlama2cTokenizer } from "../format/llama2c_tokenizer.ts";
import { tokenizerDataFromHfJson } from "../format/tokenizer_hf.ts";
import { createTokenizer } from "../format/tokenizer_load.ts";

/** Where model or tokenizer bytes come from: a URL (string or URL) or the bytes themselves. */
export type BytesInput = string | URL | Uint8Array | ArrayBuffer;

async function fetchOk(url: string, init?: RequestInit): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    throw new LlmError("NETWORK", `fetching ${url} failed (${(e as Error).message}); check the URL`, {
      cause: e,
    });
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new LlmError("NETWORK", `fetching ${url} failed: HTTP ${res.status}; check the URL`);
  }
  return res;
}

/**
 * A ByteSource over a URL. Probes with a one-byte Range request: a 206 answer with a total size means
 * reads become Range requests; otherwise the body is downloaded once and read from memory.
 */
export async function urlSource(
  url: string | URL,
  options: { signal?: AbortSignal } = {},
): Promise<ByteSource> {
  const href = String(url), signal = options.signal;
  const probe = await fetchOk(href, { headers: { Range: "bytes=0-0" }, signal });
  const total = Number(probe.headers.get("content-range")?.match(/\/(\d+)$/)?.[1]);
  if (probe.status !== 206) return bytesSource(new Uint8Array(await probe.arrayBuffer()), href);
  if (!Number.isSafeInteger(total)) {
    // a partial answer without the total size: fetch the whole file instead
    await probe.body?.cancel();
    return bytesSource(new Uint8Array(await (await fetchOk(href, { signal })).arrayBuffer()), href);
  }
  await probe.body?.cancel();
  return {
    name: href,
    size: total,
    async read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(href, total, offset, length);
      if (length === 0) return new Uint8Array(0);
      const res = await fetchOk(href, {
        headers: { Range: `bytes=${offset}-${offset + length - 1}` },
        signal,
      });
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (res.status !== 206 || bytes.byteLength !== length) {
        throw new LlmError(
          "NETWORK",
          `${href}: asked for ${length} bytes at ${offset}, got ${bytes.byteLength} (HTTP ${res.status}); ` +
            `the file changed on the server or the server mishandles Range requests`,
        );
      }
      return bytes;
    },
    close(): void {},
  };
}

async function sourceOf(input: BytesInput, what: string): Promise<ByteSource> {
  if (input instanceof Uint8Array) return bytesSource(input, what);
  if (input instanceof ArrayBuffer) return bytesSource(new Uint8Array(input), what);
  return await urlSource(input);
}

async function magic(src: ByteSource): Promise<string> {
  return src.size < 4 ? "" : new TextDecoder().decode(await src.read(0, 4));
}

/** Parse a GGUF or llama2.c model from a URL or bytes. */
export async function openModelFrom(input: BytesInput): Promise<ModelFile> {
  const src = await sourceOf(input, "model bytes");
  try {
    const m = await magic(src);
    if (m === "GGUF") return await parseGguf(src);
    if (m.startsWith("{") || m.startsWith("PK")) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${src.name} is not a model file (it looks like JSON or a zip archive); give a GGUF or a llama2.c .bin`,
      );
    }
    return await parseLlama2c(src);
  } catch (e) {
    src.close();
    throw e;
  }
}

/** Tokenizer data from a URL or bytes: HF tokenizer.json, a GGUF's metadata, or a llama2.c tokenizer.bin. */
export async function openTokenizerFrom(input: BytesInput, vocabSize: number): Promise<TokenizerData> {
  const src = await sourceOf(input, "tokenizer bytes");
  try {
    const bytes = await src.read(0, src.size);
    const head = new TextDecoder().decode(bytes.subarray(0, 4));
    if (head === "GGUF") {
      const gguf = await parseGguf(bytesSource(bytes, src.name));
      if (!gguf.tokenizer) {
        throw new LlmError("TOKENIZER_FORMAT", `${src.name}: this GGUF carries no tokenizer`);
      }
      return gguf.tokenizer;
    }
    if (head.trimStart().startsWith("{")) {
      let json: unknown;
      try {
        json = JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        throw new LlmError("TOKENIZER_FORMAT", `${src.name}: not valid JSON (${(e as Error).message})`, {
          cause: e,
        });
      }
      return tokenizerDataFromHfJson(json);
    }
    return parseLlama2cTokenizer(bytes, { vocabSize, name: src.name });
  } finally {
    src.close();
  }
}

/** A model and its tokenizer, from URLs or bytes. */
export async function loadModelFrom(
  model: BytesInput,
  options: { tokenizer?: BytesInput } = {},
): Promise<{ model: ModelFile; tokenizer: Tokenizer }> {
  const file = await openModelFrom(model);
  try {
    const data = options.tokenizer
      ? await openTokenizerFrom(options.tokenizer, file.config.vocabSize)
      : file.tokenizer;
    if (!data) {
      throw new LlmError(
        "BAD_REQUEST",
        "the model carries no tokenizer; pass one (llama2.c tokenizer.bin, tokenizer.json or a GGUF)",
      );
    }
    return { model: file, tokenizer: createTokenizer(data) };
  } catch (e) {
    file.close();
    throw e;
  }
}
