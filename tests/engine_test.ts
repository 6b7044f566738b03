/**
 * Engine behaviour: errors that say what to do, abort between tokens, stop strings, seeds,
 * queued concurrent calls, chunked prefill, and the f16 KV cache.
 */
import assert from "node:assert/strict";
import { Engine, LlmError, loadModel } from "../mod.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { parseLlama2c } from "../src/format/llama2c.ts";
import { parseLlama2cTokenizer } from "../src/format/llama2c_tokenizer.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { sharedModel } from "./_util.ts";
import { synthWeights, TINY_CONFIG, writeLlama2c } from "./_synth.ts";

const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");
const ignore = !modelPath || !tokPath;

async function engine(options: Parameters<typeof Engine.create>[2] = {}): Promise<Engine> {
  const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
  try {
    return await Engine.create(model, tokenizer, { backend: "ref", ...options });
  } finally {
    model.close();
  }
}

const isCode = (code: string) => (e: unknown): boolean => e instanceof LlmError && e.code === code;

Deno.test({
  name: "a prompt longer than the context is CONTEXT_OVERFLOW with the numbers, never truncated",
  ignore,
  fn: async () => {
    using e = await engine({ contextSize: 16 });
    const long = "Once upon a time there was a little girl named Lily who loved to play outside";
    await assert.rejects(async () => {
      for await (const _ of e.generate(long)) { /* drain */ }
    }, (err: unknown) => isCode("CONTEXT_OVERFLOW")(err) && /context holds 16/.test((err as Error).message));
  },
});

Deno.test({
  name: "generation stops at the context end with finishReason length",
  ignore,
  fn: async () => {
    using e = await engine({ contextSize: 12 });
    const r = await e.complete("Once upon a time", { maxTokens: 100, temperature: 0, ignoreEos: true });
    assert.equal(r.promptIds.length + r.generatedIds.length, 12);
    assert.equal(r.finishReason, "length");
  },
});

Deno.test({
  name: "bad options are BAD_REQUEST",
  ignore,
  fn: async () => {
    using e = await engine();
    assert.throws(() => e.generate("x", { temperature: -1 }), isCode("BAD_REQUEST"));
    assert.throws(() => e.generate("x", { maxTokens: 1.5 }), isCode("BAD_REQUEST"));
    assert.throws(() => e.generate([1, 99999]), isCode("BAD_REQUEST"));
    assert.throws(() => e.generate([], {}), isCode("BAD_REQUEST"));
    await assert.rejects(engine({ contextSize: 0 }), isCode("BAD_REQUEST"));
    await assert.rejects(engine({ kvDType: "q4_0" }), isCode("UNSUPPORTED_DTYPE"));
  },
});

Deno.test({
  name: "an AbortSignal stops generation between tokens",
  ignore,
  fn: async () => {
    using e = await engine();
    const ac = new AbortController();
    let n = 0;
    let result;
    for await (
      const ev of e.generate("Once", { maxTokens: 200, temperature: 0, ignoreEos: true, signal: ac.signal })
    ) {
      if (ev.type === "token" && ++n === 5) ac.abort();
      if (ev.type === "done") result = ev.result;
    }
    assert.equal(result!.finishReason, "abort");
    assert.equal(result!.generatedIds.length, 5);
    // the engine is usable afterwards and its KV blocks were returned
    const again = await e.complete("Once", { maxTokens: 3, temperature: 0 });
    assert.equal(again.generatedIds.length, 3);
  },
});

Deno.test({
  name: "stop strings end the text before the stop",
  ignore,
  fn: async () => {
    using e = await engine();
    const full = await e.complete("Once upon a time", { maxTokens: 40, temperature: 0 });
    assert.ok(full.text.includes("Lily"), full.text);
    const r = await e.complete("Once upon a time", { maxTokens: 40, temperature: 0, stop: ["Lily"] });
    assert.equal(r.finishReason, "stop");
    assert.equal(r.text, full.text.slice(0, full.text.indexOf("Lily")));
  },
});

Deno.test({
  name: "same seed, same text; another seed, another text; streamed text equals the result",
  ignore,
  fn: async () => {
    using e = await engine();
    const opts = { maxTokens: 48, temperature: 1, topK: 0, topP: 1, minP: 0 };
    const a = await e.complete("Once", { ...opts, seed: 42 });
    const b = await e.complete("Once", { ...opts, seed: 42 });
    const c = await e.complete("Once", { ...opts, seed: 43 });
    assert.deepEqual(a.generatedIds, b.generatedIds);
    assert.notDeepEqual(a.generatedIds, c.generatedIds);
    let streamed = "";
    for await (const ev of e.generate("Once", { ...opts, seed: 42 })) {
      if (ev.type === "token") streamed += ev.text;
    }
    assert.equal(streamed, a.text);
  },
});

