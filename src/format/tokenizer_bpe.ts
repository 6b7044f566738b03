/**
 * Byte-level BPE (GPT-2, Llama-3; GGUF `tokenizer.ggml.model = "gpt2"`, HF tokenizer.json BPE with a
 * ByteLevel pre-tokenizer). Text is split by a pre-tokenizer regex, each word's UTF-8 bytes are
 * spelled with GPT-2's printable byte alphabet, and merges apply by rank (lowest first, leftmost on
 * ties). Words are cached: chat prompts repeat the same words constantly.
 * @module
 */
import { LlmError } from "../errors.ts";
import { type Tokenizer, type TokenizerData, TokenType } from "./tokenizer.ts";
import {
  checkSpecials,
  type MergeCandidate,
  mergeSymbols,
  PieceTokenizer,
  SpecialSplitter,
} from "./tokenizer_spm.ts";

/**
 * GPT-2's byte → character table: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * map to U+0100.. in order, so every byte string is a string of visible characters ("Ġ" = space).
 */
function byteAlphabet(): { byteToChar: string[]; charToByte: Map<string, number> } {
  const byteToChar: string[] = new Array(256);
  const charToByte = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const ch = String.fromCharCode(printable ? b : 0x100 + extra++);
    byteToChar[b] = ch;
    charToByte.set(ch, b);
  }
  return { byteToChar, charToByte };
}
const { byteToChar: BYTE_TO_CHAR, charToByte: CHAR_TO_BYTE } = byteAlphabet();

// Unicode White_Space as the Oniguruma/Rust regexes of HF tokenizers and llama.cpp see it. JS's `\s`
// differs (it adds U+FEFF and lacks U+0085), which would change splits on such text.
const WS = "\\t\\n\\v\\f\\r \\x85\\xA0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";

/** GPT-2's pre-tokenizer pattern (HF ByteLevel with use_regex). */
const GPT2_PATTERN =
  `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`;

