/**
 * The edge entry: the core plus the wasm backend (and ref), loading models from URLs or bytes. No FFI,
 * no WebGPU, no file system: `deno task bundle` turns this module into one ES module
 * (`dist/llama_edge.js`) that runs in Deno with only `--allow-net`, in browsers and in edge isolates.
 *
 * @example
 * ```ts ignore
 * import { createEdgeEngine } from "./dist/llama_edge.js";
 * using engine = await createEdgeEngine("https://example.com/stories260K.bin", {
 *   tokenizer: "https://example.com/tok512.bin",
 * });
 * console.log((await engine.complete("Once upon a time", { maxTokens: 32, temperature: 0 })).text);
 * ```
 * @module
 */
import { registerBackend } from "./registry.ts";
import { refBackendFactory } from "./backends/ref/ref.ts";
import { wasmBackendFactory } from "./backends/wasm/wasm.ts";
import { Engine, type EngineOptions } from "./engine/engine.ts";
import { type BytesInput, loadModelFrom } from "./io/remote.ts";

registerBackend(refBackendFactory);
registerBackend(wasmBackendFactory);

export { LlmError, type LlmErrorCode } from "./errors.ts";
export { pickBackend, registerBackend, registeredBackends } from "./registry.ts";
export { Engine, type EngineOptions, type GenerateEvent, type GenerateOptions } from "./engine/engine.ts";
export { type BytesInput, loadModelFrom, urlSource } from "./io/remote.ts";
// The OpenAI-compatible fetch handler: an edge service is `Deno.serve(createServeHandler({ engine }).fetch)`
// (tools/bundle.ts resolves its npm import, @huggingface/jinja, from Deno's npm cache).
export { createServeHandler, type ServeHandler, type ServeOptions } from "./server/handler.ts";

/** Options for {@link createEdgeEngine}: where the tokenizer is, and the engine's options. */
export interface EdgeEngineOptions extends EngineOptions {
  /** A tokenizer URL or bytes (llama2.c tokenizer.bin, tokenizer.json, GGUF) when the model has none. */
  readonly tokenizer?: BytesInput;
}

/**
 * Load a model from a URL or bytes and create an engine on the best backend here (wasm by default).
 *
 * @example
 * ```ts ignore
 * using engine = await createEdgeEngine(modelBytes, { tokenizer: tokenizerBytes, threads: 2 });
 * ```
 */
export async function createEdgeEngine(model: BytesInput, options: EdgeEngineOptions = {}): Promise<Engine> {
  const loaded = await loadModelFrom(model, { tokenizer: options.tokenizer });
  try {
    return await Engine.create(loaded.model, loaded.tokenizer, { backend: "auto", ...options });
  } finally {
    loaded.model.close();
  }
}
