import assert from "node:assert/strict";
import { parseLlama2c } from "../src/format/llama2c.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { fileSource } from "../src/io/deno_fs.ts";
import { LlmError, type LlmErrorCode } from "../src/errors.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { ModelFile } from "../src/format/model_file.ts";
import { requiredTensors } from "../src/format/model_file.ts";
import { synthWeights, TINY_CONFIG, writeLlama2c } from "./_synth.ts";
import { rng, sharedModel } from "./_util.ts";

const STORIES = sharedModel("stories260K.bin");

async function readF32(model: ModelFile, name: string): Promise<Float32Array> {
  const t = model.tensors.get(name);
  assert.ok(t, `tensor ${name} present`);
  const b = await t.source.read(t.byteOffset, t.byteLength);
  return new Float32Array(b.slice().buffer);
}

async function rejects(p: Promise<unknown>, code: LlmErrorCode, match?: RegExp): Promise<LlmError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof LlmError, `expected LlmError ${code}, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (match) assert.match(e.message, match);
    return e;
  }
  assert.fail(`expected LlmError ${code}, but it resolved`);
}

/** A file with one header int32 replaced. */
function withField(bytes: Uint8Array, index: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setInt32(4 * index, value, true);
  return out;
}

Deno.test({
  name: "llama2c: stories260K.bin config and tensor bytes",
  ignore: !STORIES,
  async fn() {
    const model = await parseLlama2c(await fileSource(STORIES!));
    try {
      const c = model.config;
      assert.equal(model.format, "llama2c");
      assert.deepEqual(
        [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.seqLen],
        [64, 172, 5, 8, 4, 8, 512, 512],
      );
      assert.equal(c.tiedEmbeddings, true);
      assert.equal(c.ropeStyle, "interleaved");
      assert.equal(c.ropeTheta, 10000);
      assert.equal(c.normEps, 1e-5);
      assert.equal(model.tensors.has("output"), false);
      assert.equal(model.metadata.vocab_size, 512);

      // Independent offset arithmetic against a raw DataView over the whole file.
      const file = await Deno.readFile(STORIES!);
      const dv = new DataView(file.buffer);
      const f = 4, dim = 64, kv = 32, hidden = 172, L = 5, vocab = 512;
      const wkStart = 28 + f * (vocab * dim + L * dim + L * dim * dim);
      const l2wk = wkStart + 2 * kv * dim * f;
      const got = await readF32(model, "l2.wk");
      assert.equal(got.length, kv * dim);
      for (let i = 0; i < got.length; i += 37) assert.equal(got[i], dv.getFloat32(l2wk + 4 * i, true));
      const normAt = 28 +
        f * (vocab * dim + 2 * L * dim + 2 * L * dim * dim + 2 * L * kv * dim + 3 * L * hidden * dim);
      const norm = await readF32(model, "norm");
      for (let i = 0; i < dim; i++) assert.equal(norm[i], dv.getFloat32(normAt + 4 * i, true));
      assert.equal(model.tensors.get("norm")!.byteOffset, normAt);
      const w2At = 28 +
        f * (vocab * dim + 2 * L * dim + 2 * L * dim * dim + 2 * L * kv * dim + L * hidden * dim);
      assert.equal(model.tensors.get("l4.w2")!.byteOffset, w2At + 4 * dim * hidden * f);
      // Weights of a trained model: finite and not all zero.
      const emb = await readF32(model, "tok_embd");
      assert.ok(emb.every(Number.isFinite) && emb.some((v) => v !== 0));
    } finally {
      model.close();
    }
  },
});

for (const version of [0, 1] as const) {
  for (const tied of [true, false]) {
    Deno.test(`llama2c: v${version} ${tied ? "tied" : "untied"} round trip`, async () => {
      const config: LlamaConfig = { ...TINY_CONFIG, tiedEmbeddings: tied };
      const weights = synthWeights(config, 11);
      const bytes = writeLlama2c(config, weights, { version });
      const model = await parseLlama2c(bytesSource(bytes, "synth.bin"));
      assert.deepEqual(model.config, config);
      assert.equal(model.metadata.version, version);
      assert.equal(model.tensors.has("output"), !tied);
      for (const name of requiredTensors(config)) {
        assert.deepEqual(await readF32(model, name), weights.get(name), name);
      }
      model.close();
    });
  }
}

Deno.test("llama2c: truncated files fail with MODEL_FORMAT at every cut", async () => {
  const config = { ...TINY_CONFIG, tiedEmbeddings: false };
  for (const version of [0, 1] as const) {
    const bytes = writeLlama2c(config, synthWeights(config, 3), { version });
    const cuts = [0, 1, 4, 27, 28, 29, 36, 37, 255, 256, 257, bytes.length - 1, bytes.length - 4];
    const r = rng(version + 1);
    for (let i = 0; i < 100; i++) cuts.push(Math.floor(r() * bytes.length));
    for (const cut of cuts) {
      const e = await rejects(parseLlama2c(bytesSource(bytes.subarray(0, cut), "cut.bin")), "MODEL_FORMAT");
      assert.match(e.message, /truncated|implies|plausible/, `cut ${cut}: ${e.message}`);
    }
    const e = await rejects(parseLlama2c(bytesSource(bytes.subarray(0, bytes.length - 8))), "MODEL_FORMAT");
    assert.match(e.message, new RegExp(`expected ${bytes.length} bytes, file has ${bytes.length - 8}`));
  }
});

Deno.test("llama2c: absurd and inconsistent headers fail with MODEL_FORMAT", async () => {
  const config = { ...TINY_CONFIG, tiedEmbeddings: true };
  const good = writeLlama2c(config, synthWeights(config, 5));
  const cases: [number, number, RegExp][] = [
    [0, 0, /dim = 0/],
    [0, -64, /dim = -64/],
    [1, 0, /hidden_dim = 0/],
    [2, -1, /n_layers = -1/],
    [3, 0, /n_heads = 0/],
    [4, 0, /n_kv_heads = 0/],
    [5, 0, /vocab_size = 0/],
    [6, 0, /seq_len = 0/],
    [6, -7, /seq_len = -7/],
    [0, 2 ** 31 - 1, /dim = 2147483647/],
    [5, -(2 ** 31), /vocab_size/],
    [0, 60, /not divisible by n_heads/],
    [4, 3, /not a multiple of n_kv_heads/],
    [3, 32, /extra/], // consistent dims (head size 2), but smaller wk/wv: the file is longer than implied
    [2, 1 << 20, /truncated.*implausible/],
    [1, 1 << 19, /truncated/],
  ];
  for (const [field, value, re] of cases) {
    const bytes = withField(good, field, value);
    const e = await rejects(parseLlama2c(bytesSource(bytes, "bad.bin")), "MODEL_FORMAT");
    assert.match(e.message, re, `field ${field} = ${value}: ${e.message}`);
  }
  // Odd head size: dim 72 / 8 heads = 9.
  await rejects(parseLlama2c(bytesSource(withField(withField(good, 0, 72), 4, 8))), "MODEL_FORMAT", /odd/);
  // Flipping the tied flag (vocab sign) makes the header disagree with the file length.
  await rejects(parseLlama2c(bytesSource(withField(good, 5, -512))), "MODEL_FORMAT", /truncated/);
  const untied = writeLlama2c(
    { ...config, tiedEmbeddings: false },
    synthWeights({ ...config, tiedEmbeddings: false }, 5),
  );
  await rejects(parseLlama2c(bytesSource(withField(untied, 5, 512))), "MODEL_FORMAT", /extra/);
  // Trailing garbage.
  const longer = new Uint8Array(good.length + 16);
  longer.set(good);
  await rejects(parseLlama2c(bytesSource(longer)), "MODEL_FORMAT", /16 extra/);
});

Deno.test("llama2c: ak42 versions other than 1 are refused clearly", async () => {
  const config = { ...TINY_CONFIG, tiedEmbeddings: true };
  const v1 = writeLlama2c(config, synthWeights(config, 9), { version: 1 });
  await rejects(
    parseLlama2c(bytesSource(withField(v1, 1, 2))),
    "UNSUPPORTED_DTYPE",
    /version 2.*not supported/,
  );
  await rejects(parseLlama2c(bytesSource(withField(v1, 1, 3))), "MODEL_FORMAT", /version 3/);
  await rejects(parseLlama2c(bytesSource(withField(v1, 1, -1))), "MODEL_FORMAT", /version -1/);
  const flag = v1.slice();
  flag[36] = 7;
  await rejects(parseLlama2c(bytesSource(flag)), "MODEL_FORMAT", /shared-classifier flag is 7/);
  // v1 stores vocab_size unsigned-in-spirit: a negative one is corrupt.
  await rejects(parseLlama2c(bytesSource(withField(v1, 7, -512))), "MODEL_FORMAT", /vocab_size = -512/);
  await rejects(parseLlama2c(bytesSource(v1.subarray(0, 100))), "MODEL_FORMAT", /256-byte header/);
});

Deno.test("llama2c: random header mutations only ever raise LlmError", async () => {
  const config = { ...TINY_CONFIG, nLayers: 1, vocabSize: 64, tiedEmbeddings: false };
  const bases = [0, 1].map((v) => writeLlama2c(config, synthWeights(config, 2), { version: v as 0 | 1 }));
  const r = rng(1234);
  for (let i = 0; i < 400; i++) {
    const base = bases[i % 2];
    let bytes = base.slice();
    const flips = 1 + Math.floor(r() * 4);
    for (let j = 0; j < flips; j++) {
      const at = Math.floor(r() * 40);
      bytes[at] = r() < 0.5 ? Math.floor(r() * 256) : bytes[at] ^ (1 << Math.floor(r() * 8));
    }
    if (r() < 0.3) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
    try {
      const m = await parseLlama2c(bytesSource(bytes));
      m.close();
    } catch (e) {
      assert.ok(e instanceof LlmError, `mutation ${i}: non-LlmError ${e}`);
    }
  }
});
