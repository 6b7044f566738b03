/**
 * The quantization table of the README: each scheme's bits per weight, memory, ref and wasm decode speed
 * and quality (perplexity change, KL(f32 || scheme), top-1 agreement) against the f32 model over a text,
 * plus two extra rows: W8A8 without smoothing (what SmoothQuant's smoothing buys) and the int8 KV cache
 * against the f16 cache (f32 weights).
 *
 *   deno run -A bench/quant_eval.ts                      # stories260K (../shared/models)
 *   deno run -A bench/quant_eval.ts --synth              # a synthetic dim-256 model with outlier channels
 *   [--text FILE] [--calibration FILE] [--alpha 0.5] [--out DIR]
 *
 * The synthetic model (dim 256, hidden 768, 4 layers, 8 heads / 4 KV heads, Llama-2's 32,000-token
 * vocabulary from ../shared/models/llama-2-tiny-random.gguf, random weights) stands in for a larger
 * shape the ref backend cannot run on a 2-core machine; three channels of every RMSNorm weight are
 * scaled 20x so its matmul inputs have the activation outliers SmoothQuant targets.
 */
import { parseArgs } from "node:util";
import type { LlamaConfig } from "../src/model/config.ts";
import { Engine, loadModel } from "../mod.ts";
import { quantizeModelFile } from "../src/io/quantize_file.ts";
import { openModelFile, openTokenizerData } from "../src/io/load.ts";
import { planQuantizedGguf } from "../src/quant/quantize_model.ts";
import { collectActivationStats } from "../src/quant/calibrate.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { streamGguf } from "../src/format/gguf_write.ts";
import { evaluateText } from "../src/eval/evaluate.ts";
import { runBench } from "../src/cli/bench.ts";
import type { QuantScheme } from "../src/quant/schemes.ts";
import { synthWeights, writeLlama2c } from "../tests/_synth.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    synth: { type: "boolean" },
    text: { type: "string", default: new URL("../tests/data/eval_stories.txt", import.meta.url).pathname },
    calibration: {
      type: "string",
      default: new URL("../tests/data/calibration.txt", import.meta.url).pathname,
    },
    alpha: { type: "string", default: "0.5" },
    out: { type: "string", default: "/tmp/llama-ts-quant-eval" },
  },
});
const models = new URL("../../shared/models/", import.meta.url).pathname;
await Deno.mkdir(f.out!, { recursive: true });

let source = `${models}stories260K.bin`, tokenizer = `${models}tok512.bin`;
if (f.synth) {
  const config: LlamaConfig = {
    dim: 256,
    hiddenDim: 768,
    nLayers: 4,
    nHeads: 8,
    nKvHeads: 4,
    headDim: 32,
    vocabSize: 32000,
    seqLen: 512,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: "interleaved",
    tiedEmbeddings: false,
  };
  const w = synthWeights(config, 7);
  for (const [name, t] of w) if (name.endsWith("norm")) { for (const c of [3, 77, 150]) t[c] *= 20; }
  source = `${f.out}/synth256.bin`;
  await Deno.writeFile(source, writeLlama2c(config, w));
  tokenizer = `${models}llama-2-tiny-random.gguf`;
}
const text = await Deno.readTextFile(f.text!);
const alpha = Number(f.alpha);

async function engine(
  path: string,
  kvDType: "f32" | "f16" | "i8" = "f32",
  backend: "ref" | "wasm" = "ref",
): Promise<Engine> {
  const { model, tokenizer: tok } = await loadModel(path, { tokenizer });
  try {
    return await Engine.create(model, tok, { backend, kvDType, maxBatch: 1 });
  } finally {
    model.close();
  }
}

/** An int8-per-channel file marked W8A8 without smoothing: what per-token activations alone cost. */
async function unsmoothedW8a8(out: string): Promise<number> {
  const model = await openModelFile(source);
  const tok = await openTokenizerData(tokenizer, model.config.vocabSize);
  const plan = planQuantizedGguf(model, { scheme: "int8_per_channel", tokenizer: tok });
  let bytes = 0, n = 0;
  for (const t of plan.tensors) {
    if (t.shape.length !== 2) continue;
    const k = t.shape[0] * t.shape[1];
    n += k;
    bytes += t.dtype === "q8_0" ? (k / 32) * 34 : k * 4;
  }
  const file = await Deno.open(out, { write: true, create: true, truncate: true });
  for await (
    const c of streamGguf({
      ...plan,
      metadata: { ...plan.metadata, "llama_ts.quantization": "w8a8_smoothquant" },
    })
  ) {
    for (let o = 0; o < c.byteLength;) o += await file.write(c.subarray(o));
  }
  file.close();
  model.close();
  return (8 * bytes) / n;
}

