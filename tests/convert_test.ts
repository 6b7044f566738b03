/**
 * One model, many formats: stories260K converted here into GGUF (F32, Q8_0) and an HF safetensors
 * directory must give the golden greedy tokens (F32) or stay close (Q8_0, BF16: agreement reported);
 * a synthetic untied GQA model gives the same tokens from llama2.c, GGUF and HF files.
 */
import assert from "node:assert/strict";
import type { DType } from "../src/types.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { Engine, loadModel } from "../mod.ts";
import { fileSource } from "../src/io/deno_fs.ts";
import { parseLlama2c } from "../src/format/llama2c.ts";
import { parseLlama2cTokenizer } from "../src/format/llama2c_tokenizer.ts";
import { ggufMetadataForLlama, ggufTensorName, writeGgufBytes } from "../src/format/gguf_write.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { dequantize, quantize } from "../src/dtype.ts";
import { sharedModel } from "./_util.ts";
import { synthWeights, TINY_CONFIG, writeHfDirectory, writeLlama2c } from "./_synth.ts";

interface GoldenCase {
  prompt: string;
  prompt_ids: number[];
  generated_ids: number[];
}

const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");
const goldenPath = sharedModel("stories260K.golden.json");
const haveShared = !!(modelPath && tokPath && goldenPath);
const N = 64;

async function readWeights(
  path: string,
): Promise<{ config: LlamaConfig; weights: Map<string, Float32Array> }> {
  const m = await parseLlama2c(await fileSource(path));
  const weights = new Map<string, Float32Array>();
  for (const [name, e] of m.tensors) {
    const f = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
    dequantize(e.dtype, await e.source.read(e.byteOffset, e.byteLength), f);
    weights.set(name, f);
  }
  m.close();
  return { config: m.config, weights };
}

/** GGUF with `dtype` for every matrix whose rows are whole blocks (others stay F32, as llama.cpp does). */
function toGguf(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  dtype: DType,
  tok?: TokenizerData,
): Uint8Array {
  return writeGgufBytes({
    metadata: ggufMetadataForLlama(config, tok),
    tensors: requiredTensors(config).map((name) => {
      const w = weights.get(name)!;
      const shape = [...expectedShape(config, name)];
      const rowOk = shape.length === 2 && shape[1] % 32 === 0;
      const d = rowOk ? dtype : "f32";
      return { name: ggufTensorName(name), dtype: d, shape, data: quantize(d, w) };
    }),
  });
}

async function greedyAll(path: string, cases: GoldenCase[], tokenizer?: string): Promise<number[][]> {
  const { model, tokenizer: tok } = await loadModel(path, { tokenizer });
  using engine = await Engine.create(model, tok, { backend: "ref" });
  model.close();
  const out: number[][] = [];
  for (const c of cases) {
    const r = await engine.complete(c.prompt, { maxTokens: N, temperature: 0 });
    assert.deepEqual(r.promptIds, c.prompt_ids, `prompt ids of ${JSON.stringify(c.prompt)} via ${path}`);
    out.push(r.generatedIds);
  }
  return out;
}

/** Fraction of positions where two greedy runs agree before their first divergence, averaged. */
function agreement(a: number[][], b: number[][]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    let k = 0;
    while (k < N && a[i][k] === b[i][k]) k++;
    s += k / N;
  }
  return s / a.length;
}

Deno.test({
  name:
    "stories260K as GGUF F32 and as an HF directory reproduces the golden tokens; Q8_0 and BF16 stay close",
  ignore: !haveShared,
  fn: async () => {
    const cases = (JSON.parse(await Deno.readTextFile(goldenPath!)) as { cases: GoldenCase[] }).cases;
    const golden = cases.map((c) => c.generated_ids.slice(0, N));
    const { config, weights } = await readWeights(modelPath!);
    const tok = parseLlama2cTokenizer(await Deno.readFile(tokPath!), { vocabSize: config.vocabSize });
    const dir = await Deno.makeTempDir();
    try {
      // GGUF carries its own tokenizer (converted to SentencePiece's "▁" form)
      await Deno.writeFile(`${dir}/f32.gguf`, toGguf(config, weights, "f32", tok));
      assert.deepEqual(await greedyAll(`${dir}/f32.gguf`, cases), golden, "GGUF F32");

      await Deno.writeFile(`${dir}/q8.gguf`, toGguf(config, weights, "q8_0", tok));
      const q8 = agreement(await greedyAll(`${dir}/q8.gguf`, cases), golden);
      console.log(`stories260K Q8_0 GGUF: greedy agreement with f32 golden ${(q8 * 100).toFixed(1)}%`);
      assert.ok(q8 >= 0.75, `Q8_0 agreement ${q8} is low: a quantization or kernel regression?`);

      await writeHfDirectory(`${dir}/hf`, config, weights);
      assert.deepEqual(await greedyAll(`${dir}/hf`, cases, tokPath), golden, "HF safetensors F32");

      await writeHfDirectory(`${dir}/hf16`, config, weights, { dtype: "bf16" });
      const bf = agreement(await greedyAll(`${dir}/hf16`, cases, tokPath), golden);
      console.log(`stories260K BF16 safetensors: greedy agreement with f32 golden ${(bf * 100).toFixed(1)}%`);
      assert.ok(bf >= 0.75, `BF16 agreement ${bf} is low: a conversion regression?`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a synthetic untied GQA model gives the same greedy tokens from llama2.c, GGUF and HF files",
  ignore: !tokPath,
  fn: async () => {
    const config: LlamaConfig = { ...TINY_CONFIG, hiddenDim: 192 };
    const weights = synthWeights(config, 7);
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/m.bin`, writeLlama2c(config, weights));
      await Deno.writeFile(`${dir}/m.gguf`, toGguf(config, weights, "f32"));
      await writeHfDirectory(`${dir}/hf`, config, weights, { shards: 2 });
      const runs: number[][] = [];
      for (const p of [`${dir}/m.bin`, `${dir}/m.gguf`, `${dir}/hf`]) {
        const { model, tokenizer } = await loadModel(p, { tokenizer: tokPath });
        using engine = await Engine.create(model, tokenizer, { backend: "ref" });
        model.close();
        const r = await engine.complete("Once upon a time", {
          maxTokens: 24,
          temperature: 0,
          ignoreEos: true,
        });
        runs.push(r.generatedIds);
      }
      assert.equal(runs[0].length, 24);
      assert.deepEqual(runs[1], runs[0], "GGUF differs from llama2.c");
      assert.deepEqual(runs[2], runs[0], "HF (rotate-half layout) differs from llama2.c");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
