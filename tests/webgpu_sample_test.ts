/**
 * Sampled decoding on the webgpu backend: the `sample` op picks tokens on the device and sampled rows
 * decode in device-queued bursts, with each step's uniform peeked from the row's sampler ahead of time.
 * Same seeds must give the host sampler's text (`deviceSampling: false`), and a burst cut short (a
 * request arriving, another sequence stopping or reaching its length) must leave the text as an
 * uninterrupted run's. stories260K (vocabulary 512), lavapipe on CI.
 */
import assert from "node:assert/strict";
import { Engine, type GenerateOptions, loadModel } from "../mod.ts";
import { createWebGpuBackend, webGpuInfo } from "../src/backends/webgpu/webgpu.ts";
import { sharedModel } from "./_util.ts";
import { assertBurstsCutShortKeepText } from "./_bursts.ts";

const info = await webGpuInfo();
const modelPath = sharedModel("stories260K.bin"), tokPath = sharedModel("tok512.bin");
if (!info.available) console.warn(`SKIP webgpu sampling tests: ${info.reason}`);
const ignore = !info.available || !modelPath || !tokPath;

const SETTINGS: GenerateOptions[] = [
  { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05 }, // generate's defaults
  { temperature: 1 },
  { temperature: 0.7, topP: 0.9 },
  { temperature: 1.2, topK: 5 },
  { temperature: 1.1, minP: 0.1 },
];

async function engine(deviceSampling: boolean): Promise<Engine> {
  const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
  try {
    return await Engine.create(model, tokenizer, { backend: "webgpu", deviceSampling, maxBatch: 4 });
  } finally {
    model.close();
  }
}

Deno.test({
  name: "webgpu: seeded sampling on the device (queued bursts) gives the host sampler's tokens",
  ignore,
  fn: async () => {
    const run = async (deviceSampling: boolean): Promise<{ ids: number[][]; downloads: number }> => {
      using e = await engine(deviceSampling);
      assert.equal(e.info().devicePick, deviceSampling ? "sample" : "argmax");
      let downloads = 0;
      const download = e.backend.download;
      e.backend.download = (t, o) => (downloads++, download.call(e.backend, t, o));
      const ids: number[][] = [];
      for (const [i, o] of SETTINGS.entries()) {
        const r = await e.complete("Once upon a time", {
          ...o,
          maxTokens: 64,
          seed: 100 + i,
          ignoreEos: true,
        });
        ids.push(r.generatedIds);
      }
      return { ids, downloads };
    };
    const device = await run(true), host = await run(false);
    // the precision rule allows a difference only where a uniform lands within f32 rounding of a
    // boundary; at a 512-token vocabulary that is rare enough that these seeds give equal text
    for (let i = 0; i < SETTINGS.length; i++) {
      assert.deepEqual(device.ids[i], host.ids[i], `settings ${JSON.stringify(SETTINGS[i])}`);
    }
    // decode ran in bursts: far fewer reads than tokens (the host path reads a logits row per token)
    const tokens = SETTINGS.length * 64;
    assert.ok(device.downloads < tokens / 4, `${device.downloads} downloads for ${tokens} tokens`);
    assert.ok(host.downloads >= tokens, `host sampling: ${host.downloads} downloads`);
    // the settings really sample: not every run is the greedy continuation
    assert.ok(new Set(device.ids.map((x) => x.join())).size === SETTINGS.length);
  },
});

Deno.test({
  name: "webgpu: a sampled burst cut short (request arrives, stop string, max tokens) keeps the seed's text",
  ignore,
  fn: async () => {
    using e = await engine(true);
    await assertBurstsCutShortKeepText(
      e,
      { ...SETTINGS[0], maxTokens: 90, seed: 7, ignoreEos: true },
      { ...SETTINGS[1], maxTokens: 40, seed: 8, ignoreEos: true },
    );
  },
});

// The benchmark trace of queued decoding (WgGraph.traceDecode / takeDecodeTrace, bench/webgpu_7b.ts): one
// pair of GPU timestamps per decode step, in order, and the decoded tokens unchanged by it
Deno.test({
  name: "webgpu: a traced greedy decode records every step's pass, in order, with the same tokens",
  ignore,
  fn: async () => {
    const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
    const backend = await createWebGpuBackend();
    try {
      using e = await Engine.create(model, tokenizer, { backend });
      const options = { maxTokens: 24, temperature: 0 };
      const plain = await e.complete("Once upon a time", options);
      const graphs = (backend as unknown as Traced).compiledGraphs();
      for (const g of graphs) g.traceDecode(16);
      const traced = await e.complete("Once upon a time", options);
      assert.deepEqual(traced.generatedIds, plain.generatedIds);
      const traces = await Promise.all(graphs.map((g) => g.takeDecodeTrace()));
      const tr = traces.reduce((a, b) => b.begin.length > a.begin.length ? b : a);
      assert.equal(tr.begin.length, 16, "the first 16 of 23 decode steps");
      assert.equal(tr.begin[0], 0);
      for (let i = 0; i < tr.begin.length; i++) {
        assert.ok(tr.end[i] > tr.begin[i], `step ${i} ends after it begins`);
        if (i > 0) assert.ok(tr.begin[i] >= tr.end[i - 1], `step ${i} begins after step ${i - 1} ends`);
      }
      await assert.rejects(graphs[0].takeDecodeTrace(), /no decode trace/);
    } finally {
      model.close();
      backend[Symbol.dispose]();
    }
  },
});

type Traced = {
  compiledGraphs(): {
    traceDecode(steps: number): void;
    takeDecodeTrace(): Promise<{ begin: number[]; end: number[] }>;
  }[];
};
