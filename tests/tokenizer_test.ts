/**
 * Tokenizer tests: the llama2.c golden prompts, llama2.c tokenizer.bin parsing (and fuzzing), byte
 * fallback, streaming decode, byte-level BPE on a hand-made vocabulary, the pre-tokenizer regexes and
 * HF tokenizer.json parsing.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { LlmError, type LlmErrorCode } from "../src/errors.ts";
import { type TokenizerData, TokenType } from "../src/format/tokenizer.ts";
import { parseLlama2cTokenizer } from "../src/format/llama2c_tokenizer.ts";
import { checkTokenizerMatchesModel, createTokenizer } from "../src/format/tokenizer_load.ts";
import { preTokenize, preTokenizerRegex } from "../src/format/tokenizer_bpe.ts";
import { tokenizerDataFromHfJson } from "../src/format/tokenizer_hf.ts";
import { rng, sharedModel } from "./_util.ts";

/** Assert `fn` throws an LlmError with `code` (and, optionally, a message matching `re`). */
function throwsCode(fn: () => unknown, code: LlmErrorCode, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LlmError, `expected LlmError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

/** Write a llama2.c tokenizer.bin: int32 max_token_length, then (f32 score, i32 len, bytes) per token. */
function writeLlama2c(pieces: readonly (readonly [string, number])[]): Uint8Array {
  const enc = pieces.map(([t]) => new TextEncoder().encode(t));
  const maxLen = Math.max(...enc.map((b) => b.length));
  const out = new Uint8Array(4 + enc.reduce((n, b) => n + 8 + b.length, 0));
  const v = new DataView(out.buffer);
  v.setInt32(0, maxLen, true);
  let o = 4;
  enc.forEach((b, i) => {
    v.setFloat32(o, pieces[i][1], true);
    v.setInt32(o + 4, b.length, true);
    out.set(b, o + 8);
    o += 8 + b.length;
  });
  return out;
}

/** A small llama2.c-style vocabulary: specials, 256 byte tokens (ids 3..258), then scored pieces. */
const SMALL_PIECES: [string, number][] = [
  ["<unk>", 0],
  ["\n<s>\n", 0],
  ["\n</s>\n", 0],
  ...Array.from({ length: 256 }, (_, b) =>
    [`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`, 0] as [
      string,
      number,
    ]),
  [" ", -10], // 259
  ["a", -11], // 260
  ["b", -12], // 261
  [" a", -1], // 262
  ["ab", -2], // 263
  [" ab", -3], // 264
  ["世", -13], // 265
];
const SMALL = writeLlama2c(SMALL_PIECES);
const smallTok = () => createTokenizer(parseLlama2cTokenizer(SMALL, { vocabSize: SMALL_PIECES.length }));

// ---- golden: llama2.c encode/decode on stories260K ----------------------------------------------------

const tok512Path = sharedModel("tok512.bin");
const goldenPath = sharedModel("stories260K.golden.json");

Deno.test({
  name: "golden: prompt_ids = BOS + encode(prompt); decode(prompt + generated) = text",
  ignore: !tok512Path || !goldenPath,
  fn() {
    const tok = createTokenizer(parseLlama2cTokenizer(readFileSync(tok512Path!), { vocabSize: 512 }));
    const golden = JSON.parse(readFileSync(goldenPath!, "utf8")) as {
      cases: { prompt: string; prompt_ids: number[]; generated_ids: number[]; text: string }[];
    };
    assert.ok(golden.cases.length >= 3);
    for (const c of golden.cases) {
      assert.deepEqual(tok.encode(c.prompt), c.prompt_ids, `prompt ${JSON.stringify(c.prompt)}`);
      const all = [...c.prompt_ids, ...c.generated_ids];
      // run.c prints every piece after the first token (BOS), dropping the leading space of the piece
      // that follows BOS: exactly decode() of the whole sequence.
      assert.equal(tok.decode(all), c.text);
      const sd = tok.streamDecoder();
      assert.equal(all.map((id) => sd.push(id)).join("") + sd.flush(), c.text);
    }
  },
});

Deno.test({
  name: "tok512: vocab size mismatch and BOS/EOS conventions",
  ignore: !tok512Path,
  fn() {
    const bytes = readFileSync(tok512Path!);
    throwsCode(() => parseLlama2cTokenizer(bytes, { vocabSize: 513 }), "TOKENIZER_MISMATCH", /513/);
    throwsCode(() => parseLlama2cTokenizer(bytes, { vocabSize: 32000 }), "TOKENIZER_MISMATCH", /32000/);
    throwsCode(() => parseLlama2cTokenizer(bytes, { vocabSize: 511 }), "TOKENIZER_MISMATCH", /more tokens/);
    const data = parseLlama2cTokenizer(bytes);
    assert.equal(data.tokens.length, 512);
    const tok = createTokenizer(data);
    assert.equal(tok.bosId, 1);
    assert.deepEqual(tok.eosIds, [2, 1]); // run.c stops when the model starts a new story (BOS)
    assert.equal(tok.tokenText(1), "<s>");
    throwsCode(() => checkTokenizerMatchesModel(tok, 32000, "model.bin"), "TOKENIZER_MISMATCH", /512.*32000/);
    checkTokenizerMatchesModel(tok, 512, "model.bin");
    // A 100 KB prompt must not be quadratic.
    const big = "Once upon a time, a little girl named Lily found a shiny red ball. ".repeat(1500);
    const t0 = performance.now();
    const ids = tok.encode(big);
    const ms = performance.now() - t0;
    assert.ok(ms < 1000, `encoding ${big.length} chars took ${ms.toFixed(0)} ms`);
    assert.equal(tok.decode(ids), big);
  },
});

// ---- llama2.c tokenizer on a synthetic vocabulary ----------------------------------------------------

Deno.test("spm: merges by score, dummy prefix, byte fallback, empty string", () => {
  const tok = smallTok();
  assert.equal(tok.vocabSize, SMALL_PIECES.length);
  // " ab": pairs (" ",a)=" a" -1, (a,b)="ab" -2 → " a" first, then (" a",b) = " ab" (-3).
  assert.deepEqual(tok.encode("ab"), [1, 264]);
  assert.deepEqual(tok.encode("ab", { addBos: false }), [264]);
  // " ba": (" ",b) and (b,a) are no pieces: nothing merges.
  assert.deepEqual(tok.encode("ba", { addBos: false }), [259, 261, 260]);
  assert.deepEqual(tok.encode(""), [1]);
  assert.deepEqual(tok.encode("", { addBos: false }), []);
  // "é" is not a piece: its UTF-8 bytes C3 A9 become byte tokens 3+0xC3, 3+0xA9.
  assert.deepEqual(tok.encode("é", { addBos: false }), [259, 3 + 0xc3, 3 + 0xa9]);
  assert.deepEqual(tok.encode("a世b", { addBos: false }), [262, 265, 261]);
  // Ties go to the leftmost pair: "aa" has no piece, " a" twice: only the first gets the space.
  assert.deepEqual(tok.encode("a a", { addBos: false }), [262, 262]);
  assert.equal(tok.decode([1, 262, 261]), "ab");
  assert.equal(tok.decode([262, 261]), " ab"); // no BOS before: the space is real text
  assert.equal(tok.decode(tok.encode("é世 🦙")), "é世 🦙");
  assert.deepEqual([...tok.tokenBytes(3 + 0x0a)], [0x0a]);
  assert.deepEqual([...tok.tokenBytes(262)], [0x20, 0x61]);
  throwsCode(() => tok.decode([9999]), "BAD_REQUEST", /9999/);
  throwsCode(() => tok.decode([-1]), "BAD_REQUEST");
});

Deno.test("spm: special tokens are text unless parseSpecial; control tokens skipped unless keepSpecial", () => {
  const tok = smallTok();
  const plain = tok.encode("<s>a", { addBos: false });
  assert.ok(!plain.includes(1), "without parseSpecial <s> is plain text");
  assert.equal(tok.decode([1, ...plain]), "<s>a");
  // With parseSpecial the text after a special token gets the dummy prefix again (llama.cpp).
  assert.deepEqual(tok.encode("<s>a</s>", { addBos: false, parseSpecial: true }), [1, 262, 2]);
  assert.deepEqual(tok.encode("a</s>", { parseSpecial: true }), [1, 262, 2]);
  assert.equal(tok.decode([1, 262, 2]), "a");
  assert.equal(tok.decode([1, 262, 2], { keepSpecial: true }), "<s>a</s>");
});

Deno.test("spm: stream decoder never splits a UTF-8 character", () => {
  const tok = smallTok();
  const text = "a 🦙 世 é 👨‍👩‍👧 ab";
  const ids = tok.encode(text);
  assert.ok(ids.filter((id) => id >= 3 && id < 259).length >= 10, "emoji come out as byte tokens");
  const sd = tok.streamDecoder();
  const chunks = ids.map((id) => sd.push(id));
  chunks.push(sd.flush());
  assert.equal(chunks.join(""), text);
  assert.ok(chunks.every((c) => !c.includes("\uFFFD")), "no replacement characters");
  assert.ok(chunks.filter((c) => c === "").length >= 6, "partial characters were held back");
  // A truncated character at the end of the stream becomes U+FFFD on flush.
  const sd2 = tok.streamDecoder();
  assert.equal(sd2.push(3 + 0xf0) + sd2.push(3 + 0x9f), "");
  assert.equal(sd2.flush(), "\uFFFD");
});

Deno.test("llama2.c tokenizer: truncated and malformed files fail with LlmError codes", () => {
  const n = SMALL_PIECES.length;
  throwsCode(() => parseLlama2cTokenizer(new Uint8Array(2)), "TOKENIZER_FORMAT", /too short/);
  throwsCode(
    () => parseLlama2cTokenizer(SMALL.subarray(0, SMALL.length - 1), { vocabSize: n }),
    "TOKENIZER_MISMATCH",
  );
  throwsCode(
    () => parseLlama2cTokenizer(SMALL.subarray(0, SMALL.length - 1)),
    "TOKENIZER_FORMAT",
    /truncated/,
  );
  throwsCode(
    () => parseLlama2cTokenizer(SMALL.subarray(0, 100), { vocabSize: n }),
    "TOKENIZER_MISMATCH",
    /vocab/,
  );
  throwsCode(
    () => parseLlama2cTokenizer(new Uint8Array([...SMALL, 0, 0, 0, 0, 0, 0, 0, 0]), { vocabSize: n }),
    "TOKENIZER_MISMATCH",
    /remain/,
  );
  throwsCode(
    () => parseLlama2cTokenizer(SMALL, { vocabSize: n + 1 }),
    "TOKENIZER_MISMATCH",
    new RegExp(`${n + 1}`),
  );
  const badLen = SMALL.slice();
  new DataView(badLen.buffer).setInt32(8, -5, true); // length of token 0
  throwsCode(() => parseLlama2cTokenizer(badLen, { vocabSize: n }), "TOKENIZER_FORMAT", /length -5/);
  new DataView(badLen.buffer).setInt32(8, 1 << 30, true);
  throwsCode(() => parseLlama2cTokenizer(badLen), "TOKENIZER_FORMAT", /max_token_length/);
  const badMax = SMALL.slice();
  new DataView(badMax.buffer).setInt32(0, 0, true);
  throwsCode(() => parseLlama2cTokenizer(badMax), "TOKENIZER_FORMAT", /max_token_length 0/);
  throwsCode(() => parseLlama2cTokenizer(writeLlama2c([["<unk>", 0]])), "TOKENIZER_FORMAT", /only 1/);
  throwsCode(() => parseLlama2cTokenizer(SMALL, { vocabSize: -1 }), "BAD_REQUEST");
});

Deno.test("llama2.c tokenizer: fuzzed files throw only LlmError and stay fast", () => {
  const r = rng(7);
  const n = SMALL_PIECES.length;
  const t0 = performance.now();
  for (let iter = 0; iter < 1500; iter++) {
    let bytes = SMALL.slice();
    const edits = 1 + Math.floor(r() * 8);
    for (let e = 0; e < edits; e++) bytes[Math.floor(r() * bytes.length)] = Math.floor(r() * 256);
    if (r() < 0.3) bytes = bytes.subarray(0, Math.floor(r() * bytes.length));
    for (const vocabSize of [n, undefined]) {
      try {
        const tok = createTokenizer(parseLlama2cTokenizer(bytes, { vocabSize }));
        const ids = tok.encode("a ab é 世 🦙", { parseSpecial: true });
        tok.decode(ids, { keepSpecial: true });
      } catch (e) {
        if (!(e instanceof LlmError)) throw e;
      }
    }
  }
  assert.ok(performance.now() - t0 < 20000);
});

Deno.test("spm: TokenizerData validation", () => {
  throwsCode(() => createTokenizer({ kind: "spm", tokens: [] }), "TOKENIZER_FORMAT");
  throwsCode(
    () => createTokenizer({ kind: "spm", tokens: ["a", "b"], scores: [0] }),
    "TOKENIZER_FORMAT",
    /scores/,
  );
  throwsCode(
    () => createTokenizer({ kind: "spm", tokens: ["a", "b"], bosId: 5 }),
    "TOKENIZER_FORMAT",
    /BOS id 5/,
  );
  throwsCode(() => createTokenizer({ kind: "nope" } as unknown as TokenizerData), "TOKENIZER_FORMAT", /nope/);
});

// ---- byte-level BPE on a hand-made vocabulary --------------------------------------------------------

// Byte-level spelling: " " is "Ġ", "\n" is "Ċ"; é (C3 A9) is "Ã" + "©".
const BPE_TOKENS = [
  "h",
  "e",
  "l",
  "o",
  "Ġ",
  "w",
  "r",
  "d",
  "he",
  "ll", // 0-9
  "llo",
  "hello",
  "Ġw",
  "or",
  "Ġwor",
  "ld",
  "Ġworld",
  "<|end|>",
  "Ċ",
  "1", // 10-19
  "2",
  "3",
  "12",
  "Ã",
  "©",
  "<|bos|>", // 20-25
];
const BPE_MERGES = ["h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2"];
const bpeData: TokenizerData = {
  kind: "bpe",
  tokens: BPE_TOKENS,
  merges: BPE_MERGES,
  bosId: 25,
  eosId: 17,
  tokenTypes: BPE_TOKENS.map((t) => (t.startsWith("<|") ? TokenType.CONTROL : TokenType.NORMAL)),
};

Deno.test("bpe: merges by rank give hand-derived ids", () => {
  const tok = createTokenizer(bpeData);
  assert.equal(tok.kind, "bpe");
  // "hello": he(0) → ll(1) → llo(2) → hello(3). " world": Ġw(4), or(5), Ġwor(6), ld(7), Ġworld(8).
  assert.deepEqual(tok.encode("hello world"), [11, 16]); // gpt2 flavour: no BOS by default
  assert.deepEqual(tok.encode("hello world", { addBos: true }), [25, 11, 16]);
  assert.deepEqual(tok.encode("world"), [5, 13, 15]); // no "w or" merge without the space
  assert.deepEqual(tok.encode("lll"), [9, 2]); // equal ranks: leftmost pair first
  assert.deepEqual(tok.encode("123"), [22, 21]);
  assert.deepEqual(tok.encode("hello\n"), [11, 18]);
  assert.deepEqual(tok.encode("é"), [23, 24]);
  assert.deepEqual(tok.encode("hello<|end|>", { parseSpecial: true }), [11, 17]);
  assert.equal(tok.decode([11, 16, 18]), "hello world\n");
  assert.equal(tok.decode([25, 11, 17]), "hello");
  assert.equal(tok.decode([25, 11, 17], { keepSpecial: true }), "<|bos|>hello<|end|>");
  assert.equal(tok.tokenText(16), "Ġworld");
  assert.deepEqual([...tok.tokenBytes(16)], [...new TextEncoder().encode(" world")]);
  assert.deepEqual(tok.eosIds, [17]);
  // "<" is not in this vocabulary and there is no unknown token.
  throwsCode(() => tok.encode("hello<|end|>"), "TOKENIZER_FORMAT");
  const sd = tok.streamDecoder();
  assert.equal(sd.push(11), "hello");
  assert.equal(sd.push(23), ""); // first byte of é held back
  assert.equal(sd.push(24), "é");
  assert.equal(sd.flush(), "");
});

Deno.test("bpe: llama-bpe flavour adds BOS by default; bad merges are rejected", () => {
  const tok = createTokenizer({ ...bpeData, pre: "llama-bpe", eotIds: [17] });
  assert.deepEqual(tok.encode("hello world"), [25, 11, 16]);
  assert.deepEqual(tok.eosIds, [17]);
  throwsCode(() => createTokenizer({ ...bpeData, merges: ["h e", "hx"] }), "TOKENIZER_FORMAT", /merge 1/);
  throwsCode(() => createTokenizer({ ...bpeData, merges: ["h q"] }), "TOKENIZER_FORMAT", /"q"/);
});

Deno.test("pre-tokenizer: Llama-3 regex splits contractions, digit groups, whitespace and newlines", () => {
  const l3 = (s: string) => preTokenize(s, preTokenizerRegex("llama-bpe"));
  assert.deepEqual(l3("I'm don't YOU'LL"), ["I", "'m", " don", "'t", " YOU", "'LL"]);
  assert.deepEqual(l3("12345 1234567"), ["123", "45", " ", "123", "456", "7"]);
  assert.deepEqual(l3("a   b"), ["a", "  ", " b"]);
  assert.deepEqual(l3("hi\n\nthere"), ["hi", "\n\n", "there"]);
  assert.deepEqual(l3("x  \n\n  y"), ["x", "  \n\n", " ", " y"]);
  assert.deepEqual(l3("ok!!!\n\nnext"), ["ok", "!!!\n\n", "next"]);
  assert.deepEqual(l3("\tdef f():"), ["\tdef", " f", "():"]);
  assert.deepEqual(l3("end  "), ["end", "  "]);
  assert.deepEqual(l3("日本語 text"), ["日本語", " text"]);
  const g2 = (s: string) => preTokenize(s, preTokenizerRegex("gpt2"));
  assert.deepEqual(g2("I'M 12345 it's"), ["I", "'", "M", " 12345", " it", "'s"]);
  assert.deepEqual(g2("a   b\n"), ["a", "  ", " b", "\n"]);
  assert.deepEqual(preTokenize("", preTokenizerRegex(undefined)), []);
});

// ---- HF tokenizer.json -------------------------------------------------------------------------------

const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function llama3Json(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  BPE_TOKENS.slice(0, 25).forEach((t, i) => {
    if (!t.startsWith("<|")) vocab[t] = i;
  });
  return {
    version: "1.0",
    added_tokens: [
      { id: 17, content: "<|end|>", special: true },
      { id: 25, content: "<|begin_of_text|>", special: true },
      { id: 26, content: "<|eot_id|>", special: true },
    ],
    normalizer: null,
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        { type: "Split", pattern: { Regex: LLAMA3_SPLIT }, behavior: "Isolated", invert: false },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "Sequence",
      processors: [
        { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, {
            Sequence: { id: "A", type_id: 0 },
          }],
        },
      ],
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      ignore_merges: true,
      vocab,
      // Newer files store merges as pairs; both spellings must work.
      merges: BPE_MERGES.map((m, i) => (i % 2 ? m.split(" ") : m)),
    },
  };
}

Deno.test("hf: byte-level BPE tokenizer.json (Llama-3 shape)", () => {
  const data = tokenizerDataFromHfJson(llama3Json(), { eosId: [17, 26], chatTemplate: "{{ x }}" });
  assert.equal(data.kind, "bpe");
  assert.equal(data.pre, "llama-bpe");
  assert.equal(data.addBos, true);
  assert.equal(data.bosId, 25);
  assert.equal(data.eosId, 17);
  assert.deepEqual(data.eotIds, [26]);
  assert.equal(data.chatTemplate, "{{ x }}");
  assert.deepEqual(data.merges, BPE_MERGES);
  const tok = createTokenizer(data);
  assert.equal(tok.vocabSize, 27);
  assert.deepEqual(tok.encode("hello world"), [25, 11, 16]);
  assert.deepEqual(tok.encode("hello<|eot_id|>", { parseSpecial: true, addBos: false }), [11, 26]);
  assert.deepEqual([...tok.eosIds].sort((a, b) => a - b), [17, 26]);
  // Without config the conventional texts are found.
  const bare = tokenizerDataFromHfJson(llama3Json());
  assert.equal(bare.bosId, 25);
  assert.deepEqual(bare.eotIds, [26]);
});

function llama2Json(): Record<string, unknown> {
  const vocab: Record<string, number> = { "<unk>": 0, "<s>": 1, "</s>": 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`] = 3 + b;
  Object.assign(vocab, { "▁": 259, "h": 260, "i": 261, "▁h": 262, "hi": 263, "▁hi": 264, "!": 265 });
  return {
    added_tokens: [
      { id: 0, content: "<unk>", special: true },
      { id: 1, content: "<s>", special: true },
      { id: 2, content: "</s>", special: true },
    ],
    normalizer: {
      type: "Sequence",
      normalizers: [{ type: "Prepend", prepend: "▁" }, {
        type: "Replace",
        pattern: { String: " " },
        content: "▁",
      }],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    },
    model: { type: "BPE", unk_token: "<unk>", byte_fallback: true, vocab, merges: ["▁ h", "h i", "▁h i"] },
  };
}

