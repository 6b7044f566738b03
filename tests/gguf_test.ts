/**
 * GGUF reading and writing: the shared llama.cpp-made file, synthetic models round-tripped through
 * writeGguf → parseGguf, every metadata type, and hostile input (truncation, absurd counts, mutations).
 */
import assert from "node:assert/strict";
import {
  canonicalTensorName,
  ggmlTypeName,
  type GgufHeader,
  type GgufKv,
  parseGguf,
  readGgufHeader,
} from "../src/format/gguf.ts";
import {
  ggufMetadataForLlama,
  type GgufTensorInput,
  ggufTensorName,
  type GgufValue,
  ropeFreqsTensor,
  streamGguf,
  writeGguf,
  writeGgufBytes,
} from "../src/format/gguf_write.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { fileSource } from "../src/io/deno_fs.ts";
import { dequantize, quantize } from "../src/dtype.ts";
import { LlmError, type LlmErrorCode } from "../src/errors.ts";
import type { DType } from "../src/types.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { randn, rng, sharedModel } from "./_util.ts";

const isCode = (code: LlmErrorCode) => (e: unknown): boolean => e instanceof LlmError && e.code === code;

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

const CONFIG: LlamaConfig = {
  dim: 64,
  hiddenDim: 128,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 16,
  vocabSize: 96,
  seqLen: 128,
  normEps: 1e-5,
  ropeTheta: 500000,
  ropeStyle: "interleaved",
  ropeFreqFactors: [1, 1, 1, 1.5, 2, 4, 8, 8],
  tiedEmbeddings: false,
};

