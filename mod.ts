/**
 * llama.ts: LLaMA-family inference in TypeScript. One decoder graph, run by whichever backend the
 * machine has.
 *
 * @example
 * ```ts
 * import { Engine, loadModel } from "@llama-ts/llama";
 * const { model, tokenizer } = await loadModel("stories260K.bin", { tokenizer: "tok512.bin" });
 * using engine = await Engine.create(model, tokenizer, { backend: "auto" });
 * for await (const ev of engine.generate("Once upon a time", { maxTokens: 64, temperature: 0 })) {
 *   if (ev.type === "token") console.log(ev.text);
 * }
 * ```
 * @module
 */
import { registerBackend } from "./src/registry.ts";
import { refBackendFactory } from "./src/backends/ref/ref.ts";
import { cudaBackendFactory } from "./src/backends/cuda/cuda.ts";
import { wasmBackendFactory } from "./src/backends/wasm/wasm.ts";
import { webgpuBackendFactory } from "./src/backends/webgpu/webgpu.ts";

registerBackend(refBackendFactory);
registerBackend(cudaBackendFactory);
registerBackend(wasmBackendFactory);
registerBackend(webgpuBackendFactory);

export { LlmError, type LlmErrorCode } from "./src/errors.ts";
export type { BackendName, DType, ProgressCallback, ProgressEvent, Shape } from "./src/types.ts";
export type {
  Backend,
  BackendCaps,
  BackendFactory,
  BackendOptions,
  CompiledGraph,
  CompileOptions,
  GreedyDecodeOptions,
  OpFeature,
} from "./src/backend.ts";
export type { Tensor, TensorUsage } from "./src/tensor.ts";
export type { KvLayer, Op, OpName, Rows, StepParams } from "./src/ops.ts";
export { pickBackend, registerBackend, registeredBackends } from "./src/registry.ts";
export type { LlamaConfig, RopeScaling, RopeStyle } from "./src/model/config.ts";
export type { ModelFile, TensorEntry } from "./src/format/model_file.ts";
export type { ByteSource } from "./src/io/byte_source.ts";
export type { StreamDecoder, Tokenizer, TokenizerData } from "./src/format/tokenizer.ts";
export type { SamplingOptions } from "./src/sample/sampler.ts";
export {
  Engine,
  type EngineInfo,
  type EngineOptions,
  type FinishReason,
  type GenerateEvent,
  type GenerateOptions,
  type GenerationHandle,
  type GenerationResult,
  type GenerationTimings,
} from "./src/engine/engine.ts";
export { type LoadedModel, loadModel, type LoadModelOptions } from "./src/io/load.ts";
export { createEngine, type CreateEngineOptions } from "./src/io/create_engine.ts";
export { createServeHandler, type ServeHandler, type ServeOptions } from "./src/server/handler.ts";
export type { SchedulerStats, StepInfo } from "./src/engine/scheduler.ts";
export type { ServerMetrics } from "./src/server/metrics.ts";
