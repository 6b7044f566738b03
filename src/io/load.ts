/**
 * Opening a model by path or `hf:` reference in Deno: detect the format, parse it, and find a
 * tokenizer (the model's own, or one given). Runtime-specific (file system, fetch).
 * @module
 */
import type { ModelFile } from "../format/model_file.ts";
import type { Tokenizer, TokenizerData } from "../format/tokenizer.ts";
import type { ProgressCallback } from "../types.ts";
import type { ByteSource } from "./byte_source.ts";
import { LlmError } from "../errors.ts";
import { fileSource, isDirectory, readText } from "./deno_fs.ts";
import { parseGguf } from "../format/gguf.ts";
import { parseLlama2c } from "../format/llama2c.ts";
import { loadHfDirectory } from "./hf_dir.ts";
import { parseLlama2cTokenizer } from "../format/llama2c_tokenizer.ts";
import { tokenizerDataFromHfJson } from "../format/tokenizer_hf.ts";
import { createTokenizer } from "../format/tokenizer_load.ts";
import { resolveHfModel } from "./hf_hub.ts";

/** Options for {@link loadModel}. */
export interface LoadModelOptions {
  /** A tokenizer file (llama2.c .bin, tokenizer.json, or a GGUF) when the model carries none. */
  readonly tokenizer?: string;
  /** Where `hf:` downloads are cached. Required for `hf:` references. */
  readonly cacheDir?: string;
  /** Hugging Face token for gated repositories. */
  readonly hfToken?: string;
  /** Hub endpoint (tests point it at a local server). */
  readonly hfEndpoint?: string;
  /** Called with progress of `hf:` downloads. */
  readonly onProgress?: ProgressCallback;
  /** Aborts an `hf:` download. */
  readonly signal?: AbortSignal;
}

/** A parsed model and its tokenizer. */
export interface LoadedModel {
  /** The parsed model; call `close()` when done with it. */
  readonly model: ModelFile;
  /** The model's own tokenizer, or the one given in {@link LoadModelOptions.tokenizer}. */
  readonly tokenizer: Tokenizer;
  /** Where the model was read from (a local path after any download). */
  readonly path: string;
}

async function magic(src: ByteSource): Promise<string> {
  if (src.size < 4) return "";
  return new TextDecoder().decode(await src.read(0, 4));
}

/** Parse a model file or HF directory by sniffing its format. */
export async function openModelFile(path: string): Promise<ModelFile> {
  if (await isDirectory(path)) return await loadHfDirectory(path);
  const src = await fileSource(path);
  try {
    const m = await magic(src);
    if (m === "GGUF") return await parseGguf(src);
    if (/\.gguf$/i.test(path)) {
      const head = [...(await src.read(0, Math.min(4, src.size)))].map((b) =>
        b.toString(16).padStart(2, "0")
      );
      throw new LlmError(
        "MODEL_FORMAT",
        `${path}: a GGUF file starts with "GGUF", this one with [${head.join(" ")}] (${src.size} bytes); ` +
          `it is truncated or corrupt: download it again`,
      );
    }
    if (path.endsWith(".safetensors")) {
      throw new LlmError(
        "BAD_REQUEST",
        `${path} is a bare safetensors file; pass the directory that holds it and its config.json`,
      );
    }
    if (m.startsWith("{") || m.startsWith("PK")) {
      throw new LlmError("MODEL_FORMAT", `${path} is not a model file (it looks like JSON or a zip archive)`);
    }
    return await parseLlama2c(src);
  } catch (e) {
    src.close();
    throw e;
  }
}

/** Read tokenizer data from a file: llama2.c tokenizer.bin, HF tokenizer.json, or a GGUF's metadata. */
export async function openTokenizerData(path: string, vocabSize: number): Promise<TokenizerData> {
  if (path.startsWith("hf:")) {
    throw new LlmError(
      "BAD_REQUEST",
      `${path}: a tokenizer is read from a local file, not an hf: reference; give the model as hf:owner/repo ` +
        `(its tokenizer comes with it) or download the tokenizer file and pass its path`,
    );
  }
  if (path.endsWith(".json")) {
    const text = await readText(path);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new LlmError("TOKENIZER_FORMAT", `${path}: not valid JSON (${(e as Error).message})`, {
        cause: e,
      });
    }
    return tokenizerDataFromHfJson(json);
  }
  if (path.endsWith(".model")) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `${path}: SentencePiece .model files are not read; pass the model's tokenizer.json, a GGUF, or a llama2.c tokenizer.bin`,
    );
  }
  const src = await fileSource(path);
  try {
    if (await magic(src) === "GGUF") {
      const gguf = await parseGguf(src);
      if (!gguf.tokenizer) {
        throw new LlmError("TOKENIZER_FORMAT", `${path}: this GGUF carries no usable tokenizer`);
      }
      return gguf.tokenizer;
    }
    return parseLlama2cTokenizer(await src.read(0, src.size), { vocabSize, name: path });
  } finally {
    src.close();
  }
}

/**
 * The local path of a model reference: an `hf:` reference is downloaded into `options.cacheDir` (or
 * found there), any other reference is returned as is.
 *
 * @example
 * ```ts ignore
 * const path = await resolveModelRef("hf:owner/repo/model.gguf", { cacheDir: "/tmp/llama-ts" });
 * ```
 */
export async function resolveModelRef(
  ref: string,
  options: Omit<LoadModelOptions, "tokenizer"> = {},
): Promise<string> {
  if (!ref.startsWith("hf:")) return ref;
  if (!options.cacheDir) {
    throw new LlmError("BAD_REQUEST", "hf: references need a cacheDir to download into");
  }
  return await resolveHfModel(ref, {
    cacheDir: options.cacheDir,
    token: options.hfToken,
    endpoint: options.hfEndpoint,
    onProgress: options.onProgress,
    signal: options.signal,
  });
}

/**
 * Open a model (a llama2.c .bin, a GGUF, an HF directory, or an `hf:owner/repo[/file]` reference)
 * with its tokenizer.
 *
 * @example
 * ```ts
 * import { loadModel } from "@llama-ts/llama";
 * const { model, tokenizer } = await loadModel("model.gguf");
 * console.log(model.config.dim, tokenizer.vocabSize);
 * ```
 */
export async function loadModel(ref: string, options: LoadModelOptions = {}): Promise<LoadedModel> {
  const path = await resolveModelRef(ref, options);
  const model = await openModelFile(path);
  try {
    let data = model.tokenizer;
    if (options.tokenizer) data = await openTokenizerData(options.tokenizer, model.config.vocabSize);
    if (!data) {
      throw new LlmError(
        "BAD_REQUEST",
        `${path} carries no tokenizer; pass one with --tokenizer (llama2.c tokenizer.bin, tokenizer.json or a GGUF)`,
      );
    }
    return { model, tokenizer: createTokenizer(data), path };
  } catch (e) {
    model.close();
    throw e;
  }
}