Deno.test("hf: SentencePiece-as-BPE tokenizer.json (Llama-2 shape) becomes spm with rank scores", () => {
  const data = tokenizerDataFromHfJson(llama2Json());
  assert.equal(data.kind, "spm");
  assert.equal(data.addSpacePrefix, true);
  assert.equal(data.addBos, true);
  assert.equal(data.bosId, 1);
  assert.equal(data.eosId, 2);
  assert.equal(data.unkId, 0);
  assert.deepEqual(data.scores?.slice(262, 265), [-0, -1, -2]);
  assert.equal(data.tokenTypes?.[3 + 0x0a], TokenType.BYTE);
  const tok = createTokenizer(data);
  // "hi" → ▁ h i: "▁h" (rank 0) merges before "hi" (rank 1), then "▁h i" → "▁hi".
  assert.deepEqual(tok.encode("hi"), [1, 264]);
  assert.deepEqual(tok.encode("hi!"), [1, 264, 265]);
  assert.deepEqual(tok.encode("é", { addBos: false }), [259, 3 + 0xc3, 3 + 0xa9]);
  assert.equal(tok.decode(tok.encode("hi é hi!")), "hi é hi!");
  // Older files spell the same with a Metaspace pre-tokenizer.
  const meta = llama2Json();
  meta.normalizer = null;
  meta.pre_tokenizer = { type: "Metaspace", replacement: "▁", add_prefix_space: true };
  assert.deepEqual(createTokenizer(tokenizerDataFromHfJson(meta)).encode("hi"), [1, 264]);
});

