/**
 * In-flight batching: batched greedy output equals unbatched output, multi-sequence steps agree with
 * single-sequence steps on every backend, prefix blocks are reused, cancelled sequences give their KV
 * blocks back, the queue is bounded, and KV reservation makes requests wait rather than fail.
 */
import assert from "node:assert/strict";
import { type Backend, Engine, type EngineOptions, LlmError, loadModel } from "../mod.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { parseLlama2c } from "../src/format/llama2c.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { nmse, sharedModel } from "./_util.ts";
import { forEachBackend } from "./_backends.ts";
import { synthWeights, TINY_CONFIG, writeLlama2c } from "./_synth.ts";

/** A 64-token synthetic llama2.c model (seeded weights) and a matching placeholder SentencePiece tokenizer. */
function tinyModel(seed: number) {
  const config = { ...TINY_CONFIG, vocabSize: 64, seqLen: 96 };
  const tokens = Array.from({ length: 64 }, (_, i) => `t${i}`);
  const tokenizer = createTokenizer({ kind: "spm", tokens, scores: tokens.map(() => 0), bosId: 1, eosId: 2 });
  return { config, bytes: writeLlama2c(config, synthWeights(config, seed)), tokenizer };
}

const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");
const ignore = !modelPath || !tokPath;

async function engine(options: EngineOptions = {}): Promise<Engine> {
  const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
  try {
    return await Engine.create(model, tokenizer, { backend: "ref", ...options });
  } finally {
    model.close();
  }
}

const PROMPTS = [
  "Once upon a time",
  "The little dog was sad because he could not find his ball. He looked under the bed and",
  "Tom and Lily",
  "One day, a big bird",
  "Once upon a time, there was a girl named Sue. She liked to",
  "The sun",
];

Deno.test({
  name:
    "batched greedy outputs equal unbatched ones (chunked prefill mixed with decode, queueing, prefix reuse)",
  ignore,
  fn: async () => {
    using one = await engine({ maxBatch: 1 });
    const want = [];
    for (const p of PROMPTS) want.push(await one.complete(p, { maxTokens: 40, temperature: 0 }));
    // 4 slots for 6 requests (two wait), 5-token prompt chunks so prefill rows share steps with decode
    // rows, and the prefix cache on (the first prompt is a prefix of the fifth)
    using many = await engine({ maxBatch: 4, maxStepTokens: 5, kvCapacity: 2048, prefixCache: true });
    let maxRows = 0, mixed = 0, gaps = 0;
    many.onStep = (s) => {
      maxRows = Math.max(maxRows, s.seqs);
      if (s.decodeRows > 0 && s.prefillRows > 0) mixed++;
      // the step's parts add up to its wall time; the gap before it is host time outside it
      assert.ok(s.backendMs > 0 && s.planMs >= 0 && s.sampleMs >= 0 && s.gapMs >= 0, JSON.stringify(s));
      assert.ok(Math.abs(s.backendMs + s.planMs + s.sampleMs - s.ms) < 1e-6, JSON.stringify(s));
      if (s.gapMs > 0) gaps++;
    };
    const got = await Promise.all(PROMPTS.map((p) => many.complete(p, { maxTokens: 40, temperature: 0 })));
    for (let i = 0; i < PROMPTS.length; i++) {
      assert.deepEqual(got[i].generatedIds, want[i].generatedIds, `prompt ${i}`);
      assert.equal(got[i].text, want[i].text);
      assert.equal(got[i].finishReason, want[i].finishReason);
    }
    assert.equal(maxRows, 4, "four sequences shared a step");
    assert.ok(mixed > 0, "some steps mixed prompt and decode rows");
    assert.ok(gaps > 0, "steps after the first of a busy period report the host time since the last");
    const s = many.stats();
    assert.equal(s.kvBlocksUsed, 0);
    assert.equal(s.running + s.waiting, 0);
  },
});

