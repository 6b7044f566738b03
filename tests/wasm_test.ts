/**
 * The wasm backend beyond single-op parity (tests/ops_test.ts runs every op on it): whole synthetic
 * models against ref for every weight and KV dtype, identical bits on 1 and 2 threads, the plain-SIMD
 * build against the relaxed one, weight-only int8/int4 quantization against its host model, the golden
 * outputs single-threaded, the 4 GiB limit, and the committed kernel module against its sources.
 */
import assert from "node:assert/strict";
import type { Backend } from "../src/backend.ts";
import type { DType } from "../src/types.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { Engine, LlmError, loadModel, pickBackend } from "../mod.ts";
import { createWasmBackend } from "../src/backends/wasm/wasm.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { parseGguf } from "../src/format/gguf.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { nmse, NMSE_TOLERANCE, randn, rowsStep, sharedModel } from "./_util.ts";
import { synthGgufBytes, synthWeights } from "./_synth.ts";
import { placeholderVocab, simulateQuant } from "./_memory_model.ts";

const base = {
  nLayers: 2,
  vocabSize: 320,
  seqLen: 64,
  normEps: 1e-5,
  ropeTheta: 10000,
  tiedEmbeddings: false,
};
/** Float weights: widths off the SIMD width (headDim 14, hidden 150). */
const FLOAT_CONFIG: LlamaConfig = {
  ...base,
  dim: 84,
  hiddenDim: 150,
  nHeads: 6,
  nKvHeads: 2,
  headDim: 14,
  ropeStyle: "half",
};
/** Quantized weights need rows of whole 32-blocks; int4 at load needs 128 (dim 128, hidden 256). */
const QUANT_CONFIG: LlamaConfig = {
  ...base,
  dim: 128,
  hiddenDim: 256,
  nHeads: 8,
  nKvHeads: 2,
  headDim: 16,
  ropeStyle: "interleaved",
};

const VOCAB: TokenizerData = placeholderVocab(320);
const IDS = Array.from({ length: 21 }, (_, i) => (i * 37 + 5) % 320);

function gguf(config: LlamaConfig, dtype: DType, weights = synthWeights(config, 3)): Uint8Array {
  return synthGgufBytes(config, weights, dtype, VOCAB);
}

/** Logits after each prefix of IDS: a 16-token prefill step, then one token at a time. */
async function logits(
  file: Uint8Array,
  backend: "ref" | Backend,
  options: { kvDType?: DType } = {},
): Promise<Float32Array> {
  const model = await parseGguf(bytesSource(file));
  using e = await Engine.create(model, createTokenizer(model.tokenizer ?? VOCAB), {
    backend,
    kvDType: options.kvDType,
    maxStepTokens: 16,
  });
  const out: number[] = [];
  for await (const ev of e.generate(IDS.slice(0, 16), { maxTokens: 6, temperature: 0, ignoreEos: true })) {
    if (ev.type === "done") out.push(...ev.result.generatedIds);
  }
  const rows = await e.logitsFor(IDS);
  const flat = new Float32Array(rows.length * 320 + out.length);
  rows.forEach((r, i) => flat.set(r, i * 320));
  flat.set(out, rows.length * 320); // greedy ids after a prefill step ride along
  return flat;
}

for (const dtype of ["f32", "f16", "bf16", "q8_0", "q4_0"] as const) {
  for (const kv of ["f32", "f16", "i8"] as const) {
    Deno.test(`wasm: ${dtype} weights, ${kv} KV: logits match ref`, async () => {
      const config = dtype.startsWith("q") ? QUANT_CONFIG : FLOAT_CONFIG;
      const file = gguf(config, dtype);
      const want = await logits(file, "ref", { kvDType: kv });
      for (const threads of [1, 2]) {
        using b = await createWasmBackend({ threads });
        const got = await logits(file, b, { kvDType: kv });
        const e = nmse(got.subarray(0, IDS.length * 320), want.subarray(0, IDS.length * 320));
        const tol = Math.max(NMSE_TOLERANCE[dtype], kv === "f32" ? 0 : 1e-6);
        assert.ok(e < tol, `${threads} threads: nmse ${e}`);
      }
    });
  }
}

Deno.test("wasm: 1 and 2 threads give identical bits; the plain-SIMD build matches the relaxed one", async () => {
  for (const dtype of ["f32", "q8_0", "q4_0"] as const) {
    const file = gguf(QUANT_CONFIG, dtype);
    const runs: Float32Array[] = [];
    for (const [threads, relaxed] of [[1, true], [2, true], [2, false]] as const) {
      using b = await createWasmBackend({ threads }, { relaxed });
      runs.push(await logits(file, b, { kvDType: "i8" }));
    }
    assert.deepEqual(runs[1], runs[0], `${dtype}: 2 threads differ from 1`);
    const e = nmse(runs[2], runs[1]);
    assert.ok(e < 1e-10, `${dtype}: plain SIMD vs relaxed nmse ${e}`);
  }
});

