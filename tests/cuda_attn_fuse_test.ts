/**
 * The CUDA decode attention's fusions (kernels/cuda/attention_decode.cu): RoPE and the KV-cache write done by
 * the decode kernel instead of a rope_kv launch, and the context splits merged in-kernel instead of by the
 * combine kernel. Whole models on the cuda backend with the fusions (the default) against
 * LLAMA_TS_ATTN_FUSE=0 (the separate kernels) and against ref: decode logits one position at a time past
 * several 32-position splits, both RoPE styles, f16 and f32 caches, head dims 64 and 128, GQA 1 / 2 / 4, and
 * two sequences decoding together (decode rows of distinct sequences). kernels/cuda/checks/ops_check.cu
 * checks the same kernel bit for bit against rope_kv_write + attention. Needs a GPU; skips visibly without.
 */
import assert from "node:assert/strict";
import { cudaBackendFactory } from "../src/backends/cuda/cuda.ts";
import { Engine } from "../mod.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import { flatten, nmse, restoringEnv } from "./_util.ts";
import { synthWeights, TINY_CONFIG } from "./_synth.ts";
import { memoryModel, placeholderTokenizer } from "./_memory_model.ts";

const gpu = await cudaBackendFactory.probe();
if (gpu.score === 0) console.warn(`SKIP cuda attention fusion tests: ${gpu.reason}`);

const KEY = "LLAMA_TS_ATTN_FUSE";
const tok = placeholderTokenizer(512);

interface Variant {
  name: string;
  config: LlamaConfig;
  kvDType: "f16" | "f32";
}

const shape = (headDim: number, nHeads: number, nKvHeads: number, ropeStyle: "interleaved" | "half") => ({
  ...TINY_CONFIG,
  dim: headDim * nHeads,
  hiddenDim: 256,
  headDim,
  nHeads,
  nKvHeads,
  ropeStyle,
});

const VARIANTS: Variant[] = [
  {
    name: "headDim 64, 4/4 heads, interleaved, f16 cache",
    config: shape(64, 4, 4, "interleaved"),
    kvDType: "f16",
  },
  { name: "headDim 128, 8/2 heads, half, f32 cache", config: shape(128, 8, 2, "half"), kvDType: "f32" },
  { name: "headDim 64, 8/4 heads, half, f16 cache", config: shape(64, 8, 4, "half"), kvDType: "f16" },
];

/** Logits at 80 positions (one decode step each) and two sequences' greedy tokens generated together. */
async function run(v: Variant, backend: "cuda" | "ref", fuse: boolean) {
  if (fuse) Deno.env.delete(KEY);
  else Deno.env.set(KEY, "0");
  const ids = Array.from({ length: 80 }, (_, i) => (i * 53 + 7) % 512);
  using e = await Engine.create(memoryModel(v.config, synthWeights(v.config, 61), "f32"), tok, {
    backend,
    kvDType: v.kvDType,
  });
  const logits = flatten(await e.logitsFor(ids));
  const gens = await Promise.all([
    e.complete(ids.slice(0, 30), { maxTokens: 40, temperature: 0 }),
    e.complete(ids.slice(30, 41), { maxTokens: 40, temperature: 0 }),
  ]);
  return { logits, gens: gens.map((g) => g.generatedIds) };
}

Deno.test({
  name:
    "cuda: decode attention with RoPE, the cache write and the split merge fused gives the separate kernels' logits",
  ignore: gpu.score === 0,
  fn: async () => {
    await restoringEnv(KEY, async () => {
      for (const v of VARIANTS) {
        const fused = await run(v, "cuda", true), apart = await run(v, "cuda", false);
        const ref = await run(v, "ref", true);
        const eApart = nmse(fused.logits, apart.logits), eRef = nmse(fused.logits, ref.logits);
        console.log(
          `${v.name}: fused vs separate kernels nmse ${eApart.toExponential(2)}, vs ref ${
            eRef.toExponential(2)
          }`,
        );
        assert.ok(eApart < 1e-12, `${v.name}: fused vs separate nmse ${eApart}`);
        assert.ok(eRef < 1e-6, `${v.name}: vs ref nmse ${eRef}`);
        assert.deepEqual(
          fused.gens,
          apart.gens,
          `${v.name}: greedy tokens of two sequences decoded together`,
        );
      }
    });
  },
});