Deno.test({
  name: "steps carrying rows of several sequences give the logits of one-sequence steps, on every backend",
  fn: async () => {
    const { bytes, tokenizer } = tinyModel(7);
    const seqs = [
      Array.from({ length: 40 }, (_, i) => (i * 7 + 3) % 64),
      Array.from({ length: 23 }, (_, i) => (i * 5 + 1) % 64),
      Array.from({ length: 9 }, (_, i) => (i * 11 + 2) % 64),
    ];
    await forEachBackend(async (backend) => {
      const model = await parseLlama2c(bytesSource(bytes));
      const create = (o: EngineOptions) =>
        Engine.create(model, tokenizer, { backend, contextSize: 96, ...o });
      using alone = await create({ maxBatch: 1 });
      const want = [];
      for (const ids of seqs) want.push(await alone.logitsFor(ids));
      using batched = await create({ maxBatch: 3, kvCapacity: 288 });
      let shared = 0;
      batched.onStep = (s) => shared = Math.max(shared, s.seqs);
      const got = await Promise.all(seqs.map((ids) => batched.logitsFor(ids)));
      assert.equal(shared, 3);
      for (let s = 0; s < seqs.length; s++) {
        for (let p = 0; p < seqs[s].length; p++) {
          const e = nmse(got[s][p], want[s][p]);
          if (backend.name === "ref") assert.deepEqual(got[s][p], want[s][p], `seq ${s} pos ${p}`);
          else assert.ok(e < 1e-8, `${backend.name}: seq ${s} pos ${p}: nmse ${e}`);
        }
      }
    });
  },
});

Deno.test({
  name: "identical prompt prefixes reuse their full KV blocks and give the same text",
  ignore,
  fn: async () => {
    using e = await engine({ maxBatch: 2, prefixCache: true });
    const prompt = PROMPTS[1] + " found a small red box"; // > 32 tokens: two full blocks
    const a = await e.complete(prompt, { maxTokens: 20, temperature: 0 });
    assert.equal(a.timings.cachedTokens, 0);
    const b = await e.complete(prompt, { maxTokens: 20, temperature: 0 });
    assert.ok(b.timings.cachedTokens >= 32, `cached ${b.timings.cachedTokens}`);
    assert.ok(b.timings.cachedTokens < b.promptIds.length, "the last prompt token always runs");
    assert.deepEqual(b.generatedIds, a.generatedIds);
    const c = await e.complete(prompt.slice(0, 60) + " but", { maxTokens: 20, temperature: 0 });
    using fresh = await engine({ maxBatch: 1 });
    const want = await fresh.complete(prompt.slice(0, 60) + " but", { maxTokens: 20, temperature: 0 });
    assert.deepEqual(c.generatedIds, want.generatedIds);
    const s = e.stats();
    assert.equal(s.kvBlocksUsed, 0);
    assert.ok(s.kvBlocksCached >= 2 && s.prefixHits >= 2, JSON.stringify(s));
  },
});

Deno.test({
  name: "a cancelled or abandoned generation gives its KV blocks back within a step",
  ignore,
  fn: async () => {
    using e = await engine({ maxBatch: 4, kvCapacity: 1024 });
    const keep = e.complete("Tom and Lily", { maxTokens: 60, temperature: 0, ignoreEos: true });
    const h = e.submit("Once upon a time", { maxTokens: 200, ignoreEos: true });
    let n = 0;
    for await (const ev of h.events) {
      if (ev.type === "token" && ++n === 3) {
        assert.ok(e.stats().kvBlocksUsed > 0);
        h.cancel();
      }
      if (ev.type === "done") assert.equal(ev.result.finishReason, "abort");
    }
    // leaving a for-await loop early cancels too
    for await (const ev of e.generate("The sun", { maxTokens: 200, ignoreEos: true })) {
      if (ev.type === "token") break;
    }
    await keep;
    await new Promise((r) => setTimeout(r, 20));
    const s = e.stats();
    assert.equal(s.kvBlocksUsed, 0, JSON.stringify(s));
    assert.equal(s.running, 0);
  },
});

