/**
 * `quantize`: the schemes' exact representation in GGUF block types (checked against independent host
 * quantizers written here), metadata round trips, HF→GGUF RoPE permutation, SmoothQuant's invariance
 * (smoothing without quantization leaves logits unchanged to f32 noise), calibration statistics, and
 * clear errors for bad input.
 */
import assert from "node:assert/strict";
import type { LlamaConfig } from "../src/model/config.ts";
import { dequantize, f16ToF32, roundF16 } from "../src/dtype.ts";
import { Engine, LlmError, loadModel } from "../mod.ts";
import {
  parseScheme,
  QUANT_SCHEMES,
  quantizeInt4Groups,
  quantizeInt8PerChannel,
  quantizeMatrix,
} from "../src/quant/schemes.ts";
import { halfToInterleavedRows, smoothingFactors } from "../src/quant/quantize_model.ts";
import { quantizeModelFile } from "../src/io/quantize_file.ts";
import { fileSource } from "../src/io/deno_fs.ts";
import { parseGguf, readGgufHeader } from "../src/format/gguf.ts";
import { ggufMetadataForLlama, ggufTensorName, writeGgufBytes } from "../src/format/gguf_write.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { flatten, nmse, randn, sharedModel } from "./_util.ts";
import { halfToInterleaved, synthWeights, TINY_CONFIG, writeHfDirectory, writeLlama2c } from "./_synth.ts";

const tokPath = sharedModel("tok512.bin");
const calibration = new URL("./data/calibration.txt", import.meta.url).pathname;

/** The cuda backend's load-time rule, written independently: one f16 scale per group, q = round(w / scale). */
function hostQuant(w: Float32Array, cols: number, group: number, qmax: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let g0 = 0; g0 < w.length; g0 += cols) {
    for (let s = 0; s < cols; s += group) {
      const n = Math.min(group, cols - s), at = g0 + s;
      let amax = 0;
      for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(w[at + i]));
      const scale = roundF16(amax / qmax);
      for (let i = 0; i < n; i++) {
        if (scale === 0) continue;
        const v = Math.fround(w[at + i] / scale), r = v < 0 ? -Math.round(-v) : Math.round(v);
        out[at + i] = scale * Math.max(-qmax - 1, Math.min(qmax, r)) + 0; // an int has no -0
      }
    }
  }
  return out;
}

Deno.test("int8_per_channel is q8_0 with one scale per row, exactly the per-channel int8 values", () => {
  const rows = 37, cols = 96, w = randn(rows * cols, 1, 0.7);
  w[5 * cols + 7] = 9; // an outlier sets its row's scale
  w.fill(0, 9 * cols, 10 * cols); // an all-zero row
  const bytes = quantizeInt8PerChannel(w, rows, cols);
  const nb = cols / 32;
  for (let r = 0; r < rows; r++) {
    for (let b = 1; b < nb; b++) {
      const o = (r * nb + b) * 34, o0 = r * nb * 34;
      assert.deepEqual([bytes[o], bytes[o + 1]], [bytes[o0], bytes[o0 + 1]], `row ${r} block ${b} scale`);
    }
  }
  const back = new Float32Array(w.length);
  dequantize("q8_0", bytes, back);
  assert.deepEqual(back, hostQuant(w, cols, cols, 127));
  // and the error is at most half a step of the row's scale
  for (let r = 0; r < rows; r++) {
    const d = f16ToF32(bytes[r * nb * 34] | (bytes[r * nb * 34 + 1] << 8));
    for (let i = 0; i < cols; i++) {
      assert.ok(Math.abs(back[r * cols + i] - w[r * cols + i]) <= d * 0.5 + 1e-7);
    }
  }
});

Deno.test("int4_g128 is q4_0 with one scale per 128 weights (a shorter last group), exactly", () => {
  const rows = 5, cols = 352; // groups of 128, 128 and 96
  const w = randn(rows * cols, 2, 1.3);
  const bytes = quantizeInt4Groups(w, rows, cols);
  const nb = cols / 32;
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      const o = (r * nb + b) * 18, o0 = (r * nb + 4 * Math.floor(b / 4)) * 18;
      assert.deepEqual([bytes[o], bytes[o + 1]], [bytes[o0], bytes[o0 + 1]], `row ${r} block ${b} scale`);
    }
  }
  const back = new Float32Array(w.length);
  dequantize("q4_0", bytes, back);
  assert.deepEqual(back, hostQuant(w, cols, 128, 7));
});

Deno.test("q8_0/q4_0 schemes are ggml's quantizers; rows that are not whole blocks keep their float type", () => {
  const w = randn(4 * 64, 3);
  for (const s of ["q8_0", "q4_0"] as const) {
    const q = quantizeMatrix(s, w, [4, 64]);
    assert.equal(q.dtype, s);
    assert.equal(q.data.byteLength, s === "q8_0" ? 4 * 2 * 34 : 4 * 2 * 18);
  }
  for (const s of ["q8_0", "int8_per_channel", "int4_g128", "w8a8_smoothquant"] as const) {
    assert.equal(quantizeMatrix(s, randn(3 * 172, 4), [3, 172], "f16").dtype, "f16");
  }
  assert.equal(quantizeMatrix("f16", w, [4, 64]).dtype, "f16");
});

