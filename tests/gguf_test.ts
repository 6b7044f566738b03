/**
 * GGUF reading and writing: the shared llama.cpp-made file, synthetic models round-tripped through
 * writeGguf → parseGguf, and every metadata type. Hostile input: gguf_hostile_test.ts.
 */
import assert from "node:assert/strict";
import { canonicalTensorName, type GgufKv, parseGguf, readGgufHeader } from "../src/format/gguf.ts";
import {
  ggufMetadataForLlama,
  type GgufTensorInput,
  ggufTensorName,
  type GgufValue,
  streamGguf,
  writeGguf,
  writeGgufBytes,
} from "../src/format/gguf_write.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { fileSource } from "../src/io/deno_fs.ts";
import { dequantize } from "../src/dtype.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import { requiredTensors } from "../src/format/model_file.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { sharedModel } from "./_util.ts";
import { CONFIG, isCode, llamaFile, llamaTensors, TOKENIZER } from "./_gguf.ts";

// ---- the shared llama.cpp file -----------------------------------------------------------------------

Deno.test("shared llama-2-tiny-random.gguf: header, config, tokenizer, F16 tensors", async () => {
  const path = sharedModel("llama-2-tiny-random.gguf");
  if (!path) return;
  const src = await fileSource(path);
  const header = await readGgufHeader(src);
  assert.equal(header.version, 3);
  assert.equal(header.alignment, 32);
  assert.equal(header.dataOffset % 32, 0);
  assert.equal(header.metadata.get("general.architecture")?.value, "llama");
  assert.equal(header.metadata.get("tokenizer.ggml.tokens")?.type, "array<string>");

  const model = await parseGguf(src);
  try {
    assert.equal(model.format, "gguf");
    const c = model.config;
    assert.deepEqual(
      [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.seqLen],
      [8, 32, 1, 2, 2, 4, 32000, 4096],
    );
    assert.equal(c.normEps, 1e-5);
    assert.equal(c.ropeTheta, 10000);
    assert.equal(c.ropeStyle, "interleaved");
    assert.equal(c.tiedEmbeddings, false);

    const tk = model.tokenizer!;
    assert.equal(tk.kind, "spm");
    assert.equal(tk.tokens.length, 32000);
    assert.deepEqual([tk.bosId, tk.eosId, tk.unkId], [1, 2, 0]);
    assert.deepEqual(tk.tokens.slice(0, 4), ["<unk>", "<s>", "</s>", "<0x00>"]);
    assert.ok(tk.tokens.includes("\u2581the"), "spm pieces keep ▁ for spaces");
    assert.equal(tk.scores?.length, 32000);
    assert.equal(tk.tokenTypes?.[3], 6, "<0x00> is a BYTE token");
    assert.equal(model.metadata["tokenizer.ggml.tokens"], "<array of 32000 strings>");
    assert.equal(model.metadata["general.name"], "LLaMA v2");

    const shapes = Object.fromEntries([...model.tensors].map(([k, t]) => [k, [t.dtype, ...t.shape]]));
    assert.deepEqual(shapes["tok_embd"], ["f16", 32000, 8]);
    assert.deepEqual(shapes["output"], ["f16", 32000, 8]);
    assert.deepEqual(shapes["l0.wq"], ["f16", 8, 8]);
    assert.deepEqual(shapes["l0.w1"], ["f16", 32, 8]);
    assert.deepEqual(shapes["l0.w2"], ["f16", 8, 32]);
    assert.deepEqual(shapes["norm"], ["f32", 8]);

    const emb = model.tensors.get("tok_embd")!;
    const x = new Float32Array(32000 * 8);
    dequantize("f16", await emb.source.read(emb.byteOffset, emb.byteLength), x);
    assert.ok(x.every(Number.isFinite), "all embedding values finite");
    assert.ok(x.some((v) => v !== 0), "embeddings are not all zero");
  } finally {
    model.close();
  }
});

// ---- synthetic models ------------------------------------------------------------------------------------

