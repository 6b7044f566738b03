/**
 * Our SentencePiece tokenizer on the real Llama-2 vocabulary (read from llama-2-tiny-random.gguf)
 * against llama-tokenizer-js, an independent JS implementation embedding the same vocabulary and the
 * merges of Meta's tokenizer. Hundreds of deterministic strings: every script, emoji, digits,
 * whitespace runs, code, punctuation.
 *
 * Known, deliberate difference: for "" the oracle returns [] even with BOS requested, while
 * SentencePiece/HF/llama.cpp give [BOS]; that one case is checked against the reference behaviour.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import oracle from "llama-tokenizer-js";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { tokenizerDataFromHfJson } from "../src/format/tokenizer_hf.ts";
import { rng, sharedModel } from "./_util.ts";

/**
 * Just enough of GGUF to pull the tokenizer arrays out of the metadata (kept local so this test does
 * not depend on the real parser): header, then key/value pairs; tensors are never reached.
 */
function ggufMetadata(bytes: Uint8Array): Map<string, unknown> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // ignoreBOM: the Llama-2 vocabulary has a token that is exactly U+FEFF.
  const dec = new TextDecoder("utf-8", { ignoreBOM: true });
  let o = 0;
  const u32 = (): number => (o += 4, v.getUint32(o - 4, true));
  const u64 = (): number => (o += 8, Number(v.getBigUint64(o - 8, true)));
  const str = (): string => {
    const n = u64();
    return dec.decode(bytes.subarray(o, o += n));
  };
  const SKIP: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type: number): unknown => {
    if (type === 4) return u32();
    if (type === 5) return (o += 4, v.getInt32(o - 4, true));
    if (type === 6) return (o += 4, v.getFloat32(o - 4, true));
    if (type === 8) return str();
    if (type === 9) {
      const t = u32(), n = u64();
      return Array.from({ length: n }, () => value(t));
    }
    if (!(type in SKIP)) throw new Error(`GGUF value type ${type} at ${o}`);
    o += SKIP[type];
    return undefined;
  };
  assert.equal(u32(), 0x46554747, "GGUF magic");
  u32(); // version
  u64(); // tensor count
  const kv = new Map<string, unknown>();
  for (let i = 0, n = u64(); i < n; i++) {
    const key = str();
    kv.set(key, value(u32()));
  }
  return kv;
}

const POOL = [
  "the",
  "The",
  " quick",
  "brown",
  "fox",
  "jumps",
  "über",
  "naïve",
  "café",
  "résumé",
  "Ελληνικά",
  "русский",
  "日本語",
  "中文字符",
  "한국어",
  "مرحبا",
  "بالعالم",
  "नमस्ते",
  "हिन्दी",
  "ภาษาไทย",
  "👍",
  "🦙",
  "👨‍👩‍👧",
  "🏳️‍🌈",
  "😀😃",
  "0",
  "42",
  "2024",
  "3.14",
  "1,000,000",
  " ",
  "  ",
  "    ",
  "\n",
  "\n\n",
  "\t",
  "\r\n",
  "!",
  "?",
  "...",
  "()",
  "{}",
  "[]",
  "=>",
  "==",
  "//",
  "#",
  "$",
  "%",
  "&&",
  "||",
  "'",
  '"',
  "`",
  "~",
  "^",
  "<",
  ">",
  "<s>",
  "</s>",
  "\\",
  "_",
  "-",
  "—",
  "–",
  "«»",
  "€",
  "£",
  "¥",
  "©",
  "™",
  "def",
  "function",
  "return",
  "import",
  "console.log(",
  "i++",
  "x=1;",
  "ÀÉÎÕÜ",
  "ß",
  "Ꙋ",
  "\u00a0",
  "\u200b",
  "\ufeff",
  "e\u0301",
  "ﬁ",
  "𝔘𝔫𝔦",
  "Ａ",
  "ｶﾀｶﾅ",
];

const HAND_PICKED = [
  "Hello world",
  "grabbed",
  " grabbed",
  "           grabbed",
  "\n",
  " \n",
  "\ttabs\t\t\t\tout here",
  "ax\n####\nboo",
  "镇",
  "🦙",
  "🦙Ꙋ",
  "Ꙋ🦙",
  "café naïve résumé à la crème brûlée",
  "日本語のテキストです。",
  "中文，标点！",
  "مرحبا بالعالم",
  "नमस्ते दुनिया",
  "👨‍👩‍👧‍👦 family",
  "🏳️‍🌈 flag",
  "1234567890 3.14159 1e-9",
  "  leading spaces",
  "trailing spaces   ",
  "a\n\n\nb",
  "line1\r\nline2",
  "function f(x) { return x * 2; }",
  "for (let i = 0; i < n; i++) {\n\tsum += a[i];\n}",
  "def main():\n    print('hi')\n",
  "<s>hi</s>",
  "[INST] Hello [/INST]",
  "!!!???...,,,",
  "x".repeat(50),
  " ".repeat(33),
  "\n".repeat(7),
  "The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) (Lama glama) is a domesticated South American camelid.",
  "Ü",
  "\u0000",
  "\u0007bell",
  "\ufeffbom",
  "\u200b",
  "ok\u00a0ok",
];

function corpus(): string[] {
  const r = rng(20240917);
  const out = [...HAND_PICKED];
  for (let i = 0; i < 400; i++) {
    let s = "";
    for (let j = 0, n = 1 + Math.floor(r() * 12); j < n; j++) {
      s += POOL[Math.floor(r() * POOL.length)];
      if (r() < 0.4) s += " ";
    }
    out.push(s);
  }
  // Random code points, mostly outside the vocabulary: byte fallback everywhere.
  for (let i = 0; i < 100; i++) {
    let s = "";
    for (let j = 0, n = 1 + Math.floor(r() * 30); j < n; j++) {
      const cp = r() < 0.5 ? 0x20 + Math.floor(r() * 0x5f) : Math.floor(r() * 0x2ffff);
      if (cp < 0xd800 || cp >= 0xe000) s += String.fromCodePoint(cp);
    }
    out.push(s);
  }
  return out;
}