Deno.test({
  name: "a full queue is OVERLOADED; requests that need more KV than is free wait for it",
  ignore,
  fn: async () => {
    using e = await engine({ maxBatch: 4, maxQueue: 3, kvCapacity: 512 });
    // each request reserves ceil((prompt + 300) / 16) blocks of 32: only one fits at a time
    const hs = [0, 1, 2].map(() =>
      e.submit("Once upon a time", { maxTokens: 300, temperature: 0, ignoreEos: true })
    );
    assert.throws(
      () => e.submit("x", { maxTokens: 4 }),
      (err: unknown) =>
        err instanceof LlmError && err.code === "OVERLOADED" && /queue limit 3/.test(err.message),
    );
    let peak = 0;
    e.onStep = () => peak = Math.max(peak, e.stats().running);
    const results = await Promise.all(hs.map(async (h) => {
      for await (const ev of h.events) if (ev.type === "done") return ev.result;
      throw new Error("no result");
    }));
    for (const r of results) assert.equal(r.generatedIds.length, 300);
    assert.equal(peak, 1, "KV reservation kept one sequence running at a time");
    assert.deepEqual(results[1].generatedIds, results[0].generatedIds);
  },
});

/** Count the bytes each step reads back from the backend (one entry per step, via onStep). */
function countReadback(
  backend: Backend,
  e: Engine,
): { perStep: { bytes: number; seqs: number }[]; restore(): void } {
  const perStep: { bytes: number; seqs: number }[] = [];
  let bytes = 0;
  const download = backend.download;
  backend.download = (t, o) => {
    bytes += o?.byteLength ?? t.byteLength;
    return download.call(backend, t, o);
  };
  e.onStep = (s) => {
    perStep.push({ bytes, seqs: s.seqs });
    bytes = 0;
  };
  return { perStep, restore: () => void (backend.download = download) };
}

Deno.test({
  name:
    "greedy and sampled rows take device ids next to host-sampled rows: same tokens as alone, only host rows' logits read back",
  fn: async () => {
    const { config, bytes, tokenizer } = tinyModel(3);
    const prompts = [[1, 5, 9], [1, 17, 4, 33], [1, 40], [1, 8, 8, 8, 21], [1, 60, 2, 7]];
    const options = [
      { temperature: 0 },
      { temperature: 0 },
      { temperature: 0, repetitionPenalty: 1.3 }, // greedy with a penalty: sampled on the host
      { temperature: 0.9, seed: 5 },
      { temperature: 0 },
    ];
    await forEachBackend(async (backend) => {
      const model = await parseLlama2c(bytesSource(bytes));
      const create = (o: EngineOptions) =>
        Engine.create(model, tokenizer, { backend, contextSize: 96, ...o });
      using alone = await create({ maxBatch: 1 });
      const want = [];
      for (let i = 0; i < prompts.length; i++) {
        want.push(await alone.complete(prompts[i], { maxTokens: 12, ignoreEos: true, ...options[i] }));
      }
      using batched = await create({ maxBatch: 5, kvCapacity: 480 });
      const seen = countReadback(backend, batched);
      try {
        const got = await Promise.all(
          prompts.map((p, i) => batched.complete(p, { maxTokens: 12, ignoreEos: true, ...options[i] })),
        );
        for (let i = 0; i < prompts.length; i++) {
          assert.deepEqual(got[i].generatedIds, want[i].generatedIds, `${backend.name}: sequence ${i}`);
        }
      } finally {
        seen.restore();
      }
      // with all five decoding: 5 ids plus the logits of the host-sampled rows: the penalty row, and the
      // temperature row where the backend has no device `sample` op (only an argmax)
      const V = config.vocabSize;
      const full = seen.perStep.filter((s) => s.seqs === 5);
      assert.ok(full.length >= 8, `${full.length} five-sequence steps`);
      const sampleOp = ["ref", "cuda", "webgpu"].includes(backend.name);
      const lean = 5 * 4 + (sampleOp ? 1 : 2) * V * 4;
      for (const s of full) {
        assert.ok(
          s.bytes === lean || (!sampleOp && s.bytes === 5 * V * 4),
          `${backend.name}: ${JSON.stringify(s)}`,
        );
      }
    });
  },
});

