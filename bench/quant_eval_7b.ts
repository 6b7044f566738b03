/**
 * Quantization quality on the LLaMA-7B layer shape, on a CPU: a synthetic model with 7B's matrices (dim
 * 4096, hidden 11008, 32 heads of 128, Llama-2's 32,000-token vocabulary from
 * ../shared/models/llama-2-tiny-random.gguf, untied LM head) but only `--layers` decoder layers (default
 * 1), seeded random weights (tests/_synth.ts) with channels 3, 77 and 150 of every norm weight scaled 20x
 * (the activation outliers of bench/quant_eval.ts --synth), stored as an f16 GGUF: the reference.
 *
 *   deno run -A bench/quant_eval_7b.ts [--layers 1] [--text FILE] [--calibration FILE] [--alpha 0.5]
 *     [--check-tokens 16] [--out DIR]
 *
 * Every scheme is quantized from the f16 file (`quantizeModelFile`, what `cli.ts quantize` runs;
 * SmoothQuant calibration on the wasm backend) and scored against the f16 model over the text: perplexity
 * change, KL(f16 ‖ scheme), top-1 agreement. The ref backend (the numeric oracle) takes 0.6-0.9 s
 * per token for one layer here, so the scores come from the wasm backend run with ref's numerics:
 * weight-only matrices are dequantized to f32 on the host (ref multiplies dequantized weights by f32
 * activations; wasm's own q8/q4 kernels quantize activations to int8 per 32-block), and W8A8 layer
 * matrices stay int8 (wasm's int8 activations follow ref's rule). Ref itself runs the first `--check-tokens` tokens of every model, and
 * KL(ref ‖ wasm) there shows the stand-in is exact. A second KL column is the wasm backend's own kernels.
 * Random weights: perplexity means nothing as language quality; only its change against f16 is reported.
 */
import { parseArgs } from "node:util";
import type { ModelFile, TensorEntry } from "../src/format/model_file.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { Engine } from "../mod.ts";
import { quantizeModelFile } from "../src/io/quantize_file.ts";
import { openModelFile, openTokenizerData } from "../src/io/load.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { ggufMetadataForLlama, ggufTensorName, streamGguf } from "../src/format/gguf_write.ts";
import { evaluationWindows, scoreText, windowLogits } from "../src/eval/evaluate.ts";
import { collectActivationStats } from "../src/quant/calibrate.ts";
import { dequantize, quantize } from "../src/dtype.ts";
import type { QuantScheme } from "../src/quant/schemes.ts";
import type { DType } from "../src/types.ts";
import { synthWeights } from "../tests/_synth.ts";
import { SHAPES } from "./_synth_gguf.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    layers: { type: "string", default: "1" },
    text: { type: "string", default: new URL("../tests/data/eval_stories.txt", import.meta.url).pathname },
    calibration: {
      type: "string",
      default: new URL("../tests/data/calibration.txt", import.meta.url).pathname,
    },
    alpha: { type: "string", default: "0.5" },
    "check-tokens": { type: "string", default: "16" },
    out: { type: "string", default: "/tmp/llama-ts-quant-eval-7b" },
  },
});
const t0 = performance.now();
const secs = (): string => ((performance.now() - t0) / 1000).toFixed(0);
const nLayers = Number(f.layers), checkTokens = Number(f["check-tokens"]), alpha = Number(f.alpha);
const config = { ...SHAPES.llama7B, nLayers, seqLen: 512 };
const tokenizerPath = new URL("../../shared/models/llama-2-tiny-random.gguf", import.meta.url).pathname;
{
  // the f32 view (below) of the layers and the LM head, the embedding as f16
  const { dim, hiddenDim, vocabSize } = config;
  const gib =
    (4 * (nLayers * (4 * dim * dim + 3 * dim * hiddenDim) + vocabSize * dim) + 2 * vocabSize * dim) /
    2 ** 30;
  if (!Number.isInteger(nLayers) || nLayers < 1) {
    throw new Error(`--layers ${f.layers}: give a whole number ≥ 1`);
  }
  if (gib > 3.75) {
    throw new Error(
      `--layers ${f.layers}: the f32 view needs ${gib.toFixed(2)} GiB of wasm memory, past what wasm32's ` +
        `4 GiB holds beside the quantized copies; use fewer layers`,
    );
  }
}
await Deno.mkdir(f.out!, { recursive: true });

/** Write a file from a GGUF stream. */
async function writeStream(path: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    for await (const c of chunks) for (let o = 0; o < c.byteLength;) o += await file.write(c.subarray(o));
  } finally {
    file.close();
  }
}