Deno.test("HF rotate-half rows to GGUF's interleaved order match the test suite's permutation", () => {
  const heads = 3, hd = 8, cols = 5, w = randn(heads * hd * cols, 4);
  assert.deepEqual(halfToInterleavedRows(w, heads, hd, cols), halfToInterleaved(w, heads, hd));
});

Deno.test("SmoothQuant factors: s = max|X|^a / max|W|^(1-a); dead channels keep 1", () => {
  const s = smoothingFactors(Float32Array.of(4, 0, 9, 1), Float32Array.of(1, 2, 0, 0.25), 0.5);
  assert.deepEqual(Array.from(s), [2, 1, 1, Math.fround(1 / 0.5)]);
  assert.deepEqual(Array.from(smoothingFactors(Float32Array.of(8), Float32Array.of(2), 1)), [8]);
  assert.deepEqual(Array.from(smoothingFactors(Float32Array.of(8), Float32Array.of(2), 0)), [0.5]);
});

Deno.test("scheme names: known ones parse, unknown ones are a clear BAD_REQUEST", () => {
  for (const s of QUANT_SCHEMES) assert.equal(parseScheme(s), s);
  assert.throws(
    () => parseScheme("q5_k"),
    (e: unknown) => e instanceof LlmError && e.code === "BAD_REQUEST" && /q5_k.*int4_g128/.test(e.message),
  );
});

const CONFIG: LlamaConfig = { ...TINY_CONFIG, hiddenDim: 192 };

async function logits(path: string): Promise<Float32Array> {
  const { model, tokenizer } = await loadModel(path, {
    tokenizer: path.endsWith(".gguf") ? undefined : tokPath,
  });
  using e = await Engine.create(model, tokenizer, { backend: "ref", kvDType: "f32" });
  model.close();
  return flatten(await e.logitsFor([1, 403, 407, 261, 378, 432, 383, 286, 261, 376]));
}

