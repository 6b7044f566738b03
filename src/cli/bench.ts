/**
 * `bench`: prefill and decode tokens per second on a loaded engine. Prompts are synthetic token ids
 * (deterministic), decode runs past end-of-sequence so every run does the same work: greedy, or with
 * the given sampling settings (seeded, so runs are repeatable).
 * @module
 */
import type { Engine } from "../engine/engine.ts";
import type { SamplingOptions } from "../sample/sampler.ts";
import { LlmError } from "../errors.ts";

/** A benchmark report, as JSON. */
export interface BenchReport {
  readonly date: string;
  readonly device: string;
  readonly backend: string;
  readonly model: string;
  readonly parameters: number;
  readonly weightDTypes: string;
  readonly promptTokens: number;
  readonly genTokens: number;
  readonly repeat: number;
  /** The decode's sampling settings (absent: greedy). */
  readonly sampling?: SamplingOptions;
  /** Where tokens were chosen (`EngineInfo.devicePick`). */
  readonly devicePick: string;
  readonly loadMs: number;
  /** Device memory in use after the runs (bytes), where the backend reports it. */
  readonly deviceMemoryUsed?: number;
  readonly prefillTokPerS: number;
  readonly decodeTokPerS: number;
  readonly runs: readonly { prefillTokPerS: number; decodeTokPerS: number }[];
}

/** Run the benchmark `repeat` times and report the best run (and every run). */
export async function runBench(
  engine: Engine,
  options: {
    model: string;
    promptTokens: number;
    genTokens: number;
    repeat: number;
    sampling?: SamplingOptions;
  },
): Promise<BenchReport> {
  const { promptTokens, genTokens, repeat } = options;
  if (promptTokens < 1 || genTokens < 1 || repeat < 1) {
    throw new LlmError("BAD_REQUEST", "--prompt-tokens, --gen-tokens and --repeat must be at least 1");
  }
  if (promptTokens + genTokens > engine.contextSize) {
    throw new LlmError(
      "CONTEXT_OVERFLOW",
      `prompt ${promptTokens} + generated ${genTokens} tokens exceed the context (${engine.contextSize}); lower them or raise --ctx`,
    );
  }
  const vocab = engine.config.vocabSize;
  const bos = engine.tokenizer.bosId;
  const prompt = Array.from(
    { length: promptTokens },
    (_, i) => (i === 0 && bos !== undefined ? bos : (i * 7919 + 13) % vocab),
  );
  const runs: { prefillTokPerS: number; decodeTokPerS: number }[] = [];
  for (let r = 0; r < repeat; r++) {
    const res = await engine.complete(prompt, {
      maxTokens: genTokens,
      temperature: 0,
      ...options.sampling,
      ignoreEos: true,
    });
    runs.push({ prefillTokPerS: res.timings.prefillTokPerS, decodeTokPerS: res.timings.decodeTokPerS });
  }
  const info = engine.info();
  return {
    date: new Date().toISOString(),
    device: info.device,
    backend: info.backend,
    model: options.model,
    parameters: info.parameters,
    weightDTypes: info.weightDTypes.join(","),
    promptTokens,
    genTokens,
    repeat,
    sampling: options.sampling,
    devicePick: info.devicePick,
    loadMs: info.loadMs,
    deviceMemoryUsed: engine.info().deviceMemoryUsed,
    prefillTokPerS: Math.max(...runs.map((r) => r.prefillTokPerS)),
    decodeTokPerS: Math.max(...runs.map((r) => r.decodeTokPerS)),
    runs,
  };
}