// the f16 reference model
const source = `${f.out}/synth7b_${nLayers}l_f16.gguf`;
{
  const w = synthWeights(config, 7);
  for (const [name, t] of w) if (name.endsWith("norm")) { for (const c of [3, 77, 150]) t[c] *= 20; }
  const tok = await openTokenizerData(tokenizerPath, config.vocabSize);
  await writeStream(
    source,
    streamGguf({
      metadata: ggufMetadataForLlama(config, tok),
      tensors: requiredTensors(config).map((name) => {
        const d: DType = name.endsWith("norm") ? "f32" : "f16";
        return {
          name: ggufTensorName(name),
          dtype: d,
          shape: [...expectedShape(config, name)],
          data: () => quantize(d, w.get(name)!),
        };
      }),
    }),
  );
}
console.error(`[${secs()} s] wrote ${source}`);

const FLOAT: readonly DType[] = ["f32", "f16", "bf16"];
const LAYER_MATRIX = /^l\d+\.(wq|wk|wv|wo|w1|w2|w3)$/;

/**
 * A view of a model file for the wasm backend: `exact` dequantizes every quantized matrix to f32 except
 * the decoder-layer matrices of a W8A8 model (ref's numerics); `activationQuant` marks the model W8A8.
 */
async function view(
  m: ModelFile,
  options: { exact: boolean; activationQuant?: "int8" },
): Promise<ModelFile> {
  const c = { ...m.config, activationQuant: options.activationQuant ?? m.config.activationQuant };
  const tensors = new Map<string, TensorEntry>();
  for (const [name, t] of m.tensors) {
    // the embedding is a row lookup (dequantized the same way on both backends), not a matmul
    const keep = !options.exact || name === "tok_embd" || t.shape.length !== 2 || FLOAT.includes(t.dtype) ||
      (c.activationQuant !== undefined && LAYER_MATRIX.test(name));
    if (keep) {
      tensors.set(name, t);
      continue;
    }
    const n = t.shape[0] * t.shape[1], out = new Float32Array(n);
    dequantize(t.dtype, await t.source.read(t.byteOffset, t.byteLength), out);
    const bytes = new Uint8Array(out.buffer);
    tensors.set(name, {
      ...t,
      dtype: "f32",
      source: bytesSource(bytes, name),
      byteOffset: 0,
      byteLength: n * 4,
    });
  }
  return { ...m, config: c, tensors, close: () => m.close() };
}

const tokenizer = createTokenizer(await openTokenizerData(tokenizerPath, config.vocabSize));
/** An engine over (a view of) a file; the file is closed once the weights are loaded. */
async function engine(
  path: string,
  options: { backend: "ref" | "wasm"; exact?: boolean; activationQuant?: "int8"; kv?: "f32" | "f16" | "i8" },
): Promise<Engine> {
  const file = await openModelFile(path);
  const m = options.backend === "wasm"
    ? await view(file, { exact: options.exact ?? false, activationQuant: options.activationQuant })
    : await view(file, { exact: false, activationQuant: options.activationQuant });
  try {
    return await Engine.create(m, tokenizer, {
      backend: options.backend,
      kvDType: options.kv ?? "f32",
      maxBatch: 1,
      contextSize: config.seqLen,
    });
  } finally {
    m.close();
  }
}

const text = await Deno.readTextFile(f.text!);
/** Logits over the text's windows and over the ref check prefix. */
async function logits(
  e: Engine,
): Promise<{ windows: number[][]; rows: Float32Array[][] }> {
  const windows = evaluationWindows(e, text);
  return { windows, rows: await windowLogits(e, windows) };
}
const prefix = (w: number[][]): number[][] => [w[0].slice(0, checkTokens)];
const mib = (b: number): string => (b / 2 ** 20).toFixed(0);
const pct = (a: number, b: number): string =>
  `${a >= b ? "+" : "−"}${(Math.abs(a / b - 1) * 100).toFixed(2)}%`;

// reference: f16 weights, f32 KV, wasm; the same on ref over the check prefix
const refEngine = await engine(source, { backend: "wasm" });
const ref = await logits(refEngine);
const refWeightMiB = mib((await Deno.stat(source)).size);
refEngine[Symbol.dispose]();
const refPpl = scoreText(ref.windows, ref.rows).model.perplexity;
/** KL(ref backend ‖ wasm) over the check prefix, from the given wasm rows. */
async function refCheck(
  path: string,
  wasmRows: Float32Array[][],
  options: { activationQuant?: "int8"; kv?: "f16" | "i8" } = {},
): Promise<number> {
  using e = await engine(path, { backend: "ref", ...options });
  const p = prefix(ref.windows);
  const rows = await windowLogits(e, p);
  return scoreText(p, [wasmRows[0].slice(0, checkTokens)], rows).klMean!;
}
const refSelf = await refCheck(source, ref.rows);
console.error(
  `[${secs()} s] f16 reference: perplexity ${refPpl.toFixed(1)}, ref check KL ${refSelf.toExponential(1)}`,
);