Deno.test("hf: malformed tokenizer.json names the JSON path", () => {
  const withModel = (patch: Record<string, unknown>) => ({
    ...llama2Json(),
    model: { ...(llama2Json().model as Record<string, unknown>), ...patch },
  });
  throwsCode(() => tokenizerDataFromHfJson(null), "TOKENIZER_FORMAT", /\$ should be an object/);
  throwsCode(() => tokenizerDataFromHfJson({}), "TOKENIZER_FORMAT", /\$\.model /);
  throwsCode(() => tokenizerDataFromHfJson(withModel({ type: "Unigram" })), "TOKENIZER_FORMAT", /Unigram/);
  throwsCode(() => tokenizerDataFromHfJson(withModel({ vocab: [] })), "TOKENIZER_FORMAT", /\$\.model\.vocab/);
  throwsCode(
    () => tokenizerDataFromHfJson(withModel({ vocab: { a: "1" } })),
    "TOKENIZER_FORMAT",
    /\$\.model\.vocab\["a"\]/,
  );
  throwsCode(
    () => tokenizerDataFromHfJson(withModel({ vocab: { a: 1e12 } })),
    "TOKENIZER_FORMAT",
    /\$\.model\.vocab\["a"\]/,
  );
  throwsCode(
    () => tokenizerDataFromHfJson(withModel({ merges: ["▁ h", 5] })),
    "TOKENIZER_FORMAT",
    /merges\[1\]/,
  );
  throwsCode(
    () => tokenizerDataFromHfJson(withModel({ merges: "x" })),
    "TOKENIZER_FORMAT",
    /\$\.model\.merges/,
  );
  throwsCode(
    () => tokenizerDataFromHfJson({ ...llama2Json(), added_tokens: [{ id: 3 }] }),
    "TOKENIZER_FORMAT",
    /\$\.added_tokens\[0\]\.content/,
  );
  throwsCode(() => tokenizerDataFromHfJson(llama2Json(), { bosId: 99999 }), "TOKENIZER_MISMATCH", /99999/);
  const noFamily = llama2Json();
  noFamily.normalizer = null;
  (noFamily.model as Record<string, unknown>).byte_fallback = false;
  throwsCode(() => tokenizerDataFromHfJson(noFamily), "TOKENIZER_FORMAT", /not supported/);
});

