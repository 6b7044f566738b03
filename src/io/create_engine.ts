/**
 * One call from a model reference to a ready engine (Deno: reads files, may download).
 * @module
 */
import { Engine, type EngineOptions } from "../engine/engine.ts";
import { loadModel, type LoadModelOptions } from "./load.ts";

/** Options for {@link createEngine}: loading and engine options together. */
export interface CreateEngineOptions extends LoadModelOptions, Omit<EngineOptions, "signal" | "onProgress"> {}

/**
 * Load a model and create an engine for it.
 *
 * @example
 * ```ts
 * import { createEngine } from "@llama-ts/llama";
 * using engine = await createEngine("stories260K.bin", { tokenizer: "tok512.bin", backend: "ref" });
 * console.log((await engine.complete("Once upon a time", { maxTokens: 16, temperature: 0 })).text);
 * ```
 */
export async function createEngine(model: string, options: CreateEngineOptions = {}): Promise<Engine> {
  const loaded = await loadModel(model, options);
  try {
    return await Engine.create(loaded.model, loaded.tokenizer, options);
  } finally {
    // weights now live on the backend; the file handles are no longer needed
    loaded.model.close();
  }
}