const rows: string[] = [
  `| f16 (reference) | 16.00 | ${refWeightMiB} | ${refPpl.toFixed(1)} | — | — | — | — | ${
    refSelf.toExponential(1)
  } |`,
];
const variants: { label: string; scheme: QuantScheme; activationQuant?: "int8" }[] = [
  { label: "q8_0", scheme: "q8_0" },
  { label: "int8_per_channel", scheme: "int8_per_channel" },
  { label: `w8a8_smoothquant (alpha ${alpha})`, scheme: "w8a8_smoothquant" },
  { label: "W8A8 without smoothing", scheme: "int8_per_channel", activationQuant: "int8" },
  { label: "q4_0", scheme: "q4_0" },
  { label: "int4_g128", scheme: "int4_g128" },
];
const written = new Map<QuantScheme, { path: string; bits: number }>();
for (const v of variants) {
  let file = written.get(v.scheme);
  if (!file) {
    const path = `${f.out}/synth7b_${nLayers}l_${v.scheme}.gguf`;
    const r = await quantizeModelFile(source, path, {
      scheme: v.scheme,
      calibration: v.scheme === "w8a8_smoothquant" ? f.calibration : undefined,
      alpha,
      backend: "wasm",
    });
    file = { path, bits: r.matrixBitsPerWeight };
    written.set(v.scheme, file);
    console.error(`[${secs()} s] quantized ${v.scheme} in ${r.seconds.toFixed(0)} s`);
  }
  const aq = v.activationQuant;
  let exact: Float32Array[][];
  {
    using e = await engine(file.path, { backend: "wasm", exact: true, activationQuant: aq });
    exact = (await logits(e)).rows;
  }
  let native: Float32Array[][];
  {
    using e = await engine(file.path, { backend: "wasm", activationQuant: aq });
    native = (await logits(e)).rows;
  }
  const s = scoreText(ref.windows, exact, ref.rows), n = scoreText(ref.windows, native, ref.rows);
  const check = await refCheck(file.path, exact, { activationQuant: aq });
  rows.push(
    `| ${v.label} | ${file.bits.toFixed(2)} | ${mib((await Deno.stat(file.path)).size)} | ${
      s.model.perplexity.toFixed(1)
    } | ${pct(s.model.perplexity, refPpl)} | ${s.klMean!.toExponential(2)} | ${
      (s.top1Agreement! * 100).toFixed(1)
    }% | ${n.klMean!.toExponential(2)} | ${check.toExponential(1)} |`,
  );
  console.error(`[${secs()} s] ${rows[rows.length - 1]}`);
}

// int8 KV against f16 KV, f16 weights
const kvRows: Record<string, Float32Array[][]> = {}, kvBytes: Record<string, number> = {};
for (const kv of ["f16", "i8"] as const) {
  using e = await engine(source, { backend: "wasm", kv });
  kvRows[kv] = (await logits(e)).rows;
  kvBytes[kv] = e.info().kvBytes;
}
const kvs = scoreText(ref.windows, kvRows.i8, kvRows.f16);
const kvCheck = await refCheck(source, kvRows.i8, { kv: "i8" });
const kvLine = `int8 KV vs f16 KV (f16 weights): KV ${mib(kvBytes.i8)} MiB vs ${mib(kvBytes.f16)} MiB (${
  (kvBytes.i8 / kvBytes.f16).toFixed(3)
}x) at ctx ${config.seqLen}; perplexity ${kvs.model.perplexity.toFixed(1)} vs ${
  kvs.reference!.perplexity.toFixed(1)
} (${pct(kvs.model.perplexity, kvs.reference!.perplexity)}); KL ${kvs.klMean!.toExponential(2)}; top-1 ${
  (kvs.top1Agreement! * 100).toFixed(1)
}%; KL(ref ‖ wasm) int8 KV over the check prefix ${kvCheck.toExponential(1)}`;

// how large the outliers are: layer-0 attention input over the calibration text
const m = await openModelFile(source);
const stats = await collectActivationStats(m, tokenizer, await Deno.readTextFile(f.calibration!), {
  backend: "wasm",
});
m.close();
const x = stats.absMax.get("l0.wq")!, sorted = [...x].sort((a, b) => a - b);

console.log(
  `${new Date().toISOString().slice(0, 10)}; synthetic LLaMA-7B layer shape, ${nLayers} layer(s), f16; ` +
    `${
      ref.windows.reduce((a, w) => a + w.length - 1, 0)
    } scored tokens of ${f.text}; ref check over the first ` +
    `${checkTokens - 1}; calibration ${stats.tokens} tokens; layer-0 attention input: max|x| ${
      sorted[sorted.length - 1].toFixed(1)
    }, median channel max ${sorted[sorted.length >> 1].toFixed(2)}; wall ${secs()} s\n`,
);
console.log(
  "| scheme | bits/weight (matrices) | file MiB | perplexity | Δ perplexity | KL(f16 ‖ scheme) | top-1 | " +
    "KL, wasm kernels | KL(ref ‖ wasm), check prefix |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
console.log(`\n${kvLine}`);