Deno.test("wasm: a model placed past 2 GiB of wasm memory (addresses >= 2^31) gives the same bits", async () => {
  // The JS side once shifted such addresses with a signed >> (a RangeError at load); the bytes below the
  // model are reserved but never touched, so this needs address space, not 2 GiB of RAM.
  const file = gguf(QUANT_CONFIG, "q8_0");
  const runs: Float32Array[] = [];
  for (const high of [false, true]) {
    using b = await createWasmBackend({ threads: 2 });
    const pad = high ? b.alloc("f32", [560_000_000], "compute", "2 GiB pad") : undefined;
    try {
      runs.push(await logits(file, b, { kvDType: "i8" }));
    } finally {
      if (pad) b.free(pad);
    }
  }
  assert.deepEqual(runs[1], runs[0]);
});

Deno.test("wasm: int8 KV cache bytes and scales equal ref's (same f32 arithmetic)", async () => {
  const heads = 3, hd = 12, kd = heads * hd, rows = 6;
  const k = randn(rows * kd, 81, 3), v = randn(rows * kd, 82, 0.01);
  k.fill(0, kd, kd + hd); // an all-zero head: scale 0, q 0
  for (let i = 0; i < k.length; i += 7) k[i] = Math.round(k[i] * 4) / 4; // values on rounding ties
  const dump = async (b: Backend): Promise<Uint8Array[]> => {
    const t = (shape: number[], dtype: DType, usage: "kv" | "compute", label: string) =>
      b.alloc(dtype, shape, usage, label);
    const cache = {
      k: t([16, kd], "i8", "kv", "ck"),
      v: t([16, kd], "i8", "kv", "cv"),
      kScale: t([16, heads], "f32", "kv", "ks"),
      vScale: t([16, heads], "f32", "kv", "vs"),
      blockSize: 4,
    };
    const kt = t([rows, kd], "f32", "compute", "k"), vt = t([rows, kd], "f32", "compute", "v");
    await b.upload(kt, k);
    await b.upload(vt, v);
    using g = b.compile([{ op: "kv_write", k: kt, v: vt, cache }]);
    await g.run({
      nTokens: rows,
      tokens: new Int32Array(rows),
      positions: Int32Array.from({ length: rows }, (_, i) => i),
      seqIndex: new Int32Array(rows),
      blockTables: Int32Array.of(3, 1, 0, 2),
      maxBlocksPerSeq: 4,
      logitRows: new Int32Array(0),
    });
    const out = [];
    for (const x of [cache.k, cache.v, cache.kScale, cache.vScale]) {
      out.push(new Uint8Array(await b.download(x)));
    }
    return out;
  };
  using ref = await pickBackend("ref");
  using wasm = await createWasmBackend({ threads: 2 });
  const want = await dump(ref), got = await dump(wasm);
  // only the written rows are defined: blocks 3 and 1 (rows 12..15, 4..5)
  const rowsOf = (a: Uint8Array, width: number): number[] =>
    [12, 13, 14, 15, 4, 5].flatMap((r) => [...a.subarray(r * width, (r + 1) * width)]);
  [kd, kd, heads * 4, heads * 4].forEach((w, i) => assert.deepEqual(rowsOf(got[i], w), rowsOf(want[i], w)));
});

for (const scheme of ["int8", "int4"] as const) {
  Deno.test(`wasm: weightQuant ${scheme} quantizes like the host model (embed exact, logits close)`, async () => {
    const weights = synthWeights(QUANT_CONFIG, 9);
    weights.get("tok_embd")![5] = 0; // keep a zero and an all-zero group in play
    weights.get("tok_embd")!.fill(0, 256, 384);
    const host = new Map([...weights].map(([name, w]) => {
      const shape = expectedShape(QUANT_CONFIG, name);
      return [name, shape.length === 2 ? simulateQuant(w, shape[0], scheme) : w];
    }));
    using b = await createWasmBackend({ threads: 2, weightQuant: scheme });
    // embed returns dequantized rows: scale * q, exactly the host model's values
    const table = weights.get("tok_embd")!, dim = QUANT_CONFIG.dim;
    const t = b.alloc("f32", [320, dim], "weights", "tok_embd");
    await b.upload(t, table);
    const out = b.alloc("f32", [4, dim], "compute", "out");
    using g = b.compile([{ op: "embed", table: t, out }]);
    const ids = Int32Array.of(0, 2, 3, 319);
    await g.run(rowsStep(4, ids));
    const got = new Float32Array(await b.download(out));
    const want = host.get("tok_embd")!;
    ids.forEach((id, r) => {
      assert.deepEqual([...got.subarray(r * dim, (r + 1) * dim)], [
        ...want.subarray(id * dim, (id + 1) * dim),
      ]);
    });
    // whole model: wasm quantizing f32 weights at load vs ref running the host-quantized weights
    const wantLogits = await logits(gguf(QUANT_CONFIG, "f32", host), "ref");
    using b2 = await createWasmBackend({ threads: 2, weightQuant: scheme });
    const gotLogits = await logits(gguf(QUANT_CONFIG, "f32", weights), b2);
    const e = nmse(gotLogits.subarray(0, IDS.length * 320), wantLogits.subarray(0, IDS.length * 320));
    assert.ok(e < 1e-3, `${scheme} logits nmse ${e}`);
  });
}

