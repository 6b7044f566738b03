/**
 * Chained decode GEMVs on the CUDA backend (kernels/cuda/gemv_chain.cu): in a one-row step the runtime runs
 * the consecutive GEMV records (wo, gate/up, w2, the next layer's QKV, the LM head) as one persistent launch
 * with grid barriers. The results must be the same bits as one launch per GEMV (LLAMA_TS_GEMV_CHAIN=0), in
 * every weight format, in direct steps and in replayed CUDA graphs. LLAMA_TS_GEMV_CHAIN=require makes a
 * one-row step fail when it launched no chain, so these tests cannot pass with chains silently off.
 * Needs a GPU; skips visibly without one.
 */
import assert from "node:assert/strict";
import { cudaBackendFactory } from "../src/backends/cuda/cuda.ts";
import { Engine } from "../mod.ts";
import type { ModelFile } from "../src/format/model_file.ts";
import { nmse } from "./_util.ts";
import { synthWeights, TINY_CONFIG } from "./_synth.ts";
import { blockQuantModel, memoryModel, placeholderTokenizer } from "./_memory_model.ts";

const gpu = await cudaBackendFactory.probe();
if (gpu.score === 0) console.warn(`SKIP cuda GEMV chain tests: ${gpu.reason}`);

// Every width a multiple of 128, so each format takes the GEMV's vector path and int4 g128 applies.
const config = { ...TINY_CONFIG, dim: 256, hiddenDim: 512, headDim: 32, nHeads: 8, nKvHeads: 4 };
const tok = placeholderTokenizer(512);
const KEY = "LLAMA_TS_GEMV_CHAIN";

interface Variant {
  name: string;
  model: () => ModelFile;
  weightQuant?: "int8" | "int4";
}

const VARIANTS: Variant[] = [
  { name: "f16", model: () => memoryModel(config, synthWeights(config, 41), "f16") },
  { name: "f32", model: () => memoryModel(config, synthWeights(config, 42), "f32") },
  { name: "q8_0", model: () => blockQuantModel(config, synthWeights(config, 43), { dtype: "q8_0" }) },
  { name: "q4_0", model: () => blockQuantModel(config, synthWeights(config, 44), { dtype: "q4_0" }) },
  {
    name: "int8 per channel",
    model: () => memoryModel(config, synthWeights(config, 45), "f32"),
    weightQuant: "int8",
  },
  {
    name: "int4 g128",
    model: () => memoryModel(config, synthWeights(config, 46), "f32"),
    weightQuant: "int4",
  },
];

/** Decode logits (one position per step) and 24 greedy tokens after a 20-token prompt (graph replays). */
async function run(v: Variant, chain: "0" | "require" | "ref") {
  const ids = Array.from({ length: 20 }, (_, i) => (i * 53 + 7) % 512);
  Deno.env.set(KEY, chain === "ref" ? "0" : chain);
  using e = await Engine.create(v.model(), tok, {
    backend: chain === "ref" ? "ref" : "cuda",
    kvDType: "f32",
    weightQuant: v.weightQuant,
  });
  const rows = await e.logitsFor(ids);
  const logits = new Float32Array(rows.length * rows[0].length);
  rows.forEach((r, i) => logits.set(r, i * r.length));
  const gen = (await e.complete(ids, { maxTokens: 24, temperature: 0 })).generatedIds;
  return { logits, gen };
}

Deno.test({
  name: "cuda: chained decode GEMVs give the same bits as one launch per GEMV, in every weight format",
  ignore: gpu.score === 0,
  fn: async () => {
    const before = Deno.env.get(KEY);
    try {
      for (const v of VARIANTS) {
        const one = await run(v, "0"), chained = await run(v, "require");
        // ref does not quantize at load: weightQuant variants compare chained against one launch per GEMV only
        const ref = v.weightQuant ? one : await run(v, "ref");
        let same = one.logits.length === chained.logits.length;
        for (let i = 0; same && i < one.logits.length; i++) {
          same = Object.is(one.logits[i], chained.logits[i]);
        }
        const err = nmse(chained.logits, ref.logits);
        console.log(
          `${v.name}: chained logits ${same ? "equal" : "DIFFER from"} one-launch-per-GEMV logits; ` +
            `vs ref nmse ${err.toExponential(2)}; greedy ${
              chained.gen.join(",") === one.gen.join(",") ? "same" : "differs"
            }`,
        );
        assert.ok(same, `${v.name}: chained logits differ from one launch per GEMV`);
        assert.deepEqual(chained.gen, one.gen, `${v.name}: greedy tokens`);
        assert.ok(err < 1e-6, `${v.name}: nmse vs ref ${err}`);
      }
    } finally {
      if (before === undefined) Deno.env.delete(KEY);
      else Deno.env.set(KEY, before);
    }
  },
});