const TOKENIZER: TokenizerData = {
  kind: "spm",
  tokens: [
    "<unk>",
    "<s>",
    "</s>",
    ...Array.from({ length: 16 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`),
    ...Array.from({ length: 77 }, (_, i) => `\u2581t${i}`),
  ],
  scores: Array.from({ length: 96 }, (_, i) => Math.fround(-i * 0.25)),
  tokenTypes: Array.from({ length: 96 }, (_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 19 ? 6 : 1)),
  bosId: 1,
  eosId: 2,
  unkId: 0,
  eotIds: [2],
  addBos: true,
  addSpacePrefix: false,
  chatTemplate: "{% for m in messages %}{{ m.content }}{% endfor %}",
};

const DTYPE_CYCLE: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"];

/** GGUF tensors for a config: every weight in a different dtype, norms f32. */
function llamaTensors(c: LlamaConfig, seed = 1): GgufTensorInput[] {
  const out: GgufTensorInput[] = [];
  requiredTensors(c).forEach((name, i) => {
    const shape = expectedShape(c, name);
    const dtype = shape.length === 1 ? "f32" : DTYPE_CYCLE[i % DTYPE_CYCLE.length];
    const n = shape.reduce((a, b) => a * b, 1);
    out.push({ name: ggufTensorName(name), dtype, shape, data: quantize(dtype, randn(n, seed + i, 0.5)) });
  });
  const rope = ropeFreqsTensor(c);
  if (rope) out.push(rope);
  return out;
}

function llamaFile(
  c = CONFIG,
  options: { tokenizer?: TokenizerData; alignment?: number; version?: 2 | 3 } = { tokenizer: TOKENIZER },
): { bytes: Uint8Array; tensors: GgufTensorInput[] } {
  const tensors = llamaTensors(c);
  const bytes = writeGgufBytes({
    metadata: ggufMetadataForLlama(c, options.tokenizer),
    tensors,
    alignment: options.alignment,
    version: options.version,
  });
  return { bytes, tensors };
}

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

// ---- hostile input --------------------------------------------------------------------------------------

/** A small complete model to corrupt: 1 layer, tiny vocabulary. */
function smallModel(): Uint8Array {
  const c: LlamaConfig = {
    ...CONFIG,
    dim: 32,
    hiddenDim: 64,
    nLayers: 1,
    nHeads: 2,
    nKvHeads: 1,
    vocabSize: 24,
  };
  const tk: TokenizerData = { ...TOKENIZER, tokens: TOKENIZER.tokens.slice(0, 24) };
  delete (tk as { scores?: unknown }).scores;
  delete (tk as { tokenTypes?: unknown }).tokenTypes;
  return llamaFile({ ...c, ropeFreqFactors: [1, 1, 1, 1, 2, 2, 4, 8] }, { tokenizer: tk }).bytes;
}

function patched(bytes: Uint8Array, at: number, write: (dv: DataView) => void): Uint8Array {
  const out = bytes.slice();
  write(new DataView(out.buffer, at));
  return out;
}

/** Offset just past a tensor's name string in the header (where its n_dims starts). */
function afterName(bytes: Uint8Array, name: string): number {
  const enc = new TextEncoder().encode(name);
  for (let i = 0; i < bytes.length; i++) {
    if (enc.every((b, j) => bytes[i + j] === b) && bytes[i - 8] === enc.length) return i + enc.length;
  }
  throw new Error(`${name} not found`);
}

async function rejects(bytes: Uint8Array, code: LlmErrorCode, what: string, match?: RegExp): Promise<void> {
  await assert.rejects(
    () => parseGguf(bytesSource(bytes, "bad.gguf")),
    (e) => isCode(code)(e) && (!match || match.test((e as Error).message)),
    what,
  );
}

Deno.test("hostile: truncated at every header byte and inside the data is MODEL_FORMAT", async () => {
  const bytes = smallModel();
  const h: GgufHeader = await readGgufHeader(bytesSource(bytes));
  const cuts = [...Array(h.dataOffset + 1).keys()];
  for (let at = h.dataOffset + 1; at < bytes.length; at += 97) cuts.push(at);
  cuts.push(bytes.length - 1);
  for (const cut of cuts) await rejects(bytes.subarray(0, cut), "MODEL_FORMAT", `cut at ${cut}`);
  await rejects(bytes.subarray(0, bytes.length - 1), "MODEL_FORMAT", "last byte", /truncated/);
});

Deno.test("hostile: magic, versions, absurd counts and lengths, n_dims, unknown types", async () => {
  const bytes = smallModel();
  const u32At = (at: number, v: number) => patched(bytes, at, (dv) => dv.setUint32(0, v, true));
  const u64At = (at: number, v: bigint) => patched(bytes, at, (dv) => dv.setBigUint64(0, v, true));
  await rejects(patched(bytes, 0, (dv) => dv.setUint8(3, 0x47)), "MODEL_FORMAT", "magic", /not a GGUF/);
  await rejects(new TextEncoder().encode("tjgg\x01\x00\x00\x00"), "MODEL_FORMAT", "ggjt", /pre-GGUF/);
  await rejects(u32At(4, 1), "MODEL_FORMAT", "v1", /re-convert/);
  await rejects(u32At(4, 4), "MODEL_FORMAT", "v4", /version 4/);
  await rejects(u32At(4, 0x03000000), "MODEL_FORMAT", "big-endian", /big-endian/);
  await rejects(u64At(8, 2n ** 60n), "MODEL_FORMAT", "n_tensors 2^60", /tensor count/);
  await rejects(u64At(16, 2n ** 60n), "MODEL_FORMAT", "n_kv 2^60", /metadata count/);
  await rejects(u64At(16, 2n ** 64n - 1n), "MODEL_FORMAT", "n_kv 2^64-1");
  await rejects(u64At(24, 2n ** 40n), "MODEL_FORMAT", "key length 2^40", /length/);
  await rejects(u64At(24, 2n ** 63n), "MODEL_FORMAT", "key length 2^63");
  await rejects(new Uint8Array(0), "MODEL_FORMAT", "empty file");

  // The tokens array: its count sits after the key, the u32 type 9 and the u32 item type 8.
  const tokensKey = afterName(bytes, "tokenizer.ggml.tokens");
  await rejects(u64At(tokensKey + 8, 2n ** 61n), "MODEL_FORMAT", "array length 2^61", /array length/);
  await rejects(u32At(tokensKey, 13), "MODEL_FORMAT", "value type 13", /unknown value type/);
  await rejects(u32At(tokensKey + 4, 99), "MODEL_FORMAT", "item type 99", /unknown value type/);
  const firstToken = tokensKey + 16;
  await rejects(u64At(firstToken, 2n ** 40n), "MODEL_FORMAT", "string length 2^40");

  const q = afterName(bytes, "blk.0.attn_q.weight");
  await rejects(u32At(q, 9), "MODEL_FORMAT", "n_dims 9", /9 dimensions/);
  await rejects(u32At(q, 0), "MODEL_FORMAT", "n_dims 0");
  await rejects(u64At(q + 4, 2n ** 62n), "MODEL_FORMAT", "ne 2^62");
  await rejects(u64At(q + 4, 2n ** 30n), "MODEL_FORMAT", "ne past the file", /passes the end/);
  await rejects(u64At(q + 4 + 16 + 4, 2n ** 58n), "MODEL_FORMAT", "offset 2^58");
  await rejects(u64At(q + 4 + 16 + 4, 8n), "MODEL_FORMAT", "unaligned offset", /aligned/);
  await rejects(u64At(q + 4, 33n), "MODEL_FORMAT", "shape disagrees with the config");

  // Unknown ggml types parse in the header (for `info`) but fail the model with UNSUPPORTED_DTYPE.
  for (
    const [id, name] of [[13, "Q5_K"], [10, "Q2_K"], [6, "Q5_0"], [23, "IQ4_XS"], [
      200,
      "unknown ggml type 200",
    ]] as const
  ) {
    const file = u32At(q + 4 + 16, id);
    const h = await readGgufHeader(bytesSource(file));
    const t = h.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    assert.equal(t.dtype, undefined);
    assert.equal(ggmlTypeName(t.ggmlType), name);
    await rejects(file, "UNSUPPORTED_DTYPE", name, new RegExp(`blk\\.0\\.attn_q\\.weight.*${name}.*Q4_K`));
  }

  // A known type edited into another known one of another size: the tensor's bytes no longer match the data
  // layout (a smaller type leaves a gap before the next tensor, a larger one overlaps it), never garbage
  // weights. (f16 <-> bf16 keeps every size and cannot be told from the layout.)
  const per32: Record<number, number> = { 0: 128, 1: 64, 30: 64, 8: 34, 2: 18 }; // bytes per 32 elements
  const own = h0(await readGgufHeader(bytesSource(bytes)));
  for (const id of [0, 1, 8, 2].filter((i) => per32[i] !== per32[own])) {
    await rejects(
      u32At(q + 4 + 16, id),
      "MODEL_FORMAT",
      `type ${id}`,
      /types or shapes do not match the data/,
    );
  }
});

const h0 = (h: GgufHeader): number => h.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.ggmlType;

Deno.test("hostile: architecture, missing keys and bad tokenizer metadata", async () => {
  const base = ggufMetadataForLlama(CONFIG, TOKENIZER);
  const file = (meta: Record<string, GgufValue>) =>
    writeGgufBytes({ metadata: meta, tensors: llamaTensors(CONFIG) });
  await rejects(file({ ...base, "general.architecture": "qwen2" }), "UNSUPPORTED_MODEL", "qwen2", /"qwen2"/);
  const noArch = { ...base };
  delete noArch["general.architecture"];
  await rejects(file(noArch), "MODEL_FORMAT", "no architecture", /general\.architecture/);
  const noDim = { ...base };
  delete noDim["llama.embedding_length"];
  await rejects(file(noDim), "MODEL_FORMAT", "no dim", /embedding_length/);
  await rejects(file({ ...base, "llama.block_count": "two" }), "MODEL_FORMAT", "string count", /block_count/);
  await rejects(file({ ...base, "llama.attention.head_count": 0 }), "MODEL_FORMAT", "zero heads");
  assert.throws(
    () => file({ ...base, "general.alignment": 3 }),
    isCode("BAD_REQUEST"),
    "the writer refuses it",
  );
  await rejects(
    file({ ...base, "tokenizer.ggml.scores": [1, 2] }),
    "TOKENIZER_FORMAT",
    "short scores",
    /scores/,
  );
  await rejects(file({ ...base, "tokenizer.ggml.tokens": [1, 2] }), "TOKENIZER_FORMAT", "numeric tokens");
  const other = await parseGguf(bytesSource(file({ ...base, "tokenizer.ggml.model": "t5" })));
  assert.equal(other.tokenizer, undefined);
  assert.equal(other.metadata["tokenizer.ggml.model"], "t5");
  // Out-of-range special ids are dropped, as llama.cpp does, rather than failing the load.
  const pad = await parseGguf(
    bytesSource(file({ ...base, "tokenizer.ggml.padding_token_id": { type: "i32", value: -1 } })),
  );
  assert.equal(pad.tokenizer?.padId, undefined);
});

Deno.test("hostile: counts that fit a multi-GB file are still refused before any big read", async () => {
  /** An 8 GiB source: `head` then zeros, recording the largest read asked of it. */
  const huge = (head: Uint8Array) => {
    const src = {
      name: "huge.gguf",
      size: 2 ** 33,
      largest: 0,
      read(offset: number, length: number): Promise<Uint8Array> {
        src.largest = Math.max(src.largest, length);
        if (length > 1 << 26) throw new Error("the parser asked for a huge read");
        const out = new Uint8Array(length);
        out.set(head.subarray(offset, offset + length));
        return Promise.resolve(out);
      },
      close(): void {},
    };
    return src;
  };
  const head = (nTensors: bigint, nKv: bigint, rest: number[]): Uint8Array => {
    const b = new Uint8Array(24 + rest.length * 8);
    const dv = new DataView(b.buffer);
    b.set(new TextEncoder().encode("GGUF"));
    dv.setUint32(4, 3, true);
    dv.setBigUint64(8, nTensors, true);
    dv.setBigUint64(16, nKv, true);
    rest.forEach((v, i) => dv.setBigUint64(24 + 8 * i, BigInt(v), true));
    return b;
  };
  // key "k" (length 1, then 'k' packed into the next u64 with the value type 9 = array and item type 0 = u8)
  const arrayKv = (count: number) => {
    const b = head(0n, 1n, [1, 0, 0]);
    b[32] = 0x6b; // "k"
    new DataView(b.buffer).setUint32(33, 9, true);
    new DataView(b.buffer).setUint32(37, 0, true);
    const out = new Uint8Array(b.length + 8);
    out.set(b);
    new DataView(out.buffer).setBigUint64(41, BigInt(count), true);
    return out;
  };
  const cases: [string, Uint8Array][] = [
    ["tensor count 2^24", head(2n ** 24n, 0n, [])],
    ["metadata count 2^24", head(0n, 2n ** 24n, [])],
    ["key length 2^31", head(0n, 1n, [2 ** 31])],
    ["u8 array of 2^31", arrayKv(2 ** 31)],
  ];
  for (const [what, bytes] of cases) {
    const src = huge(bytes);
    await assert.rejects(
      () => readGgufHeader(src),
      (e) => isCode("MODEL_FORMAT")(e) && /absurd/.test(String(e)),
      what,
    );
    assert.ok(src.largest <= 1 << 20, `${what}: read ${src.largest} bytes`);
  }
});

Deno.test("hostile: 600 seeded mutations never throw anything but LlmError", async () => {
  const bytes = smallModel();
  const h = await readGgufHeader(bytesSource(bytes));
  const r = rng(1234);
  const allowed = new Set(["MODEL_FORMAT", "UNSUPPORTED_DTYPE", "UNSUPPORTED_MODEL", "TOKENIZER_FORMAT"]);
  let failed = 0;
  for (let i = 0; i < 600; i++) {
    const m = bytes.slice();
    const flips = 1 + Math.floor(r() * 4);
    for (let f = 0; f < flips; f++) {
      // Mostly the header, where structure lives; mutations of tensor data only change numbers.
      const at = Math.floor(r() * (r() < 0.9 ? h.dataOffset : m.length));
      m[at] = r() < 0.5 ? m[at] ^ (1 << Math.floor(r() * 8)) : Math.floor(r() * 256);
    }
    const src = bytesSource(r() < 0.2 ? m.subarray(0, Math.floor(r() * m.length)) : m);
    try {
      (await parseGguf(src)).close();
    } catch (e) {
      failed++;
      if (!(e instanceof LlmError) || !allowed.has(e.code)) {
        throw new Error(`mutation ${i} threw ${e instanceof LlmError ? e.code : String(e)}`, { cause: e });
      }
    }
  }
  assert.ok(failed > 100, `most mutations should be caught (${failed})`);
});