const modelPath = sharedModel("stories260K.bin"), tokPath = sharedModel("tok512.bin");
const goldenPath = sharedModel("stories260K.golden.json");

Deno.test({
  name: "wasm: stories260K golden cases single-threaded (tests/golden_test.ts runs the default threads)",
  ignore: !modelPath || !tokPath || !goldenPath,
  fn: async () => {
    const golden = JSON.parse(await Deno.readTextFile(goldenPath!)) as {
      cases: { prompt: string; generated_ids: number[] }[];
    };
    const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
    using b = await createWasmBackend({ threads: 1 });
    using e = await Engine.create(model, tokenizer, { backend: b });
    model.close();
    for (const c of golden.cases) {
      const r = await e.complete(c.prompt, { maxTokens: 64, temperature: 0 });
      assert.deepEqual(r.generatedIds, c.generated_ids.slice(0, 64), c.prompt);
    }
  },
});

Deno.test("wasm: models past wasm32's 4 GiB are refused before loading, with the numbers", async () => {
  using b = await createWasmBackend({ threads: 1 });
  const tensors = Array.from(
    { length: 16 },
    (_, i) => ({ dtype: "f16" as DType, shape: [32000, 4096], name: `w${i}` }),
  );
  assert.throws(
    () => b.checkFits!(tensors, 1 << 30),
    (e: unknown) => e instanceof LlmError && e.code === "OUT_OF_MEMORY" && /GiB.*4 GiB/.test(e.message),
  );
  b.checkFits!(tensors.slice(0, 1), 1 << 20); // 250 MiB fits
  assert.throws(
    () => b.alloc("f32", [1 << 20, 1100], "weights", "huge"),
    (e: unknown) => e instanceof LlmError && e.code === "OUT_OF_MEMORY" && /huge/.test(e.message),
  );
  await assert.rejects(createWasmBackend({ threads: 0 }), /threads must be an integer/);
});

Deno.test("wasm: Engine.create refuses a LLaMA-7B f16 model before reading any weight", async () => {
  const config: LlamaConfig = {
    ...base,
    dim: 4096,
    hiddenDim: 11008,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 32,
    headDim: 128,
    vocabSize: 320,
    seqLen: 4096,
    ropeStyle: "interleaved",
  };
  let reads = 0;
  const source = {
    name: "never read",
    size: 2 ** 40,
    read: () => {
      reads++;
      return Promise.reject(new Error("weights were read"));
    },
    close: () => {},
  };
  const tensors = new Map(
    requiredTensors(config).map((name) => {
      const shape = [...expectedShape(config, name)], dtype: DType = shape.length === 2 ? "f16" : "f32";
      return [name, {
        name,
        dtype,
        shape,
        source,
        byteOffset: 0,
        byteLength: shape.reduce((a, b) => a * b) * 2,
      }];
    }),
  );
  const model = { format: "gguf" as const, config, tensors, tokenizer: VOCAB, metadata: {}, close: () => {} };
  using b = await createWasmBackend({ threads: 1 });
  await assert.rejects(
    Engine.create(model, createTokenizer(VOCAB), { backend: b, contextSize: 256 }),
    (e: unknown) =>
      e instanceof LlmError && e.code === "OUT_OF_MEMORY" && /needs 12\.\d+ GiB.*4 GiB/.test(e.message),
  );
  assert.equal(reads, 0);
});

const clang = await new Deno.Command("clang-19", { args: ["--version"], stdout: "null", stderr: "null" })
  .output()
  .then((o) => o.success, () => false);
if (!clang) {
  console.warn("SKIP wasm kernel staleness check: clang-19 not found (apt-get install clang-19 lld-19)");
}

Deno.test({
  name: "wasm: the committed kernel module matches kernels/wasm/*.c (deno task build:wasm --check)",
  ignore: !clang,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../tools/build_wasm.ts", import.meta.url).pathname, "--check"],
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
  },
});