Deno.test("round trip: a GQA LLaMA in f32/f16/bf16/q8_0/q4_0/q4_1 through writeGguf → parseGguf", async () => {
  for (const [version, alignment] of [[3, undefined], [2, 64], [3, 256]] as const) {
    const { bytes, tensors } = llamaFile(CONFIG, { tokenizer: TOKENIZER, version, alignment });
    const header = await readGgufHeader(bytesSource(bytes));
    assert.equal(header.version, version);
    assert.equal(header.alignment, alignment ?? 32);
    assert.equal(header.metadata.get("llama.attention.layer_norm_rms_epsilon")?.type, "f32");
    assert.equal(header.metadata.get("general.alignment")?.type, "u32");

    const model = await parseGguf(bytesSource(bytes, "synthetic.gguf"));
    assert.deepEqual(model.config, CONFIG);
    assert.deepEqual(model.tokenizer, TOKENIZER);
    assert.equal(model.tensors.size, requiredTensors(CONFIG).length);
    for (const t of tensors) {
      if (t.name === "rope_freqs.weight") continue;
      const e = model.tensors.get(canonicalTensorName(t.name)!)!;
      assert.equal(e.dtype, t.dtype, t.name);
      assert.deepEqual(e.shape, t.shape, t.name);
      assert.equal(e.byteOffset % (alignment ?? 32), 0);
      assert.deepEqual(await e.source.read(e.byteOffset, e.byteLength), t.data, t.name);
    }
    model.close();
  }
});

Deno.test("round trip: tied embeddings, no tokenizer, bpe tokenizer, MHA defaults", async () => {
  const tied: LlamaConfig = { ...CONFIG, tiedEmbeddings: true, nKvHeads: 4, ropeFreqFactors: undefined };
  delete (tied as { ropeFreqFactors?: unknown }).ropeFreqFactors;
  const bpe: TokenizerData = {
    kind: "bpe",
    tokens: Array.from({ length: 96 }, (_, i) => `tok${i}`),
    merges: ["t o", "to k"],
    pre: "llama-bpe",
    bosId: 0,
    eosId: 1,
    eotIds: [5, 6],
    padId: 95,
    tokenTypes: new Array(96).fill(1),
  };
  for (const tokenizer of [undefined, bpe]) {
    const { bytes } = llamaFile(tied, { tokenizer });
    const model = await parseGguf(bytesSource(bytes));
    assert.deepEqual(model.config, tied);
    assert.ok(!model.tensors.has("output"));
    assert.deepEqual(model.tokenizer, tokenizer);
  }
  // Without head_count_kv and key_length the defaults apply (MHA, dim / nHeads).
  const meta = ggufMetadataForLlama(tied);
  delete meta["llama.attention.head_count_kv"];
  delete meta["llama.attention.key_length"];
  const bytes = writeGgufBytes({ metadata: meta, tensors: llamaTensors(tied) });
  assert.deepEqual((await parseGguf(bytesSource(bytes))).config, tied);
});

Deno.test("writer: streamGguf yields the same bytes; spaces and token types derived for llama.cpp", async () => {
  const tensors = llamaTensors(CONFIG);
  const metadata = ggufMetadataForLlama(CONFIG, TOKENIZER);
  const eager = writeGgufBytes({ metadata, tensors });
  const parts: Uint8Array[] = [];
  const lazy = tensors.map((t, i) => ({ ...t, data: i % 2 ? t.data : () => Promise.resolve(t.data) }));
  for await (const c of streamGguf({ metadata, tensors: lazy })) parts.push(c);
  assert.deepEqual(new Uint8Array(await new Blob(parts as BlobPart[]).arrayBuffer()), eager);
  assert.equal(writeGguf({ metadata, tensors }).reduce((a, c) => a + c.byteLength, 0), eager.byteLength);

  const literal: TokenizerData = {
    kind: "spm",
    tokens: ["<unk>", "<s>", "</s>", "<0x41>", " a", "b c"],
    bosId: 1,
    eosId: 2,
    unkId: 0,
    spaceIsLiteral: true,
  };
  const h = await readGgufHeader(
    bytesSource(writeGgufBytes({ metadata: ggufMetadataForLlama(CONFIG, literal), tensors: [] })),
  );
  assert.deepEqual(h.metadata.get("tokenizer.ggml.tokens")?.value, [
    "<unk>",
    "<s>",
    "</s>",
    "<0x41>",
    "\u2581a",
    "b\u2581c",
  ]);
  assert.deepEqual(h.metadata.get("tokenizer.ggml.token_type"), {
    type: "array<i32>",
    value: [2, 3, 3, 6, 1, 1],
  });
});