/** Llama-3's pattern: case-insensitive contractions, digits in groups of up to 3, newline runs apart. */
const LLAMA3_PATTERN = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|` +
  ` ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*|[${WS}]*[\\r\\n]+|[${WS}]+(?![^${WS}])|[${WS}]+`;

/** GGUF `tokenizer.ggml.pre` values that use the Llama-3 pattern. */
const LLAMA3_PRES = new Set(["llama-bpe", "llama3", "llama-v3"]);

/**
 * The pre-tokenizer regex for a `pre` flavour: Llama-3's for "llama-bpe"/"llama3", GPT-2's otherwise.
 *
 * @example
 * ```ts
 * import { preTokenizerRegex } from "./tokenizer_bpe.ts";
 * [..."I'm 12345".matchAll(preTokenizerRegex("llama3"))].map((m) => m[0]); // ["I", "'m", " ", "123", "45"]
 * ```
 */
export function preTokenizerRegex(pre: string | undefined): RegExp {
  return new RegExp(pre !== undefined && LLAMA3_PRES.has(pre) ? LLAMA3_PATTERN : GPT2_PATTERN, "gu");
}

/** Split text into pre-tokens; text between matches (none with these patterns) is kept as well. */
export function preTokenize(text: string, re: RegExp): string[] {
  const out: string[] = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[0].length > 0) out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** Bounded per-word cache: large enough for any prompt's vocabulary, small enough not to leak. */
const MAX_CACHE = 65536;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/**
 * Byte-level BPE tokenizer.
 *
 * @example
 * ```ts
 * import { BpeTokenizer } from "./tokenizer_bpe.ts";
 * const tok = new BpeTokenizer({ kind: "bpe", tokens: ["h", "i", "hi"], merges: ["h i"] });
 * tok.encode("hi"); // [2]
 * ```
 */
export class BpeTokenizer extends PieceTokenizer implements Tokenizer {
  /** Always "bpe". */
  readonly kind: "bpe" = "bpe";
  /** Number of tokens. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, if any. */
  readonly bosId: number | undefined;
  /** EOS and EOT ids. */
  readonly eosIds: readonly number[];
  readonly #tokens: readonly string[];
  readonly #types: Uint8Array;
  readonly #vocab = new Map<string, number>();
  /** (left id * vocabSize + right id) → rank and merged id. */
  readonly #merges = new Map<number, MergeCandidate>();
  readonly #re: RegExp;
  readonly #ignoreMerges: boolean;
  readonly #addBos: boolean;
  readonly #unkId: number | undefined;
  readonly #specials: SpecialSplitter;
  readonly #cache = new Map<string, number[]>();
  readonly #pieceCache: (Uint8Array | undefined)[] = [];

  /** Build from tokenizer data; throws TOKENIZER_FORMAT when tokens or merges are inconsistent. */
  constructor(data: TokenizerData) {
    super();
    const tokens = data.tokens;
    const n = tokens.length;
    if (n === 0) {
      throw new LlmError("TOKENIZER_FORMAT", "bpe tokenizer has no tokens; the tokenizer file is empty");
    }
    this.eosIds = checkSpecials("bpe", data, n);
    this.vocabSize = n;
    this.bosId = data.bosId;
    this.#tokens = tokens;
    const llama3 = data.pre !== undefined && LLAMA3_PRES.has(data.pre);
    this.#re = preTokenizerRegex(data.pre);
    // Llama-3 (HF "ignore_merges") takes a word that is itself a token as is, before any merging.
    this.#ignoreMerges = llama3;
    this.#addBos = data.addBos ?? llama3;
    this.#unkId = data.unkId;
    this.#types = new Uint8Array(n);
    const specials = new Map<string, number>();
    const controlIds = new Set([data.bosId, data.eosId, ...(data.eotIds ?? [])]);
    for (let i = 0; i < n; i++) {
      const t = tokens[i];
      if (typeof t !== "string") {
        throw new LlmError(
          "TOKENIZER_FORMAT",
          `bpe token ${i} is not a string; the tokenizer file is corrupt`,
        );
      }
      const type = data.tokenTypes?.[i] ?? (controlIds.has(i) ? TokenType.CONTROL : TokenType.NORMAL);
      this.#types[i] = type;
      if (t.length > 0 && !this.#vocab.has(t)) this.#vocab.set(t, i);
      const special = type === TokenType.CONTROL || type === TokenType.USER_DEFINED ||
        type === TokenType.UNKNOWN;
      if (special && t.length > 0 && !specials.has(t)) specials.set(t, i);
    }
    this.#specials = new SpecialSplitter(specials);
    const merges = data.merges ?? [];
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      const sp = typeof m === "string" ? m.indexOf(" ") : -1;
      if (sp <= 0 || sp === m.length - 1 || m.indexOf(" ", sp + 1) >= 0) {
        throw new LlmError(
          "TOKENIZER_FORMAT",
          `bpe merge ${r} is ${
            JSON.stringify(m)
          }, not two tokens separated by one space; the tokenizer is corrupt`,
        );
      }
      const a = m.slice(0, sp), b = m.slice(sp + 1);
      const ia = this.#vocab.get(a), ib = this.#vocab.get(b), ic = this.#vocab.get(a + b);
      if (ia === undefined || ib === undefined || ic === undefined) {
        const missing = ia === undefined ? a : ib === undefined ? b : a + b;
        throw new LlmError(
          "TOKENIZER_FORMAT",
          `bpe merge ${r} (${JSON.stringify(m)}) uses ${
            JSON.stringify(missing)
          }, which is not in the vocabulary; ` +
            `the merges do not belong to these tokens`,
        );
      }
      const key = ia * n + ib;
      // A repeated pair keeps its first (best) rank.
      if (!this.#merges.has(key)) this.#merges.set(key, { prio: r, id: ic });
    }
  }

  /** Encode text; see {@link Tokenizer.encode}. */
  encode(text: string, options: { addBos?: boolean; parseSpecial?: boolean } = {}): number[] {
    const out: number[] = [];
    if ((options.addBos ?? this.#addBos) && this.bosId !== undefined) out.push(this.bosId);
    const parts = options.parseSpecial ? this.#specials.split(text) : text.length > 0 ? [text] : [];
    for (const part of parts) {
      if (typeof part === "number") {
        out.push(part);
        continue;
      }
      for (const word of preTokenize(part, this.#re)) {
        for (const id of this.#encodeWord(word)) out.push(id);
      }
    }
    return out;
  }

  #encodeWord(word: string): readonly number[] {
    const hit = this.#cache.get(word);
    if (hit) return hit;
    let spelled = "";
    for (const b of utf8.encode(word)) spelled += BYTE_TO_CHAR[b];
    let ids: number[];
    const whole = this.#ignoreMerges ? this.#vocab.get(spelled) : undefined;
    if (whole !== undefined) ids = [whole];
    else {
      const syms: number[] = [];
      for (const ch of spelled) syms.push(this.#vocab.get(ch) ?? -1);
      const n = this.vocabSize;
      ids = mergeSymbols(syms, (l, r) => this.#merges.get(l * n + r));
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] >= 0) continue;
        if (this.#unkId === undefined) {
          throw new LlmError(
            "TOKENIZER_FORMAT",
            `bpe vocabulary has no token for a byte of ${JSON.stringify(word)} and no unknown token; ` +
              `the tokenizer is incomplete: use the model's own tokenizer`,
          );
        }
        ids[i] = this.#unkId;
      }
    }
    if (this.#cache.size >= MAX_CACHE) this.#cache.clear();
    this.#cache.set(word, ids);
    return ids;
  }

  /** Special tokens are plain text (not byte-spelled); normal ones map back through the byte alphabet. */
  protected override pieceBytes(id: number, _prev: number, keepSpecial: boolean): Uint8Array {
    const type = this.#types[id];
    if (type === TokenType.CONTROL || type === TokenType.UNKNOWN) {
      return keepSpecial ? utf8.encode(this.#tokens[id]) : EMPTY;
    }
    const cached = this.#pieceCache[id];
    if (cached) return cached;
    const t = this.#tokens[id];
    let bytes: Uint8Array;
    if (type === TokenType.USER_DEFINED) bytes = utf8.encode(t);
    else {
      const out: number[] = [];
      for (const ch of t) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b !== undefined) out.push(b);
        else for (const x of utf8.encode(ch)) out.push(x); // not byte-spelled: keep the text as is
      }
      bytes = Uint8Array.from(out);
    }
    this.#pieceCache[id] = bytes;
    return bytes;
  }

  protected override storedText(id: number): string {
    return this.#tokens[id];
  }
}