Deno.test("the stream decoder's ASCII fast path gives TextDecoder's streaming output, chunk by chunk", async () => {
  const { byteStreamDecoder } = await import("../src/format/tokenizer_spm.ts");
  const r = rng(11);
  // pieces: ASCII runs, whole and split multi-byte characters, stray continuation and lead bytes
  const alphabet = [
    [0x41],
    [0x20, 0x62],
    [0xe2, 0x82, 0xac],
    [0xe2],
    [0x82, 0xac],
    [0xf0, 0x9f],
    [0x98, 0x80],
    [
      0x80,
    ],
    [0xc3],
    [0xa9, 0x21],
    [],
    [0xef, 0xbb, 0xbf],
    [0x0a],
  ];
  for (let trial = 0; trial < 300; trial++) {
    const pieces = Array.from(
      { length: 1 + Math.floor(r() * 12) },
      () => Uint8Array.from(alphabet[Math.floor(r() * alphabet.length)]),
    );
    const fast = byteStreamDecoder((id) => pieces[id]);
    const plain = new TextDecoder("utf-8", { ignoreBOM: true });
    pieces.forEach((p, i) => assert.equal(fast.push(i), plain.decode(p, { stream: true }), `trial ${trial}`));
    assert.equal(fast.flush(), plain.decode(), `trial ${trial} flush`);
  }
});