Deno.test({
  name: "quantize writes each scheme with its metadata; an HF source is permuted to interleaved RoPE",
  ignore: !tokPath,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const w = synthWeights(CONFIG, 21);
      await Deno.writeFile(`${dir}/m.bin`, writeLlama2c(CONFIG, w));
      await writeHfDirectory(`${dir}/hf`, CONFIG, w, { dtype: "bf16" });
      const base = await logits(`${dir}/m.bin`);
      // f32 from llama2.c and from HF (bf16, rotate-half): the same model as the source
      await quantizeModelFile(`${dir}/m.bin`, `${dir}/f32.gguf`, { scheme: "f32", tokenizer: tokPath });
      assert.ok(nmse(await logits(`${dir}/f32.gguf`), base) < 1e-10, "llama2.c -> f32 GGUF");
      await quantizeModelFile(`${dir}/hf`, `${dir}/hf.gguf`, { scheme: "f32", tokenizer: tokPath });
      assert.ok(nmse(await logits(`${dir}/hf.gguf`), await logits(`${dir}/hf`)) < 1e-10, "HF -> GGUF");
      for (const scheme of ["q8_0", "q4_0", "int8_per_channel", "int4_g128"] as const) {
        const out = `${dir}/${scheme}.gguf`;
        const r = await quantizeModelFile(`${dir}/m.bin`, out, { scheme, tokenizer: tokPath });
        const src = await fileSource(out);
        const h = await readGgufHeader(src);
        src.close();
        assert.equal(h.metadata.get("llama_ts.quantization")?.value, scheme);
        assert.equal(h.metadata.get("general.file_type")?.value, scheme.includes("4") ? 2 : 7);
        assert.ok(h.metadata.get("tokenizer.ggml.tokens"), "the tokenizer travels in the file");
        const wq = h.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
        assert.equal(wq.dtype, scheme.includes("4") ? "q4_0" : "q8_0");
        assert.equal(h.tensors.find((t) => t.name === "blk.0.attn_norm.weight")!.dtype, "f32");
        const e = nmse(await logits(out), base);
        assert.ok(e > 0 && e < (scheme.includes("4") ? 0.05 : 1e-3), `${scheme} logits nmse ${e}`);
        assert.ok(
          r.matrixBitsPerWeight < (scheme.includes("4") ? 4.6 : 8.6),
          `${scheme} ${r.matrixBitsPerWeight}`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "SmoothQuant: smoothing alone leaves the logits unchanged; W8A8 files load with int8 activations",
  ignore: !tokPath,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      // give channel 3 of every layer input a large scale, as activation outliers look
      const w = synthWeights(CONFIG, 22);
      for (let l = 0; l < CONFIG.nLayers; l++) {
        for (const n of ["attn_norm", "ffn_norm"]) w.get(`l${l}.${n}`)![3] = 20;
      }
      await Deno.writeFile(`${dir}/m.bin`, writeLlama2c(CONFIG, w));
      const base = await logits(`${dir}/m.bin`);
      const r = await quantizeModelFile(`${dir}/m.bin`, `${dir}/smooth.gguf`, {
        scheme: "f32",
        tokenizer: tokPath,
        calibration,
        alpha: 0.5,
      });
      assert.ok(r.calibrationTokens! > 100, `calibration tokens ${r.calibrationTokens}`);
      const smoothed = await parseGguf(await fileSource(`${dir}/smooth.gguf`));
      const read = async (name: string): Promise<Float32Array> => {
        const e = smoothed.tensors.get(name)!, out = new Float32Array(e.byteLength / 4);
        dequantize("f32", await e.source.read(e.byteOffset, e.byteLength), out);
        return out;
      };
      const norm = await read("l0.attn_norm");
      assert.ok(Math.abs(norm[3] - 20) > 1, `smoothing moved the outlier channel's scale (${norm[3]})`);
      // wo's and w2's inputs are smoothed too (folded into wv's and w3's rows): their columns moved
      for (const name of ["l1.wo", "l1.w2"]) {
        const got = await read(name), src = w.get(name)!;
        assert.ok(nmse(got, src) > 1e-4, `${name} was not smoothed`);
      }
      smoothed.close();
      const e = nmse(await logits(`${dir}/smooth.gguf`), base);
      assert.ok(e < 1e-10, `smoothing changed the logits: nmse ${e}`);

      await quantizeModelFile(`${dir}/m.bin`, `${dir}/w8a8.gguf`, {
        scheme: "w8a8_smoothquant",
        tokenizer: tokPath,
        calibration,
        alpha: 0.8,
      });
      const m = await parseGguf(await fileSource(`${dir}/w8a8.gguf`));
      assert.equal(m.config.activationQuant, "int8");
      assert.equal(m.metadata["llama_ts.quantization"], "w8a8_smoothquant");
      assert.ok(Math.abs((m.metadata["llama_ts.smoothquant.alpha"] as number) - 0.8) < 1e-6);
      m.close();
      const q = nmse(await logits(`${dir}/w8a8.gguf`), base);
      assert.ok(q > 0 && q < 1e-2, `W8A8 logits nmse ${q}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "quantize: non-float source, alpha out of range, W8A8 without calibration, unknown file scheme",
  ignore: !tokPath,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeFile(`${dir}/m.bin`, writeLlama2c(CONFIG, synthWeights(CONFIG, 23)));
      await quantizeModelFile(`${dir}/m.bin`, `${dir}/q8.gguf`, { scheme: "q8_0", tokenizer: tokPath });
      await assert.rejects(
        () => quantizeModelFile(`${dir}/q8.gguf`, `${dir}/again.gguf`, { scheme: "q4_0" }),
        (e: unknown) =>
          e instanceof LlmError && e.code === "UNSUPPORTED_DTYPE" && /float weights.*is q8_0/.test(e.message),
      );
      for (const alpha of [-0.1, 1.5, NaN]) {
        await assert.rejects(
          () =>
            quantizeModelFile(`${dir}/m.bin`, `${dir}/a.gguf`, {
              scheme: "w8a8_smoothquant",
              tokenizer: tokPath,
              calibration,
              alpha,
            }),
          (e: unknown) => e instanceof LlmError && e.code === "BAD_REQUEST" && /alpha/.test(e.message),
        );
      }
      await assert.rejects(
        () =>
          quantizeModelFile(`${dir}/m.bin`, `${dir}/b.gguf`, {
            scheme: "w8a8_smoothquant",
            tokenizer: tokPath,
          }),
        (e: unknown) => e instanceof LlmError && e.code === "BAD_REQUEST" && /--calibration/.test(e.message),
      );
      await assert.rejects(
        () => quantizeModelFile(`${dir}/m.bin`, `${dir}/c.gguf`, { scheme: "q8_0" }),
        (e: unknown) => e instanceof LlmError && /--tokenizer/.test(e.message),
      );
      for (const f of ["a.gguf", "b.gguf", "c.gguf", "a.gguf.tmp"]) {
        assert.ok(!(await Deno.stat(`${dir}/${f}`).catch(() => undefined)), `${f} left behind`);
      }
      // a file naming a scheme this version does not know is refused, not run with other numerics
      const bytes = writeGgufBytes({
        metadata: { ...ggufMetadataForLlama(TINY_CONFIG), "llama_ts.quantization": "w4a4_magic" },
        tensors: requiredTensors(TINY_CONFIG).map((n) => {
          const shape = [...expectedShape(TINY_CONFIG, n)];
          return {
            name: ggufTensorName(n),
            dtype: "f32",
            shape,
            data: new Uint8Array(4 * shape.reduce((a, b) => a * b)),
          };
        }),
      });
      await Deno.writeFile(`${dir}/odd.gguf`, bytes);
      await assert.rejects(
        async () => (await parseGguf(await fileSource(`${dir}/odd.gguf`))).close(),
        (e: unknown) =>
          e instanceof LlmError && e.code === "UNSUPPORTED_MODEL" && /w4a4_magic/.test(e.message),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