Deno.test({
  name: "concurrent generate calls queue and give the same results as sequential ones",
  ignore,
  fn: async () => {
    using e = await engine();
    const prompts = ["Once upon a time", "The little dog", "Tom and Lily"];
    const seq = [];
    for (const p of prompts) seq.push((await e.complete(p, { maxTokens: 20, temperature: 0 })).generatedIds);
    const par = await Promise.all(prompts.map((p) => e.complete(p, { maxTokens: 20, temperature: 0 })));
    assert.deepEqual(par.map((r) => r.generatedIds), seq);
  },
});

Deno.test({
  name: "prefill in chunks of 3 tokens equals prefill in one step; f16 KV stays close",
  ignore,
  fn: async () => {
    const prompt = "The little dog was sad because he could not find his ball";
    using whole = await engine();
    using chunked = await engine({ maxStepTokens: 3 });
    using f16 = await engine({ kvDType: "f16" });
    const a = await whole.complete(prompt, { maxTokens: 32, temperature: 0 });
    const b = await chunked.complete(prompt, { maxTokens: 32, temperature: 0 });
    const c = await f16.complete(prompt, { maxTokens: 32, temperature: 0 });
    assert.deepEqual(b.generatedIds, a.generatedIds);
    let agree = 0;
    while (agree < 32 && c.generatedIds[agree] === a.generatedIds[agree]) agree++;
    console.log(`f16 KV cache: ${agree}/32 greedy tokens agree with f32`);
    assert.ok(agree >= 16, `f16 KV diverged after ${agree} tokens`);
    assert.equal(f16.info().kvBytes * 2, whole.info().kvBytes);
  },
});

Deno.test({
  name: "int8 KV cache: bytes as predicted (0.75x f16 at headDim 8, 0.52x at 128), greedy text close to f32",
  ignore,
  fn: async () => {
    const prompt = "The little dog was sad because he could not find his ball";
    using whole = await engine();
    using f16 = await engine({ kvDType: "f16" });
    using i8 = await engine({ kvDType: "i8" });
    const a = await whole.complete(prompt, { maxTokens: 32, temperature: 0 });
    const c = await i8.complete(prompt, { maxTokens: 32, temperature: 0 });
    let agree = 0;
    while (agree < 32 && c.generatedIds[agree] === a.generatedIds[agree]) agree++;
    const ratio = i8.info().kvBytes / f16.info().kvBytes;
    console.log(
      `int8 KV cache: ${agree}/32 greedy tokens agree with f32; ${ratio.toFixed(3)}x the f16 bytes`,
    );
    assert.ok(agree >= 8, `int8 KV diverged after ${agree} tokens`);
    // stories260K has headDim 8, so the f32 scale per head costs 4/8 of the int8 data: 0.75x f16
    assert.ok(Math.abs(ratio - (8 + 4) / 16) < 1e-9, `int8/f16 KV bytes ${ratio}`);
  },
});

Deno.test({
  name: "a tokenizer whose vocabulary does not match the model is TOKENIZER_MISMATCH",
  ignore: !tokPath,
  fn: async () => {
    const config = { ...TINY_CONFIG, vocabSize: 300 };
    const model = await parseLlama2c(bytesSource(writeLlama2c(config, synthWeights(config, 1))));
    const tokenizer = createTokenizer(
      parseLlama2cTokenizer(await Deno.readFile(tokPath!), { vocabSize: 512 }),
    );
    await assert.rejects(
      Engine.create(model, tokenizer, { backend: "ref" }),
      (e: unknown) =>
        isCode("TOKENIZER_MISMATCH")(e) && /512/.test((e as Error).message) &&
        /300/.test((e as Error).message),
    );
  },
});

Deno.test({
  name: "logitsFor gives, at each position, the logits greedy decoding follows",
  ignore,
  fn: async () => {
    using e = await engine();
    const r = await e.complete("Once upon a time", { maxTokens: 8, temperature: 0 });
    const ids = [...r.promptIds, ...r.generatedIds];
    const logits = await e.logitsFor(ids);
    assert.equal(logits.length, ids.length);
    for (let i = r.promptIds.length - 1; i < ids.length - 1; i++) {
      const row = logits[i];
      const argmax = row.indexOf(Math.max(...row));
      assert.equal(argmax, ids[i + 1], `position ${i}`);
    }
    await assert.rejects(e.logitsFor([]), isCode("BAD_REQUEST"));
  },
});