const ggufPath = sharedModel("llama-2-tiny-random.gguf");

function llama2Data(): TokenizerData {
  const kv = ggufMetadata(readFileSync(ggufPath!));
  assert.equal(kv.get("tokenizer.ggml.model"), "llama");
  return {
    kind: "spm",
    tokens: kv.get("tokenizer.ggml.tokens") as string[],
    scores: kv.get("tokenizer.ggml.scores") as number[],
    tokenTypes: kv.get("tokenizer.ggml.token_type") as number[],
    bosId: kv.get("tokenizer.ggml.bos_token_id") as number,
    eosId: kv.get("tokenizer.ggml.eos_token_id") as number,
    unkId: kv.get("tokenizer.ggml.unknown_token_id") as number,
  };
}

Deno.test({
  name: "oracle: Llama-2 spm encode/decode agrees with llama-tokenizer-js",
  ignore: !ggufPath,
  fn() {
    const data = llama2Data();
    assert.deepEqual(data.tokens, oracle.vocabById, "same 32000-token vocabulary");
    const tok = createTokenizer(data);
    const strings = corpus();
    let agree = 0, roundTrips = 0, decodes = 0;
    const failures: string[] = [];
    for (const s of strings) {
      const ours = tok.encode(s);
      const theirs = oracle.encode(s);
      if (JSON.stringify(ours) === JSON.stringify(theirs)) agree++;
      else failures.push(`encode ${JSON.stringify(s)}: ours ${ours} oracle ${theirs}`);
      if (tok.decode(ours) === s) roundTrips++;
      else failures.push(`round trip ${JSON.stringify(s)} gave ${JSON.stringify(tok.decode(ours))}`);
      if (tok.decode(ours) === oracle.decode(ours)) decodes++;
      else failures.push(`decode ${JSON.stringify(s)}: oracle ${JSON.stringify(oracle.decode(ours))}`);
    }
    console.log(
      `llama-tokenizer-js agreement: encode ${agree}/${strings.length}, decode ${decodes}/${strings.length}, ` +
        `round trips ${roundTrips}/${strings.length}`,
    );
    assert.deepEqual(failures, []);
    // The oracle's one known deviation: "" gives [] even with BOS; SentencePiece/HF give [BOS].
    assert.deepEqual(oracle.encode(""), []);
    assert.deepEqual(tok.encode(""), [1]);
    assert.deepEqual(tok.encode("", { addBos: false }), []);
    // Without BOS and dummy prefix the oracle's flags match ours too.
    const noPrefix = createTokenizer({ ...data, addSpacePrefix: false });
    for (const s of strings.slice(0, 100)) {
      assert.deepEqual(
        noPrefix.encode(s, { addBos: false }),
        oracle.encode(s, false, false),
        JSON.stringify(s),
      );
    }
  },
});

Deno.test({
  name: "oracle: special tokens with parseSpecial; a 100 KB prompt encodes fast",
  ignore: !ggufPath,
  fn() {
    const tok = createTokenizer(llama2Data());
    // As llama.cpp: each text chunk after a special token gets its own dummy prefix.
    const ids = tok.encode("<s>[INST] Hi there [/INST] Hello!</s>", { parseSpecial: true });
    assert.deepEqual(ids, [
      1,
      1,
      ...oracle.encode("[INST] Hi there [/INST] Hello!", false, true),
      2,
    ]);
    assert.equal(tok.decode(ids), "[INST] Hi there [/INST] Hello!");
    const big = corpus().join(" ").repeat(4).slice(0, 100_000);
    const t0 = performance.now();
    const bigIds = tok.encode(big);
    const ms = performance.now() - t0;
    console.log(`100 KB mixed-script prompt: ${bigIds.length} tokens in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 1000, `took ${ms} ms`);
    assert.equal(tok.decode(bigIds), big);
  },
});

Deno.test({
  name: "oracle: HF-style Llama-2 tokenizer.json (merges, no scores) encodes like the GGUF scores",
  ignore: !ggufPath,
  fn() {
    // Rebuild a Llama-2 tokenizer.json from the oracle's own vocabulary and merge ranks.
    const vocab: Record<string, number> = {};
    oracle.vocabById.forEach((t, i) => (vocab[t] = i));
    const merges = [...oracle.merges.entries()].sort((a, b) => a[1] - b[1]).map(([m]) => m);
    const data = tokenizerDataFromHfJson({
      added_tokens: ["<unk>", "<s>", "</s>"].map((content, id) => ({ id, content, special: true })),
      normalizer: {
        type: "Sequence",
        normalizers: [{ type: "Prepend", prepend: "▁" }, {
          type: "Replace",
          pattern: { String: " " },
          content: "▁",
        }],
      },
      post_processor: {
        type: "TemplateProcessing",
        single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      },
      model: { type: "BPE", unk_token: "<unk>", byte_fallback: true, vocab, merges },
    });
    assert.equal(data.kind, "spm");
    const fromHf = createTokenizer(data);
    const fromGguf = createTokenizer(llama2Data());
    let agree = 0;
    const strings = corpus();
    for (const s of strings) {
      assert.deepEqual(fromHf.encode(s), fromGguf.encode(s), JSON.stringify(s));
      agree++;
    }
    console.log(`HF-merges spm vs GGUF-scores spm: ${agree}/${strings.length} identical`);
  },
});