Deno.test("tensor names map both ways", () => {
  for (const name of requiredTensors({ ...CONFIG, nLayers: 12 })) {
    assert.equal(canonicalTensorName(ggufTensorName(name)), name);
  }
  assert.equal(ggufTensorName("l11.w2"), "blk.11.ffn_down.weight");
  assert.equal(canonicalTensorName("blk.0.attn_output.weight"), "l0.wo");
  assert.equal(canonicalTensorName("blk.0.attn_q.bias"), undefined);
  assert.equal(canonicalTensorName("blk.01.attn_q.weight"), undefined);
  assert.equal(canonicalTensorName("blk.0.toString.weight"), undefined);
  assert.throws(() => ggufTensorName("l0.nope"), isCode("BAD_REQUEST"));
});

// ---- metadata types ------------------------------------------------------------------------------------

Deno.test("metadata: every value type round-trips, typed and inferred", async () => {
  const metadata: Record<string, GgufValue> = {
    u8: { type: "u8", value: 255 },
    i8: { type: "i8", value: -128 },
    u16: { type: "u16", value: 65535 },
    i16: { type: "i16", value: -32768 },
    u32: { type: "u32", value: 4294967295 },
    i32: { type: "i32", value: -2147483648 },
    f32: { type: "f32", value: 0.1 },
    f32exact: { type: "f32", value: Math.fround(0.1) },
    f64: { type: "f64", value: Math.PI },
    boolT: true,
    boolF: { type: "bool", value: false },
    string: "héllo ▁ 🦙 \u0000 end",
    emptyString: "",
    u64big: { type: "u64", value: 2n ** 64n - 1n },
    u64small: { type: "u64", value: 5n },
    i64big: { type: "i64", value: -(2n ** 63n) },
    i64small: { type: "i64", value: -5 },
    inferU32: 7,
    inferI32: -7,
    inferU64: 2 ** 40,
    inferI64: -(2 ** 40),
    inferF32: 1.5,
    inferBig: 2n ** 60n,
    f32s: new Float32Array([1.5, -2, 3.25]),
    i32s: new Int32Array([-1, 0, 1]),
    u8s: new Uint8Array([0, 255]),
    i64s: new BigInt64Array([-(2n ** 62n), 3n]),
    f64s: new Float64Array([Math.E]),
    strings: ["a", "", "ü"],
    bools: [true, false],
    plainInts: [1, 2, 3],
    plainNeg: [-1, 2],
    plainFloats: [1, 2.5],
    taggedI16: { type: "array", itemType: "i16", value: [-3, 4] },
    empty: [],
    nested: [[1, 2], [3]],
    nestedMixed: {
      type: "array",
      itemType: "array",
      value: [{ type: "array", itemType: "u8", value: [9] }, ["x"]],
    },
    deep: [[[1]], [[2, 3]]],
  };
  const h = await readGgufHeader(bytesSource(writeGgufBytes({ metadata, tensors: [] })));
  const got = (k: string): GgufKv | undefined => h.metadata.get(k);
  const want: Record<string, [string, unknown]> = {
    u8: ["u8", 255],
    i8: ["i8", -128],
    u16: ["u16", 65535],
    i16: ["i16", -32768],
    u32: ["u32", 4294967295],
    i32: ["i32", -2147483648],
    f32: ["f32", 0.1],
    f32exact: ["f32", 0.1],
    f64: ["f64", Math.PI],
    boolT: ["bool", true],
    boolF: ["bool", false],
    string: ["string", "héllo ▁ 🦙 \u0000 end"],
    emptyString: ["string", ""],
    u64big: ["u64", 2n ** 64n - 1n],
    u64small: ["u64", 5],
    i64big: ["i64", -(2n ** 63n)],
    i64small: ["i64", -5],
    inferU32: ["u32", 7],
    inferI32: ["i32", -7],
    inferU64: ["u64", 2 ** 40],
    inferI64: ["i64", -(2 ** 40)],
    inferF32: ["f32", 1.5],
    inferBig: ["u64", 2n ** 60n],
    f32s: ["array<f32>", [1.5, -2, 3.25]],
    i32s: ["array<i32>", [-1, 0, 1]],
    u8s: ["array<u8>", [0, 255]],
    i64s: ["array<i64>", [-(2n ** 62n), 3]],
    f64s: ["array<f64>", [Math.E]],
    strings: ["array<string>", ["a", "", "ü"]],
    bools: ["array<bool>", [true, false]],
    plainInts: ["array<u32>", [1, 2, 3]],
    plainNeg: ["array<i32>", [-1, 2]],
    plainFloats: ["array<f32>", [1, 2.5]],
    taggedI16: ["array<i16>", [-3, 4]],
    empty: ["array<u32>", []],
    nested: ["array<array<u32>>", [[1, 2], [3]]],
    nestedMixed: ["array<array>", [[9], ["x"]]],
    deep: ["array<array<array<u32>>>", [[[1]], [[2, 3]]]],
    "general.alignment": ["u32", 32],
  };
  assert.deepEqual([...h.metadata.keys()], Object.keys(want));
  for (const [k, [type, value]] of Object.entries(want)) assert.deepEqual(got(k), { type, value }, k);
});