/** Decode tok/s of a file on the wasm backend (the fast CPU backend), or why it cannot run it. */
async function wasmSpeed(path: string, kvDType: "f32" | "f16" | "i8" = "f32"): Promise<string> {
  try {
    using e = await engine(path, kvDType, "wasm");
    const b = await runBench(e, { model: path, promptTokens: 16, genTokens: 64, repeat: 3 });
    return b.decodeTokPerS.toFixed(0);
  } catch (e) {
    return `— (${(e as Error & { code?: string }).code ?? "error"})`;
  }
}

const rows: string[] = [];
using reference = await engine(source);
const refBench = await runBench(reference, { model: source, promptTokens: 16, genTokens: 64, repeat: 2 });
const refPpl = (await evaluateText(reference, text)).model.perplexity;
const mib = (b: number): string => (b / 2 ** 20).toFixed(2);
rows.push(
  `| f32 (reference) | 32.00 | ${mib(reference.info().weightBytes)} | ${refPpl.toFixed(4)} | — | — | — | ${
    refBench.decodeTokPerS.toFixed(0)
  } | ${await wasmSpeed(source)} |`,
);

const variants: { label: string; scheme?: QuantScheme; make?: (out: string) => Promise<number> }[] = [
  { label: "q8_0", scheme: "q8_0" },
  { label: "int8_per_channel", scheme: "int8_per_channel" },
  { label: `w8a8_smoothquant (alpha ${alpha})`, scheme: "w8a8_smoothquant" },
  { label: "W8A8 without smoothing", make: unsmoothedW8a8 },
  { label: "q4_0", scheme: "q4_0" },
  { label: "int4_g128", scheme: "int4_g128" },
];
for (const v of variants) {
  const out = `${f.out}/${v.label.replace(/\W+/g, "_")}.gguf`;
  let bits: number;
  if (v.scheme) {
    const r = await quantizeModelFile(source, out, {
      scheme: v.scheme,
      tokenizer,
      calibration: v.scheme === "w8a8_smoothquant" ? f.calibration : undefined,
      alpha,
    });
    bits = r.matrixBitsPerWeight;
  } else bits = await v.make!(out);
  using e = await engine(out);
  const r = await evaluateText(e, text, { reference });
  const b = await runBench(e, { model: out, promptTokens: 16, genTokens: 64, repeat: 2 });
  rows.push(
    `| ${v.label} | ${bits.toFixed(2)} | ${mib(e.info().weightBytes)} | ${r.model.perplexity.toFixed(4)} | ${
      ((r.model.perplexity / r.reference!.perplexity - 1) * 100).toFixed(2)
    }% | ${r.klMean!.toExponential(2)} | ${(r.top1Agreement! * 100).toFixed(1)}% | ${
      b.decodeTokPerS.toFixed(0)
    } | ${await wasmSpeed(out)} |`,
  );
}

// int8 KV against f16 KV, f32 weights
using kvF16 = await engine(source, "f16");
using kvI8 = await engine(source, "i8");
const kv = await evaluateText(kvI8, text, { reference: kvF16 });
const kvBench = await runBench(kvI8, { model: source, promptTokens: 16, genTokens: 64, repeat: 2 });
const kvLine =
  `int8 KV cache vs f16 (f32 weights): KV ${mib(kvI8.info().kvBytes)} MiB vs ${
    mib(kvF16.info().kvBytes)
  } MiB (${(kvI8.info().kvBytes / kvF16.info().kvBytes).toFixed(3)}x) at ctx ${kvI8.contextSize}; ` +
  `perplexity ${kv.model.perplexity.toFixed(4)} vs ${kv.reference!.perplexity.toFixed(4)}; KL ${
    kv.klMean!.toExponential(2)
  }; top-1 ${(kv.top1Agreement! * 100).toFixed(1)}%; decode ref ${kvBench.decodeTokPerS.toFixed(0)} tok/s, ` +
  `wasm ${await wasmSpeed(source, "i8")} (f16 KV ${await wasmSpeed(source, "f16")}) tok/s`;

// the calibration statistics of the source, to say how large its activation outliers are
const m = await openModelFile(source);
const stats = await collectActivationStats(
  m,
  createTokenizer(await openTokenizerData(tokenizer, m.config.vocabSize)),
  await Deno.readTextFile(f.calibration!),
);
m.close();
const x = stats.absMax.get("l0.wq")!, sorted = [...x].sort((a, b) => a - b);
console.log(
  `${new Date().toISOString().slice(0, 10)}; model ${
    f.synth ? "synthetic dim-256 (outlier channels)" : source
  }; ` +
    `${kv.model.tokens} scored tokens of ${f.text}; layer-0 attention input: max|x| ${
      sorted[sorted.length - 1].toFixed(2)
    }, median channel max ${sorted[sorted.length >> 1].toFixed(2)}\n`,
);
console.log(
  "| scheme | bits/weight (matrices) | weights MiB | perplexity | Δ perplexity | KL(f32 ‖ scheme) | top-1 | " +
    "ref decode tok/s | wasm decode tok/s |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
console.log(`\n${kvLine}`);
