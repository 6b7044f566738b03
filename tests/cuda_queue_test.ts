/**
 * Queued decoding on the cuda backend (CompiledGraph.decodeGreedy over llama_ts_program_queue / take): decode
 * steps wait on the stream, and each step after the first takes its tokens from the previous step's device
 * choice, so the host is not in the loop between tokens. The text must equal step-by-step decoding's (the same
 * backend with decodeGreedy removed, one program_run per token): greedy, seeded sampling, and bursts cut short
 * by a request arriving, a stop string or a length limit. Misuse fails with INTERNAL and leaves no step queued.
 * stories260K; GPU only (skips visibly without one).
 */
import assert from "node:assert/strict";
import { Engine, type GenerateOptions, type LlmError, loadModel } from "../mod.ts";
import type { Backend, CompiledGraph, GreedyDecodeOptions } from "../src/backend.ts";
import { cudaBackendFactory } from "../src/backends/cuda/cuda.ts";
import { sharedModel } from "./_util.ts";
import { assertBurstsCutShortKeepText } from "./_bursts.ts";

const gpu = await cudaBackendFactory.probe();
if (gpu.score === 0) console.warn(`SKIP cuda queued-decode tests: ${gpu.reason}`);
const modelPath = sharedModel("stories260K.bin"), tokPath = sharedModel("tok512.bin");
const ignore = gpu.score === 0 || !modelPath || !tokPath;

/** A cuda backend that counts queued bursts and their steps, or (queued false) has no decodeGreedy. */
interface Counted {
  backend: Backend;
  bursts: number;
  steps: number;
  /** The last compiled graph that had decodeGreedy, and its last burst's first step. */
  greedy?: CompiledGraph;
  first?: GreedyDecodeOptions["first"];
}

async function countedBackend(queued: boolean): Promise<Counted> {
  const backend = await cudaBackendFactory.create();
  const c: Counted = { backend, bursts: 0, steps: 0 };
  const compile = backend.compile.bind(backend);
  backend.compile = (graph, options) => {
    const g = compile(graph, options);
    const decode = g.decodeGreedy?.bind(g);
    if (!queued) delete g.decodeGreedy;
    else if (decode) {
      c.greedy = g;
      g.decodeGreedy = async function* (o) {
        c.bursts++;
        c.first = o.first;
        for await (const ids of decode(o)) {
          c.steps++;
          yield ids;
        }
      };
    }
    return g;
  };
  return c;
}

async function engine(c: Counted, deviceSampling = true): Promise<Engine> {
  const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
  try {
    return await Engine.create(model, tokenizer, { backend: c.backend, deviceSampling, maxBatch: 4 });
  } finally {
    model.close();
  }
}

const PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben"];
const SAMPLED: GenerateOptions[] = [
  { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 },
  { temperature: 1 },
  { temperature: 1.2, topK: 5 },
];

Deno.test({
  name: "cuda: queued greedy and seeded sampled decoding give step-by-step decoding's tokens",
  ignore,
  fn: async () => {
    const run = async (queued: boolean) => {
      const c = await countedBackend(queued);
      using e = await engine(c);
      const ids: number[][] = [];
      for (const p of PROMPTS) {
        ids.push((await e.complete(p, { maxTokens: 80, temperature: 0, ignoreEos: true })).generatedIds);
      }
      for (const [i, o] of SAMPLED.entries()) {
        ids.push(
          (await e.complete(PROMPTS[0], { ...o, maxTokens: 64, seed: 40 + i, ignoreEos: true })).generatedIds,
        );
      }
      // two sequences decoding together (batch rows 0 and 1)
      const both = await Promise.all([
        e.complete(PROMPTS[1], { maxTokens: 48, temperature: 0, ignoreEos: true }),
        e.complete(PROMPTS[2], { ...SAMPLED[0], maxTokens: 48, seed: 9, ignoreEos: true }),
      ]);
      ids.push(...both.map((r) => r.generatedIds));
      return { ids, bursts: c.bursts, steps: c.steps };
    };
    const queued = await run(true), stepped = await run(false);
    assert.equal(stepped.bursts, 0);
    assert.ok(queued.bursts >= PROMPTS.length + SAMPLED.length, `${queued.bursts} bursts`);
    // every token after each prompt's first came out of a burst (the first comes with the prefill)
    assert.ok(queued.steps >= 3 * 79 + 3 * 63, `${queued.steps} queued steps`);
    for (let i = 0; i < stepped.ids.length; i++) assert.deepEqual(queued.ids[i], stepped.ids[i], `run ${i}`);
    // the sampled runs really sample
    assert.notDeepEqual(queued.ids[PROMPTS.length], queued.ids[0]);
  },
});

Deno.test({
  name: "cuda: a queued burst cut short (request arrives, stop string, length) keeps the solo run's text",
  ignore,
  fn: async () => {
    const c = await countedBackend(true);
    using e = await engine(c);
    await assertBurstsCutShortKeepText(
      e,
      { ...SAMPLED[0], maxTokens: 90, seed: 7, ignoreEos: true },
      { ...SAMPLED[1], maxTokens: 40, seed: 8, ignoreEos: true },
    );
    assert.ok(c.bursts > 0, "the runs decoded in bursts");
  },
});

Deno.test({
  name: "cuda: queued steps of another shape are refused (INTERNAL) and leave nothing queued",
  ignore,
  fn: async () => {
    const c = await countedBackend(true);
    using e = await engine(c);
    const want = (await e.complete(PROMPTS[0], { maxTokens: 20, temperature: 0 })).generatedIds;
    const g = c.greedy!, first = c.first!;
    assert.ok(g && first, "a burst ran");
    // runs a burst to its end; both bursts below are refused with this error
    const refused = (options: GreedyDecodeOptions) =>
      assert.rejects(
        async () => {
          for await (const _ of g.decodeGreedy!(options)) {
            // nothing
          }
        },
        (err: LlmError) => err.code === "INTERNAL" && /same decode rows/.test(err.message),
      );
    // logit rows out of order: refused before anything is queued
    await refused({ first: { ...first, logitRows: Int32Array.of(1) }, next: () => undefined });
    // a later step with two rows: refused after the first step was queued, which is taken back
    const two = {
      ...first,
      nTokens: 2,
      tokens: Int32Array.of(1, 1),
      positions: Int32Array.of(5, 5),
      seqIndex: Int32Array.of(0, 0),
      logitRows: Int32Array.of(0, 1),
    };
    await refused({ first, next: (i) => (i === 1 ? two : undefined) });
    // nothing left queued: step-by-step runs (program_run refuses a program with steps queued) and bursts work
    assert.deepEqual((await e.complete(PROMPTS[0], { maxTokens: 20, temperature: 0 })).generatedIds, want);
  },
});