/** The backend with its `sample` op hidden, so the engine samples on the host (and argmaxes on it). */
function withoutSampleOp(b: Backend): Backend {
  return new Proxy(b, {
    get(t, k) {
      if (k === "supportsOp") {
        return (op: Parameters<Backend["supportsOp"]>[0]) => op.op !== "sample" && t.supportsOp(op);
      }
      const v = Reflect.get(t, k);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

Deno.test({
  name: "device sampling gives the host sampler's tokens (same seeds, batched, every setting)",
  fn: async () => {
    const { bytes, tokenizer } = tinyModel(4);
    const prompts = [[1, 5, 9], [1, 17, 4, 33], [1, 40], [1, 8, 8, 8, 21], [1, 60, 2, 7], [1, 3]];
    const options = [
      { temperature: 0.8, seed: 1 },
      { temperature: 1, topK: 20, seed: 2 },
      { temperature: 0.9, topP: 0.9, seed: 3 },
      { temperature: 1.3, minP: 0.1, seed: 4 },
      { temperature: 1, topK: 5, topP: 0.5, seed: 5 },
      { temperature: 2, topK: 0, topP: 0.99, minP: 0.02, seed: 6 },
    ];
    await forEachBackend(async (backend) => {
      const model = await parseLlama2c(bytesSource(bytes));
      const run = async (b: Backend, sampleOp: boolean) => {
        using e = await Engine.create(model, tokenizer, { backend: b, contextSize: 96, maxBatch: 6 });
        const seen = countReadback(b, e);
        try {
          const got = await Promise.all(
            prompts.map((p, i) => e.complete(p, { maxTokens: 16, ignoreEos: true, ...options[i] })),
          );
          // where the op exists, decode steps of all six read back ids only
          const six = seen.perStep.filter((s) => s.seqs === 6);
          if (sampleOp) {
            for (const s of six) assert.equal(s.bytes, 6 * 4, `${backend.name}: ${JSON.stringify(s)}`);
          }
          return got.map((g) => g.generatedIds);
        } finally {
          seen.restore();
        }
      };
      const sampleOp = ["ref", "cuda", "webgpu"].includes(backend.name);
      const device = await run(backend, sampleOp);
      const host = await run(withoutSampleOp(backend), false);
      assert.deepEqual(device, host, backend.name);
      // the settings really sample: the sequences are not all their greedy continuations
      assert.ok(new Set(device.flat()).size > 10, `${backend.name}: ${JSON.stringify(device)}`);
    });
  },
});

Deno.test({
  name: "a 64-row all-greedy step reads back 64 token ids, not 64 rows of logits",
  fn: async () => {
    const config = { ...TINY_CONFIG, vocabSize: 512, seqLen: 64 };
    const model = await parseLlama2c(bytesSource(writeLlama2c(config, synthWeights(config, 9))));
    const tokens = Array.from({ length: 512 }, (_, i) => `t${i}`);
    const tokenizer = createTokenizer({
      kind: "spm",
      tokens,
      scores: tokens.map(() => 0),
      bosId: 1,
      eosId: 2,
    });
    using e = await Engine.create(model, tokenizer, {
      backend: "ref",
      contextSize: 64,
      maxBatch: 64,
      kvCapacity: 64 * 32,
    });
    const seen = countReadback(e.backend, e);
    await Promise.all(
      Array.from(
        { length: 64 },
        (_, i) => e.complete([3 + i], { maxTokens: 4, temperature: 0, ignoreEos: true }),
      ),
    );
    seen.restore();
    const full = seen.perStep.filter((s) => s.seqs === 64);
    assert.ok(full.length >= 3, JSON.stringify(seen.perStep));
    for (const s of full) assert.equal(s.bytes, 64 * 4);
  },
});
