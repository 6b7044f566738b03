import assert from "node:assert/strict";
import { hfConfigToLlama, hfTensorName, parseSafetensorsHeader } from "../src/format/safetensors.ts";
import { loadHfDirectory } from "../src/io/hf_dir.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { dequantize, quantize } from "../src/dtype.ts";
import { LlmError, type LlmErrorCode } from "../src/errors.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import { type ModelFile, requiredTensors } from "../src/format/model_file.ts";
import {
  halfToInterleaved,
  hfConfigJson,
  hfNameOf,
  synthWeights,
  TINY_CONFIG,
  toHfTensors,
  writeHfDirectory,
  writeSafetensors,
} from "./_synth.ts";
import { rng } from "./_util.ts";

async function rejects(
  p: Promise<unknown> | (() => unknown),
  code: LlmErrorCode,
  match?: RegExp,
): Promise<LlmError> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    assert.ok(e instanceof LlmError, `expected LlmError ${code}, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (match) assert.match(e.message, match);
    return e;
  }
  assert.fail(`expected LlmError ${code}, but it succeeded`);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "llama_ts_st_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function tensorValues(model: ModelFile, name: string): Promise<Float32Array> {
  const t = model.tensors.get(name);
  assert.ok(t, `tensor ${name} present`);
  const out = new Float32Array(t.shape.reduce((a, b) => a * b, 1));
  dequantize(t.dtype, await t.source.read(t.byteOffset, t.byteLength), out);
  return out;
}

/** What storing f32 values as `dtype` does to them. */
function roundTo(dtype: "f32" | "f16" | "bf16", x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  dequantize(dtype, quantize(dtype, x), out);
  return out;
}

// ---- names and config -------------------------------------------------------------------------------

Deno.test("safetensors: hfTensorName maps HF names and ignores the rest", () => {
  const table: [string, string | undefined][] = [
    ["model.embed_tokens.weight", "tok_embd"],
    ["model.norm.weight", "norm"],
    ["lm_head.weight", "output"],
    ["model.layers.0.input_layernorm.weight", "l0.attn_norm"],
    ["model.layers.12.self_attn.q_proj.weight", "l12.wq"],
    ["model.layers.3.self_attn.k_proj.weight", "l3.wk"],
    ["model.layers.3.self_attn.v_proj.weight", "l3.wv"],
    ["model.layers.3.self_attn.o_proj.weight", "l3.wo"],
    ["model.layers.3.post_attention_layernorm.weight", "l3.ffn_norm"],
    ["model.layers.3.mlp.gate_proj.weight", "l3.w1"],
    ["model.layers.3.mlp.down_proj.weight", "l3.w2"],
    ["model.layers.3.mlp.up_proj.weight", "l3.w3"],
    ["model.layers.3.self_attn.rotary_emb.inv_freq", undefined],
    ["model.layers.3.self_attn.q_proj.bias", undefined],
    ["model.layers.03.self_attn.q_proj.weight", undefined],
    ["model.layers.x.self_attn.q_proj.weight", undefined],
    ["model.layers.1.constructor.weight", undefined],
    ["__proto__", undefined],
  ];
  for (const [hf, want] of table) assert.equal(hfTensorName(hf), want, hf);
  for (const name of requiredTensors(TINY_CONFIG)) assert.equal(hfTensorName(hfNameOf(name)), name);
});

Deno.test("safetensors: hfConfigToLlama maps fields and defaults", () => {
  const c = hfConfigToLlama(hfConfigJson(TINY_CONFIG), "cfg");
  assert.deepEqual(c, { ...TINY_CONFIG, ropeStyle: "half" });
  const minimal = {
    model_type: "llama",
    hidden_size: 64,
    intermediate_size: 172,
    num_hidden_layers: 2,
    num_attention_heads: 8,
    vocab_size: 512,
    rope_scaling: null,
    head_dim: null,
  };
  const m = hfConfigToLlama(minimal, "cfg");
  assert.deepEqual(
    [m.nKvHeads, m.headDim, m.seqLen, m.normEps, m.ropeTheta, m.tiedEmbeddings, m.ropeScaling],
    [8, 8, 2048, 1e-6, 10000, false, undefined],
  );
  const l3 = hfConfigToLlama({
    ...minimal,
    architectures: ["LlamaForCausalLM"],
    head_dim: 16,
    rope_theta: 500000,
    tie_word_embeddings: true,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  }, "cfg");
  assert.equal(l3.headDim, 16);
  assert.equal(l3.ropeTheta, 500000);
  assert.equal(l3.tiedEmbeddings, true);
  assert.deepEqual(l3.ropeScaling, L3_SCALING);
  // Older spelling "type", and newer "default" meaning none.
  const t = hfConfigToLlama({ ...minimal, rope_scaling: { ...l3raw(), type: "llama3" } }, "cfg");
  assert.equal(t.ropeScaling?.factor, 8);
  assert.equal(
    hfConfigToLlama({ ...minimal, rope_scaling: { rope_type: "default" } }, "cfg").ropeScaling,
    undefined,
  );
});

Deno.test("safetensors: hfConfigToLlama reads transformers 5's rope_parameters", () => {
  // transformers >= 5 writes {"rope_parameters": {"rope_theta": ..., "rope_type": ...}} and no top-level
  // rope_theta / rope_scaling; before this was read, such a Llama 3 config silently got theta 10000
  const base = { ...hfConfigJson(TINY_CONFIG), rope_theta: undefined, rope_scaling: undefined };
  const plain = hfConfigToLlama(
    { ...base, rope_parameters: { rope_theta: 500000, rope_type: "default" } },
    "cfg",
  );
  assert.equal(plain.ropeTheta, 500000);
  assert.equal(plain.ropeScaling, undefined);
  const l3 = hfConfigToLlama({
    ...base,
    rope_parameters: { rope_theta: 500000, rope_type: "llama3", ...l3raw() },
  }, "cfg");
  assert.equal(l3.ropeTheta, 500000);
  assert.deepEqual(l3.ropeScaling, L3_SCALING);
  // both spellings present: they must agree
  const both = hfConfigToLlama({ ...base, rope_theta: 1e6, rope_parameters: { rope_theta: 1e6 } }, "cfg");
  assert.equal(both.ropeTheta, 1e6);
});

Deno.test("safetensors: hfConfigToLlama rejects bad rope_parameters", async () => {
  const base = { ...hfConfigJson(TINY_CONFIG), rope_theta: undefined, rope_scaling: undefined };
  await rejects(
    () => hfConfigToLlama({ ...base, rope_theta: 10000, rope_parameters: { rope_theta: 500000 } }, "cfg"),
    "MODEL_FORMAT",
    /rope_theta 10000 and rope_parameters.rope_theta 500000 disagree/,
  );
  await rejects(
    () => hfConfigToLlama({ ...base, rope_parameters: "llama3" }, "cfg"),
    "MODEL_FORMAT",
    /rope_parameters/,
  );
  await rejects(
    () => hfConfigToLlama({ ...base, rope_parameters: { rope_theta: "5e5" } }, "cfg"),
    "MODEL_FORMAT",
    /rope_theta/,
  );
  await rejects(
    () =>
      hfConfigToLlama({ ...base, rope_parameters: { rope_theta: 1e4, rope_type: "yarn", factor: 4 } }, "cfg"),
    "UNSUPPORTED_MODEL",
    /rope_parameters type "yarn"/,
  );
});

/** l3raw()'s scaling as hfConfigToLlama returns it. */
const L3_SCALING = {
  type: "llama3",
  factor: 8,
  lowFreqFactor: 1,
  highFreqFactor: 4,
  originalMaxPositionEmbeddings: 8192,
};

function l3raw(): Record<string, unknown> {
  return { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
}

Deno.test("safetensors: hfConfigToLlama rejects other models and wrong types", async () => {
  const good = hfConfigJson(TINY_CONFIG);
  const unsupported: [Record<string, unknown>, RegExp][] = [
    [{ ...good, model_type: "gpt2" }, /"gpt2"/],
    [{ ...good, model_type: "mistral", architectures: ["MistralForCausalLM"] }, /mistral/],
    [{ ...good, architectures: ["LlamaForSequenceClassification"] }, /LlamaForSequenceClassification/],
    [{ ...good, model_type: undefined, architectures: undefined }, /only LLaMA/],
    [{ ...good, rope_scaling: { type: "linear", factor: 2 } }, /"linear"/],
    [{ ...good, rope_scaling: { rope_type: "yarn", factor: 4 } }, /"yarn"/],
    [{ ...good, hidden_act: "gelu" }, /gelu/],
    [{ ...good, attention_bias: true }, /attention_bias/],
  ];
  for (const [cfg, re] of unsupported) {
    await rejects(() => hfConfigToLlama(cfg, "cfg"), "UNSUPPORTED_MODEL", re);
  }
  const format: [unknown, RegExp][] = [
    [null, /not a JSON object/],
    [[1, 2], /not a JSON object/],
    [{ ...good, hidden_size: "64" }, /hidden_size/],
    [{ ...good, hidden_size: 64.5 }, /hidden_size/],
    [{ ...good, num_hidden_layers: -2 }, /num_hidden_layers/],
    [{ ...good, vocab_size: undefined }, /vocab_size is missing/],
    [{ ...good, intermediate_size: 1e300 }, /intermediate_size/],
    [{ ...good, rms_norm_eps: "1e-5" }, /rms_norm_eps/],
    [{ ...good, rope_theta: -1 }, /ropeTheta/],
    [{ ...good, tie_word_embeddings: "yes" }, /tie_word_embeddings/],
    [{ ...good, model_type: 7 }, /model_type/],
    [{ ...good, architectures: "LlamaForCausalLM" }, /architectures/],
    [{ ...good, num_key_value_heads: 3 }, /nKvHeads/],
    [{ ...good, head_dim: undefined, hidden_size: 60 }, /head_dim/],
    [{ ...good, rope_scaling: "llama3" }, /rope_scaling/],
    [{ ...good, rope_scaling: { rope_type: "llama3", factor: 8 } }, /low_freq_factor/],
    [{ ...good, rope_scaling: { ...l3raw(), rope_type: "llama3", high_freq_factor: 0.5 } }, /inconsistent/],
  ];
  for (const [cfg, re] of format) await rejects(() => hfConfigToLlama(cfg, "cfg"), "MODEL_FORMAT", re);
});

// ---- safetensors headers ----------------------------------------------------------------------------

function headerFile(header: unknown, dataBytes: number, rawLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, rawLength ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

Deno.test("safetensors: parseSafetensorsHeader reads entries with absolute offsets", async () => {
  const data = new Float32Array([1, 2, 3, 4, 5, 6]);
  const bytes = writeSafetensors([
    { name: "a", dtype: "F32", shape: [2, 3], data },
    { name: "b", dtype: "BF16", shape: [3], data: data.subarray(0, 3) },
    { name: "empty", dtype: "F16", shape: [0, 4], data: new Float32Array(0) },
  ]);
  const map = await parseSafetensorsHeader(bytesSource(bytes));
  assert.deepEqual([...map.keys()], ["a", "b", "empty"]);
  const a = map.get("a")!;
  assert.deepEqual(a.shape, [2, 3]);
  assert.equal(a.dtype, "f32");
  assert.equal(a.byteLength, 24);
  assert.equal(a.byteOffset % 8, 0); // the writer pads the header to 8 bytes
  const out = new Float32Array(6);
  dequantize("f32", bytes.subarray(a.byteOffset, a.byteOffset + a.byteLength), out);
  assert.deepEqual(out, data);
  assert.equal(map.get("b")!.byteOffset, a.byteOffset + 24);
  assert.equal(map.get("empty")!.byteLength, 0);
});

Deno.test("safetensors: bad headers fail with clear codes", async () => {
  const ok = { t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };
  const cases: [Uint8Array, LlmErrorCode, RegExp][] = [
    [new Uint8Array(5), "MODEL_FORMAT", /truncated/],
    [headerFile(ok, 8, 1n << 63n), "MODEL_FORMAT", /header length \d+ is absurd/],
    [headerFile(ok, 8, 1000n), "MODEL_FORMAT", /absurd/],
    [headerFile(ok, 8, 0n), "MODEL_FORMAT", /absurd/],
    [headerFile('{"t": {"dtype": "F32",', 8), "MODEL_FORMAT", /not valid UTF-8 JSON/],
    [headerFile("[1,2,3]", 8), "MODEL_FORMAT", /not a JSON object/],
    [headerFile({ t: 5 }, 8), "MODEL_FORMAT", /"t" is not a JSON object/],
    [headerFile({ t: { ...ok.t, data_offsets: [0, 16] } }, 8), "MODEL_FORMAT", /pass the end/],
    [headerFile({ t: { ...ok.t, data_offsets: [8, 4] } }, 8), "MODEL_FORMAT", /data_offsets/],
    [headerFile({ t: { ...ok.t, data_offsets: [-1, 7] } }, 8), "MODEL_FORMAT", /data_offsets/],
    [headerFile({ t: { ...ok.t, data_offsets: [0] } }, 8), "MODEL_FORMAT", /data_offsets/],
    [headerFile({ t: { ...ok.t, shape: [3] } }, 8), "MODEL_FORMAT", /12 bytes but data_offsets span 8/],
    [
      headerFile({ t: { ...ok.t, shape: [2 ** 40, 2 ** 40, 2 ** 40] } }, 8),
      "MODEL_FORMAT",
      /data_offsets span/,
    ],
    [headerFile({ t: { ...ok.t, shape: [-2] } }, 8), "MODEL_FORMAT", /shape/],
    [headerFile({ t: { ...ok.t, shape: "2" } }, 8), "MODEL_FORMAT", /shape/],
    [headerFile({ t: { ...ok.t, dtype: 4 } }, 8), "MODEL_FORMAT", /dtype/],
    [headerFile({ t: { ...ok.t, dtype: "I64", shape: [1] } }, 8), "UNSUPPORTED_DTYPE", /"t" has dtype I64/],
    [headerFile({ w: { ...ok.t, dtype: "F8_E4M3", shape: [8] } }, 8), "UNSUPPORTED_DTYPE", /"w".*F8_E4M3/],
    [headerFile({ t: { ...ok.t, dtype: "constructor" } }, 8), "UNSUPPORTED_DTYPE", /constructor/],
  ];
  // Invalid UTF-8 in the header.
  const bad = headerFile('{"t":1}', 8);
  bad[9] = 0xff;
  cases.push([bad, "MODEL_FORMAT", /UTF-8/]);
  for (const [bytes, code, re] of cases) {
    await rejects(parseSafetensorsHeader(bytesSource(bytes, "x.st")), code, re);
  }
  // Data truncated: a good file cut short.
  const good = writeSafetensors([{ name: "t", dtype: "F32", shape: [4], data: new Float32Array(4) }]);
  await rejects(
    parseSafetensorsHeader(bytesSource(good.subarray(0, good.length - 1))),
    "MODEL_FORMAT",
    /truncated/,
  );
  // The filter skips unused tensors before the dtype check.
  const mixed = headerFile({ ...ok, ids: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, 8);
  const m = await parseSafetensorsHeader(bytesSource(mixed), { filter: (n) => n !== "ids" });
  assert.deepEqual([...m.keys()], ["t"]);
});

Deno.test("safetensors: random header mutations only ever raise LlmError", async () => {
  const base = writeSafetensors([
    { name: "model.norm.weight", dtype: "F16", shape: [16], data: new Float32Array(16).fill(1) },
    { name: "lm_head.weight", dtype: "F32", shape: [4, 16], data: new Float32Array(64) },
  ]);
  const r = rng(99);
  for (let i = 0; i < 500; i++) {
    let bytes = base.slice();
    const flips = 1 + Math.floor(r() * 3);
    for (let j = 0; j < flips; j++) {
      const at = Math.floor(r() * Math.min(bytes.length, 200));
      bytes[at] = r() < 0.5 ? Math.floor(r() * 256) : bytes[at] ^ (1 << Math.floor(r() * 8));
    }
    if (r() < 0.2) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
    try {
      await parseSafetensorsHeader(bytesSource(bytes));
    } catch (e) {
      assert.ok(e instanceof LlmError, `mutation ${i}: non-LlmError ${e}`);
    }
  }
});

// ---- HF directories ----------------------------------------------------------------------------------

for (const dtype of ["f32", "f16", "bf16"] as const) {
  for (const shards of [1, 3]) {
    Deno.test(`hf dir: ${dtype} x ${shards} shard(s) loads faithfully`, async () => {
      await withTempDir(async (dir) => {
        const config = TINY_CONFIG;
        const weights = synthWeights(config, 21);
        await writeHfDirectory(dir, config, weights, { dtype, shards });
        if (shards > 1) assert.ok((await Deno.stat(`${dir}/model-00003-of-00003.safetensors`)).isFile);
        const model = await loadHfDirectory(dir + "/");
        try {
          assert.equal(model.format, "safetensors");
          assert.deepEqual(model.config, { ...config, ropeStyle: "half" });
          assert.equal(model.tokenizer, undefined);
          assert.equal(model.metadata.model_type, "llama");
          const hf = toHfTensors(config, weights);
          for (const name of requiredTensors(config)) {
            const t = model.tensors.get(name)!;
            assert.equal(t.dtype, dtype, name);
            const got = await tensorValues(model, name);
            assert.deepEqual(got, roundTo(dtype, hf.get(hfNameOf(name))!.data), name);
          }
          // wq/wk hold the rotate_half rows, spelled out here independently of the writer:
          // per head, HF row r < headDim/2 is interleaved row 2r, and row headDim/2 + r is row 2r + 1.
          const { headDim: hd, dim } = config;
          for (const [t, heads] of [["wq", config.nHeads], ["wk", config.nKvHeads]] as const) {
            const canon = roundTo(dtype, weights.get(`l1.${t}`)!);
            const got = await tensorValues(model, `l1.${t}`);
            for (let h = 0; h < heads; h++) {
              for (let r = 0; r < hd; r++) {
                const from = r < hd / 2 ? 2 * r : 2 * (r - hd / 2) + 1;
                const a = got.subarray((h * hd + r) * dim, (h * hd + r + 1) * dim);
                const b = canon.subarray((h * hd + from) * dim, (h * hd + from + 1) * dim);
                assert.deepEqual(a, b, `${t} head ${h} row ${r}`);
              }
            }
            assert.deepEqual(halfToInterleaved(got, heads, hd), canon);
          }
        } finally {
          model.close();
        }
      });
    });
  }
}

Deno.test("hf dir: tied embeddings by flag or by a missing lm_head", async () => {
  await withTempDir(async (dir) => {
    const config: LlamaConfig = { ...TINY_CONFIG, nLayers: 1, tiedEmbeddings: true };
    await writeHfDirectory(dir, config, synthWeights(config, 4));
    const a = await loadHfDirectory(dir);
    assert.equal(a.config.tiedEmbeddings, true);
    assert.equal(a.tensors.has("output"), false);
    a.close();
    // Flag false but no lm_head in the file: the embedding is the head.
    await writeHfDirectory(dir, config, synthWeights(config, 4), {
      configOverrides: { tie_word_embeddings: false },
    });
    const b = await loadHfDirectory(dir);
    assert.equal(b.config.tiedEmbeddings, true);
    b.close();
    // Flag true and an lm_head present anyway: HF ties, so the copy is not used.
    const untied = { ...config, tiedEmbeddings: false };
    await writeHfDirectory(dir, untied, synthWeights(untied, 4), {
      configOverrides: { tie_word_embeddings: true },
    });
    const c = await loadHfDirectory(dir);
    assert.equal(c.config.tiedEmbeddings, true);
    assert.equal(c.tensors.has("output"), false);
    c.close();
  });
});

Deno.test("hf dir: bad config.json and missing files", async () => {
  await withTempDir(async (dir) => {
    const config = { ...TINY_CONFIG, nLayers: 1 };
    await rejects(loadHfDirectory(`${dir}/nowhere`), "NOT_FOUND", /config\.json/);
    await rejects(loadHfDirectory(dir), "NOT_FOUND", /needs config\.json/);
    await writeHfDirectory(dir, config, synthWeights(config, 8));
    const cfgPath = `${dir}/config.json`;
    const good = await Deno.readTextFile(cfgPath);
    await Deno.writeTextFile(cfgPath, good.slice(0, -3));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /config\.json: not valid JSON/);
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...JSON.parse(good), hidden_size: "64" }));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /hidden_size/);
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...JSON.parse(good), model_type: "gpt2" }));
    await rejects(loadHfDirectory(dir), "UNSUPPORTED_MODEL", /gpt2/);
    await Deno.writeTextFile(
      cfgPath,
      JSON.stringify({ ...JSON.parse(good), rope_scaling: { type: "dynamic" } }),
    );
    await rejects(loadHfDirectory(dir), "UNSUPPORTED_MODEL", /dynamic/);
    // A config that disagrees with the weights.
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...JSON.parse(good), intermediate_size: 100 }));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /shape/);
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...JSON.parse(good), num_hidden_layers: 2 }));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /l1\.attn_norm .*is missing/);
    // A corrupt layer count fails fast on the first missing layer, not after listing a million names.
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...JSON.parse(good), num_hidden_layers: 1 << 20 }));
    const t0 = performance.now();
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /l1\.attn_norm .*1048576/);
    assert.ok(performance.now() - t0 < 2000);
    await Deno.writeTextFile(cfgPath, good);
    // Weights missing.
    await Deno.remove(`${dir}/model.safetensors`);
    await rejects(loadHfDirectory(dir), "NOT_FOUND", /no model\.safetensors/);
  });
});

Deno.test("hf dir: corrupt safetensors and index files", async () => {
  await withTempDir(async (dir) => {
    const config = { ...TINY_CONFIG, nLayers: 1 };
    const weights = synthWeights(config, 12);
    // Truncated single file.
    await writeHfDirectory(dir, config, weights);
    const st = await Deno.readFile(`${dir}/model.safetensors`);
    await Deno.writeFile(`${dir}/model.safetensors`, st.subarray(0, st.length - 100));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /truncated/);
    // Unsupported dtype on a used tensor; an ignored I64 buffer is fine.
    const hf = [...toHfTensors(config, weights)].map(([name, t]) => ({ name, dtype: "F32", ...t }));
    const ids = {
      name: "model.layers.0.self_attn.rotary_emb.ids",
      dtype: "I64",
      shape: [1],
      bytes: new Uint8Array(8),
    };
    await Deno.writeFile(`${dir}/model.safetensors`, writeSafetensors([...hf, ids]));
    (await loadHfDirectory(dir)).close();
    const i64 = hf.map((t) =>
      t.name === "model.norm.weight" ? { ...t, dtype: "I64", shape: [8, 8], bytes: new Uint8Array(512) } : t
    );
    await Deno.writeFile(`${dir}/model.safetensors`, writeSafetensors(i64));
    await rejects(loadHfDirectory(dir), "UNSUPPORTED_DTYPE", /model\.norm\.weight.*I64/);
    // A tensor for a layer the config does not have.
    const extra = { ...hf[1], name: "model.layers.5.input_layernorm.weight" };
    await Deno.writeFile(`${dir}/model.safetensors`, writeSafetensors([...hf, extra]));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /layer 5/);
    await Deno.remove(`${dir}/model.safetensors`);

    // Sharded: missing shard, path escape, lying index, broken JSON.
    await writeHfDirectory(dir, config, weights, { shards: 2 });
    const indexPath = `${dir}/model.safetensors.index.json`;
    const index = JSON.parse(await Deno.readTextFile(indexPath));
    (await loadHfDirectory(dir)).close();
    const shard2 = `${dir}/model-00002-of-00002.safetensors`;
    const shard2Bytes = await Deno.readFile(shard2);
    await Deno.remove(shard2);
    await rejects(loadHfDirectory(dir), "NOT_FOUND", /names shard model-00002-of-00002\.safetensors/);
    await Deno.writeFile(shard2, shard2Bytes);
    const evil = { ...index, weight_map: { ...index.weight_map, "model.norm.weight": "../../etc/passwd" } };
    await Deno.writeTextFile(indexPath, JSON.stringify(evil));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /inside the model directory/);
    const lying = {
      ...index,
      weight_map: { ...index.weight_map, "model.norm.weight": "model-00001-of-00002.safetensors" },
    };
    await Deno.writeTextFile(indexPath, JSON.stringify(lying));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /model\.norm\.weight is in model-00001/);
    const beyond = {
      ...index,
      weight_map: { ...index.weight_map, "model.layers.9.mlp.up_proj.weight": "x.st" },
    };
    await Deno.writeTextFile(indexPath, JSON.stringify(beyond));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /layer 9 but config\.json has num_hidden_layers = 1/);
    await Deno.writeTextFile(indexPath, JSON.stringify({ metadata: {} }));
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /weight_map/);
    await Deno.writeTextFile(indexPath, "{ nope");
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /index\.json: not valid JSON/);
  });
});

/** A minimal byte-level BPE tokenizer.json (GPT-2 style, as Llama-3 ships). */
const TOKENIZER_JSON = {
  version: "1.0",
  added_tokens: [
    { id: 0, content: "<unk>", special: true },
    { id: 1, content: "<s>", special: true },
    { id: 2, content: "</s>", special: true },
  ],
  normalizer: null,
  pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: null,
  decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: {
    type: "BPE",
    dropout: null,
    unk_token: null,
    vocab: { "<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "ab": 5, "Ġ": 6, "Ġab": 7 },
    merges: ["a b", "Ġ ab"],
  },
};

Deno.test("hf dir: tokenizer.json, tokenizer_config.json and generation_config.json", async () => {
  await withTempDir(async (dir) => {
    const config = { ...TINY_CONFIG, nLayers: 1 };
    const chatTemplate = "{% for m in messages %}{{ m.content }}{% endfor %}";
    await writeHfDirectory(dir, config, synthWeights(config, 1), {
      tokenizerJson: TOKENIZER_JSON,
      tokenizerConfig: { chat_template: chatTemplate },
      bosId: 1,
      eosId: 2,
    });
    await Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify({ eos_token_id: [2, 5] }));
    const model = await loadHfDirectory(dir);
    model.close();
    const tok = model.tokenizer;
    assert.ok(tok, "tokenizer loaded from tokenizer.json");
    assert.equal(tok.bosId, 1);
    assert.equal(tok.chatTemplate, chatTemplate);
    const eos = [tok.eosId, ...(tok.eotIds ?? [])];
    assert.ok(eos.includes(2) && eos.includes(5), `eos ids ${eos}`);

    await Deno.writeTextFile(`${dir}/generation_config.json`, "{");
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /generation_config\.json: not valid JSON/);
    await Deno.remove(`${dir}/generation_config.json`);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, '{"model": ');
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /tokenizer\.json: not valid JSON/);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(TOKENIZER_JSON));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "[");
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /tokenizer_config\.json: not valid JSON/);
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "{}");
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...hfConfigJson(config), eos_token_id: "2" }),
    );
    await rejects(loadHfDirectory(dir), "MODEL_FORMAT", /eos_token_id/);
  });
});
