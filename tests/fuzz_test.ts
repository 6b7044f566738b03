/**
 * Every loader against hundreds of mutated files: flipped bytes, truncations, spliced and inflated
 * length fields. Each must answer with a parsed model or an LlmError, quickly: never another error
 * type (a RangeError from a huge allocation, a TypeError), never a hang.
 */
import assert from "node:assert/strict";
import { LlmError } from "../src/errors.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { parseGguf } from "../src/format/gguf.ts";
import { parseLlama2c } from "../src/format/llama2c.ts";
import { parseSafetensorsHeader } from "../src/format/safetensors.ts";
import { hfConfigToLlama } from "../src/format/safetensors.ts";
import { parseLlama2cTokenizer } from "../src/format/llama2c_tokenizer.ts";
import { tokenizerDataFromHfJson } from "../src/format/tokenizer_hf.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { rng } from "./_util.ts";
import {
  hfConfigJson,
  synthGgufBytes,
  synthWeights,
  TINY_CONFIG,
  toHfTensors,
  writeLlama2c,
  writeSafetensors,
} from "./_synth.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { placeholderVocab } from "./_memory_model.ts";

const config: LlamaConfig = {
  ...TINY_CONFIG,
  nLayers: 1,
  hiddenDim: 64,
  dim: 32,
  nHeads: 4,
  nKvHeads: 2,
  vocabSize: 64,
};
const weights = synthWeights(config, 3);
const tokData: TokenizerData = placeholderVocab(64, "t");
const tokens = tokData.tokens;

/** Apply one of several mutation kinds, chosen by the seeded RNG. */
function mutate(src: Uint8Array, r: () => number): Uint8Array {
  const b = src.slice();
  const at = (n = b.length): number => Math.floor(r() * n);
  switch (Math.floor(r() * 6)) {
    case 0: // flip bits at a few places
      for (let i = 0; i < 1 + at(4); i++) b[at()] ^= 1 << at(8);
      return b;
    case 1: // truncate
      return b.subarray(0, at());
    case 2: // flip within the header, where lengths and counts live
      for (let i = 0; i < 1 + at(3); i++) b[at(Math.min(b.length, 512))] = at(256);
      return b;
    case 3: { // an inflated 64-bit or 32-bit length
      const o = at(Math.min(b.length - 8, 512));
      const dv = new DataView(b.buffer);
      if (r() < 0.5) dv.setBigUint64(o, BigInt(Math.floor(r() * 2 ** 52)), true);
      else dv.setUint32(o, 0xffffffff - at(1000), true);
      return b;
    }
    case 4: { // duplicate a slice (shifts everything after it)
      const s = at(), e = Math.min(b.length, s + 1 + at(64));
      const out = new Uint8Array(b.length + (e - s));
      out.set(b.subarray(0, e));
      out.set(b.subarray(s), e);
      return out;
    }
    default: // zero a run
      b.fill(0, at(), at());
      return b;
  }
}

async function fuzz(
  name: string,
  seed: number,
  n: number,
  base: Uint8Array,
  parse: (b: Uint8Array) => Promise<unknown>,
): Promise<void> {
  const r = rng(seed);
  let ok = 0, rejected = 0, slowest = 0;
  for (let i = 0; i < n; i++) {
    const bytes = mutate(base, r);
    const t0 = performance.now();
    try {
      await parse(bytes);
      ok++;
    } catch (e) {
      if (!(e instanceof LlmError)) {
        throw new Error(`${name} mutation ${i}: ${(e as Error)?.name}: ${(e as Error)?.message}`, {
          cause: e,
        });
      }
      assert.ok(e.message.length > 20, `${name}: terse error "${e.message}"`);
      rejected++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  console.log(
    `${name}: ${n} mutations, ${ok} parsed, ${rejected} LlmErrors, slowest ${slowest.toFixed(1)} ms`,
  );
  assert.ok(slowest < 2000, `${name}: a mutation took ${slowest} ms`);
}

Deno.test("fuzz: GGUF", async () => {
  const base = synthGgufBytes(config, weights, "q8_0", tokData);
  await parseGguf(bytesSource(base)); // the unmutated file parses
  await fuzz("gguf", 1, 400, base, async (b) => {
    const m = await parseGguf(bytesSource(b));
    if (m.tokenizer) createTokenizer(m.tokenizer).encode("hello world");
  });
});

Deno.test("fuzz: llama2.c checkpoint", async () => {
  const base = writeLlama2c(config, weights);
  await fuzz("llama2c", 2, 300, base, (b) => parseLlama2c(bytesSource(b)));
});

Deno.test("fuzz: safetensors header and config.json", async () => {
  const base = writeSafetensors(
    [...toHfTensors(config, weights)].map(([name, t]) => ({
      name,
      dtype: "F16",
      shape: t.shape,
      data: t.data,
    })),
  );
  await fuzz("safetensors", 3, 300, base, (b) => parseSafetensorsHeader(bytesSource(b)));
  const json = new TextEncoder().encode(JSON.stringify(hfConfigJson(config)));
  await fuzz("config.json", 4, 300, json, (b) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(b));
    } catch {
      return Promise.resolve(); // the loader reports JSON syntax errors itself; here we fuzz the schema
    }
    return Promise.resolve(hfConfigToLlama(parsed, "config.json"));
  });
});

Deno.test("fuzz: llama2.c tokenizer and tokenizer.json", async () => {
  const enc = new TextEncoder();
  const parts: number[] = [];
  const dv = (n: number, f = false): number[] => {
    const b = new DataView(new ArrayBuffer(4));
    if (f) b.setFloat32(0, n, true);
    else b.setInt32(0, n, true);
    return [...new Uint8Array(b.buffer)];
  };
  parts.push(...dv(8));
  tokens.forEach((t, i) => {
    const s = enc.encode(t.replace("▁", " "));
    parts.push(...dv(-i, true), ...dv(s.length), ...s);
  });
  const tokBin = Uint8Array.from(parts);
  await fuzz("llama2c tokenizer", 5, 300, tokBin, (b) => {
    const t = createTokenizer(parseLlama2cTokenizer(b, { vocabSize: 64 }));
    t.encode("a mutated tokenizer still encodes");
    return Promise.resolve();
  });
  const hf = {
    model: {
      type: "BPE",
      vocab: { "a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4 },
      merges: ["a b", "Ġ a"],
    },
    pre_tokenizer: { type: "ByteLevel" },
    decoder: { type: "ByteLevel" },
    added_tokens: [{ id: 5, content: "<|end|>", special: true }],
  };
  await fuzz("tokenizer.json", 6, 300, enc.encode(JSON.stringify(hf)), (b) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(b));
    } catch {
      return Promise.resolve();
    }
    createTokenizer(tokenizerDataFromHfJson(parsed)).encode("ab a");
    return Promise.resolve();
  });
});