Deno.test("writer: bad values and tensors are BAD_REQUEST", () => {
  const t = (over: Partial<GgufTensorInput>): GgufTensorInput => ({
    name: "w",
    dtype: "f32",
    shape: [2, 4],
    data: new Uint8Array(32),
    ...over,
  });
  const bad: [string, () => unknown][] = [
    ["u8 out of range", () => writeGguf({ metadata: { k: { type: "u8", value: 300 } }, tensors: [] })],
    ["i32 fraction", () => writeGguf({ metadata: { k: { type: "i32", value: 1.5 } }, tensors: [] })],
    ["string typed as u32", () => writeGguf({ metadata: { k: { type: "u32", value: "x" } }, tensors: [] })],
    ["mixed array", () => writeGguf({ metadata: { k: [1, "a"] }, tensors: [] })],
    ["unknown type", () => writeGguf({ metadata: { k: { type: "u128" as "u8", value: 1 } }, tensors: [] })],
    ["alignment 48", () => writeGguf({ metadata: {}, tensors: [], alignment: 48 })],
    [
      "alignment conflict",
      () => writeGguf({ metadata: { "general.alignment": 64 }, tensors: [], alignment: 32 }),
    ],
    ["short data", () => writeGguf({ metadata: {}, tensors: [t({ data: new Uint8Array(31) })] })],
    ["repeated name", () => writeGguf({ metadata: {}, tensors: [t({}), t({})] })],
    ["64-byte name", () => writeGguf({ metadata: {}, tensors: [t({ name: "x".repeat(64) })] })],
    ["5 dims", () => writeGguf({ metadata: {}, tensors: [t({ shape: [1, 1, 1, 2, 4] })] })],
    ["partial q4_0 row", () => writeGguf({ metadata: {}, tensors: [t({ dtype: "q4_0", shape: [2, 16] })] })],
  ];
  for (const [what, f] of bad) assert.throws(f, isCode("BAD_REQUEST"), what);
});
