/**
 * SentencePiece-style BPE by piece scores with byte fallback (llama2.c tokenizer.bin, GGUF `llama`,
 * HF Llama-2 tokenizer.json), plus the pieces every tokenizer here shares: the pair-merge engine,
 * special-token splitting and the UTF-8-safe stream decoder.
 *
 * Encoding follows llama2.c's `encode()`: the text (with a dummy-prefix space) is cut into characters,
 * each looked up as a piece (unknown ones become `<0xXX>` byte tokens), then the adjacent pair whose
 * concatenation is the highest-scoring piece merges, leftmost first on ties, until no pair is a piece.
 * A heap over adjacent pairs makes this O(n log n) instead of llama2.c's O(n²).
 * @module
 */
import { LlmError } from "../errors.ts";
import { type StreamDecoder, type Tokenizer, type TokenizerData, TokenType } from "./tokenizer.ts";

/** A merge the engine may apply: lower `prio` merges first; the merged symbol becomes token `id`. */
export interface MergeCandidate {
  readonly prio: number;
  readonly id: number;
}

interface HeapEntry {
  prio: number;
  left: number;
  right: number;
  leftVer: number;
  rightVer: number;
  id: number;
}

/** Lower priority first, then the leftmost pair: the tie rule of llama2.c, SentencePiece and HF BPE. */
function before(a: HeapEntry, b: HeapEntry): boolean {
  return a.prio < b.prio || (a.prio === b.prio && a.left < b.left);
}

class PairHeap {
  #a: HeapEntry[] = [];
  push(e: HeapEntry): void {
    const a = this.#a;
    let i = a.length;
    a.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i], a[p])) break;
      [a[i], a[p]] = [a[p], a[i]];
      i = p;
    }
  }
  pop(): HeapEntry | undefined {
    const a = this.#a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && before(a[l], a[m])) m = l;
        if (r < a.length && before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Merge adjacent symbols (token ids, -1 for "no token") until `candidate` finds no mergeable pair.
 * Symbols live in a linked list; the heap holds one entry per adjacent pair and stale entries are
 * skipped by version numbers, so each merge costs O(log n).
 * @internal Shared by the spm and bpe tokenizers.
 */
export function mergeSymbols(
  ids: readonly number[],
  candidate: (left: number, right: number) => MergeCandidate | undefined,
): number[] {
  const n = ids.length;
  if (n < 2) return ids.slice();
  const cur = Int32Array.from(ids);
  const prev = new Int32Array(n), next = new Int32Array(n);
  const ver = new Uint32Array(n), alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  const heap = new PairHeap();
  const tryPush = (left: number): void => {
    const right = next[left];
    if (right < 0 || cur[left] < 0 || cur[right] < 0) return;
    const c = candidate(cur[left], cur[right]);
    if (c) heap.push({ prio: c.prio, left, right, leftVer: ver[left], rightVer: ver[right], id: c.id });
  };
  for (let i = 0; i < n - 1; i++) tryPush(i);
  for (let e = heap.pop(); e !== undefined; e = heap.pop()) {
    const { left, right } = e;
    if (!alive[left] || !alive[right] || next[left] !== right) continue;
    if (ver[left] !== e.leftVer || ver[right] !== e.rightVer) continue;
    // The right symbol folds into the left one, so node indices stay in text order (the tie rule).
    cur[left] = e.id;
    ver[left]++;
    alive[right] = 0;
    const after = next[right];
    next[left] = after;
    if (after >= 0) prev[after] = left;
    if (prev[left] >= 0) tryPush(prev[left]);
    tryPush(left);
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(cur[i]);
  return out;
}

/** Escape regex syntax so a special token's text matches literally. */
function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
}

/**
 * Splits text on the literal text of special tokens (longest first at any position).
 * @internal Shared by the spm and bpe tokenizers.
 */
export class SpecialSplitter {
  readonly #re: RegExp | undefined;
  readonly #ids: Map<string, number>;

  /** `specials`: text → id of the tokens that `parseSpecial` recognises. */
  constructor(specials: Map<string, number>) {
    this.#ids = specials;
    const texts = [...specials.keys()].filter((t) => t.length > 0).sort((a, b) => b.length - a.length);
    // Longest alternatives first: a regex alternation takes the first that matches at a position.
    this.#re = texts.length > 0 ? new RegExp(texts.map(escapeRegex).join("|"), "g") : undefined;
  }

  /** Text fragments (strings) and special token ids (numbers), in order; empty fragments dropped. */
  split(text: string): (string | number)[] {
    if (!this.#re) return text.length > 0 ? [text] : [];
    const out: (string | number)[] = [];
    let last = 0;
    for (const m of text.matchAll(this.#re)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      out.push(this.#ids.get(m[0]) as number);
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }
}

/**
 * A stream decoder over per-token bytes. `pieceBytes(id, prevId)` gives a token's bytes in context
 * (prevId is -1 at the start). TextDecoder's streaming mode holds back incomplete UTF-8 sequences,
 * which is exactly the "never split a character" rule.
 * @internal Shared by the spm and bpe tokenizers.
 */
export function byteStreamDecoder(pieceBytes: (id: number, prevId: number) => Uint8Array): StreamDecoder {
  const dec = new TextDecoder("utf-8", { ignoreBOM: true });
  let prev = -1;
  // Whether the decoder holds no bytes of an unfinished character. After a chunk that ends in an ASCII
  // byte it holds none (an ASCII byte ends or breaks any pending sequence), so an all-ASCII piece can
  // then be turned into text here, without a TextDecoder call per token.
  let clean = true;
  return {
    push(id: number): string {
      const b = pieceBytes(id, prev);
      prev = id;
      if (clean) {
        let text = "";
        for (let i = 0; i < b.length; i++) {
          const c = b[i];
          if (c >= 0x80) {
            text = "";
            break;
          }
          text += String.fromCharCode(c);
          if (i === b.length - 1) return text;
        }
        if (b.length === 0) return "";
      }
      const out = dec.decode(b, { stream: true });
      if (b.length) clean = b[b.length - 1] < 0x80;
      return out;
    },
    flush(): string {
      prev = -1;
      clean = true;
      return dec.decode();
    },
  };
}

/** Concatenate byte chunks. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

/** Throw BAD_REQUEST unless `id` is a token id of a vocabulary of `size`. */
export function checkTokenId(id: number, size: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= size) {
    throw new LlmError(
      "BAD_REQUEST",
      `token id ${id} is outside the vocabulary (0..${
        size - 1
      }); pass ids produced by this model's tokenizer`,
    );
  }
}

/** Throw TOKENIZER_FORMAT unless an optional special id lies inside the vocabulary. */
function checkSpecialId(name: string, id: number | undefined, size: number): void {
  if (id !== undefined && (!Number.isInteger(id) || id < 0 || id >= size)) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `tokenizer ${name} ${id} is outside the vocabulary (0..${
        size - 1
      }); the tokenizer file is corrupt or ` +
        `does not belong to this model`,
    );
  }
}

/** Matches SentencePiece byte-fallback pieces like `<0x0A>`. */
export const BYTE_PIECE: RegExp = /^<0x([0-9A-Fa-f]{2})>$/;

/** llama2.c never merges a pair whose piece scores at or below this (its initial best score). */
const NO_MERGE_SCORE = -1e10;

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/**
 * Checks shared by the tokenizers: token types match the vocabulary, special ids lie inside it.
 * Returns the end-of-generation ids (EOS, then EOT ids, without repeats).
 * @internal
 */
export function checkSpecials(kind: "spm" | "bpe", data: TokenizerData, n: number): number[] {
  if (data.tokenTypes !== undefined && data.tokenTypes.length !== n) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `${kind} tokenizer has ${n} tokens but ${data.tokenTypes.length} token types; the tokenizer file is corrupt`,
    );
  }
  checkSpecialId("BOS id", data.bosId, n);
  checkSpecialId("EOS id", data.eosId, n);
  checkSpecialId("UNK id", data.unkId, n);
  for (const id of data.eotIds ?? []) checkSpecialId("EOT id", id, n);
  return [...new Set([...(data.eosId !== undefined ? [data.eosId] : []), ...(data.eotIds ?? [])])];
}

/**
 * Decoding shared by the tokenizers: ids become piece bytes (in context of the previous id), then
 * UTF-8 text. Subclasses say what a token's bytes are.
 * @internal
 */
export abstract class PieceTokenizer {
  /** Number of tokens. */
  abstract readonly vocabSize: number;
  /** A token's bytes after `prev` (-1 at the start); control/unknown tokens only with keepSpecial. */
  protected abstract pieceBytes(id: number, prev: number, keepSpecial: boolean): Uint8Array;
  /** The token as stored in the vocabulary. */
  protected abstract storedText(id: number): string;

  /** Decode ids; see {@link Tokenizer.decode}. */
  decode(ids: readonly number[], options: { keepSpecial?: boolean } = {}): string {
    const keep = options.keepSpecial ?? false;
    const parts: Uint8Array[] = [];
    let prev = -1;
    for (const id of ids) {
      checkTokenId(id, this.vocabSize);
      parts.push(this.pieceBytes(id, prev, keep));
      prev = id;
    }
    return new TextDecoder("utf-8", { ignoreBOM: true }).decode(concatBytes(parts));
  }

  /** Bytes of a token alone (special tokens as their text). */
  tokenBytes(id: number): Uint8Array {
    checkTokenId(id, this.vocabSize);
    return this.pieceBytes(id, -1, true).slice();
  }

  /**
   * A fresh incremental decoder that never splits a UTF-8 character across pushes. Push the prompt's
   * last token (or BOS) first when decoding a continuation so context rules see the right neighbour.
   */
  streamDecoder(options: { keepSpecial?: boolean } = {}): StreamDecoder {
    const keep = options.keepSpecial ?? false;
    return byteStreamDecoder((id, prev) => {
      checkTokenId(id, this.vocabSize);
      return this.pieceBytes(id, prev, keep);
    });
  }

  /** The token as stored in the vocabulary. */
  tokenText(id: number): string {
    checkTokenId(id, this.vocabSize);
    return this.storedText(id);
  }
}

/**
 * SentencePiece-style tokenizer (scores + byte fallback).
 *
 * @example
 * ```ts
 * import { SpmTokenizer } from "./tokenizer_spm.ts";
 * const tok = new SpmTokenizer({ kind: "spm", tokens: ["<unk>", "<s>", "</s>", "▁", "a", "▁a"], scores: [0, 0, 0, -3, -2, -1], bosId: 1 });
 * tok.encode("a"); // [1, 5]
 * ```
 */
export class SpmTokenizer extends PieceTokenizer implements Tokenizer {
  /** Always "spm". */
  readonly kind: "spm" = "spm";
  /** Number of tokens. */
  readonly vocabSize: number;
  /** Beginning-of-sequence id, if the vocabulary has one. */
  readonly bosId: number | undefined;
  /** EOS and EOT ids. */
  readonly eosIds: readonly number[];
  readonly #tokens: readonly string[];
  readonly #scores: Float64Array;
  readonly #types: Uint8Array;
  readonly #pieceToId = new Map<string, number>();
  /** id of the `<0xXX>` piece per byte, -1 when the vocabulary lacks it. */
  readonly #byteIds = new Int32Array(256).fill(-1);
  /** byte value per BYTE token, -1 for others. */
  readonly #byteOf: Int16Array;
  readonly #candidates: (MergeCandidate | undefined)[] = [];
  readonly #pieceCache: (Uint8Array | undefined)[] = [];
  readonly #space: string;
  readonly #addBos: boolean;
  readonly #addSpacePrefix: boolean;
  readonly #unkId: number | undefined;
  readonly #specials: SpecialSplitter;

  /** Build from tokenizer data; throws TOKENIZER_FORMAT when the arrays are inconsistent. */
  constructor(data: TokenizerData) {
    super();
    const tokens = data.tokens;
    const n = tokens.length;
    if (n === 0) {
      throw new LlmError("TOKENIZER_FORMAT", "spm tokenizer has no tokens; the tokenizer file is empty");
    }
    if (data.scores !== undefined && data.scores.length !== n) {
      throw new LlmError(
        "TOKENIZER_FORMAT",
        `spm tokenizer has ${n} tokens but ${data.scores.length} scores; the tokenizer file is corrupt`,
      );
    }
    this.eosIds = checkSpecials("spm", data, n);
    this.vocabSize = n;
    this.bosId = data.bosId;
    this.#tokens = tokens;
    this.#space = data.spaceIsLiteral ? " " : "\u2581";
    this.#addBos = data.addBos ?? true;
    this.#addSpacePrefix = data.addSpacePrefix ?? true;
    this.#unkId = data.unkId;
    this.#scores = new Float64Array(n);
    this.#types = new Uint8Array(n);
    this.#byteOf = new Int16Array(n).fill(-1);
    const specials = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const t = tokens[i];
      if (typeof t !== "string") {
        throw new LlmError(
          "TOKENIZER_FORMAT",
          `spm token ${i} is not a string; the tokenizer file is corrupt`,
        );
      }
      const s = data.scores?.[i] ?? 0;
      this.#scores[i] = typeof s === "number" ? s : NaN;
      let type = data.tokenTypes?.[i] ?? (BYTE_PIECE.test(t) ? TokenType.BYTE : TokenType.NORMAL);
      if (data.tokenTypes === undefined) {
        if (i === data.bosId || i === data.eosId) type = TokenType.CONTROL;
        if (i === data.unkId) type = TokenType.UNKNOWN;
      }
      this.#types[i] = type;
      const byte = type === TokenType.BYTE ? BYTE_PIECE.exec(t) : null;
      if (byte) {
        const b = parseInt(byte[1], 16);
        this.#byteOf[i] = b;
        if (this.#byteIds[b] < 0) this.#byteIds[b] = i;
      }
      // First occurrence wins for duplicate pieces, so lookups are stable across formats.
      if (t.length > 0 && !this.#pieceToId.has(t)) this.#pieceToId.set(t, i);
      const special = type === TokenType.CONTROL || type === TokenType.USER_DEFINED ||
        type === TokenType.UNKNOWN;
      if (special && t.length > 0 && !specials.has(t)) specials.set(t, i);
    }
    this.#specials = new SpecialSplitter(specials);
  }

  /** Encode text; see {@link Tokenizer.encode}. */
  encode(text: string, options: { addBos?: boolean; parseSpecial?: boolean } = {}): number[] {
    const out: number[] = [];
    if ((options.addBos ?? this.#addBos) && this.bosId !== undefined) out.push(this.bosId);
    const parts = options.parseSpecial ? this.#specials.split(text) : text.length > 0 ? [text] : [];
    // As llama.cpp: the dummy prefix goes before the text and again after each special token, so
    // "<s>[INST]" encodes like SentencePiece encoding each text chunk on its own.
    let prevSpecial = true;
    for (const part of parts) {
      if (typeof part === "number") {
        out.push(part);
        prevSpecial = true;
        continue;
      }
      const s = this.#addSpacePrefix && prevSpecial ? " " + part : part;
      for (const id of this.#encodeText(s)) out.push(id);
      prevSpecial = false;
    }
    return out;
  }

  #encodeText(text: string): number[] {
    const t = this.#space === " " ? text : text.replaceAll(" ", this.#space);
    const ids: number[] = [];
    for (const ch of t) {
      const id = this.#pieceToId.get(ch);
      if (id !== undefined) {
        ids.push(id);
        continue;
      }
      for (const b of utf8.encode(ch)) {
        const bid = this.#byteIds[b];
        if (bid >= 0) ids.push(bid);
        else if (this.#unkId !== undefined) ids.push(this.#unkId);
        else {
          throw new LlmError(
            "TOKENIZER_FORMAT",
            `spm vocabulary has no piece for ${JSON.stringify(ch)}, no byte piece <0x${
              hex(b)
            }> and no unknown ` +
              `token; the tokenizer is incomplete: use the model's own tokenizer`,
          );
        }
      }
    }
    return mergeSymbols(ids, (l, r) => this.#candidate(l, r));
  }

  /** The pair (l, r) merges into the piece spelled by their concatenation, ranked by its score. */
  #candidate(l: number, r: number): MergeCandidate | undefined {
    const id = this.#pieceToId.get(this.#tokens[l] + this.#tokens[r]);
    if (id === undefined) return undefined;
    const score = this.#scores[id];
    // NaN and very low scores never merge: llama2.c starts its search at -1e10 with a strict ">".
    if (!(score > NO_MERGE_SCORE)) return undefined;
    return (this.#candidates[id] ??= { prio: -score, id });
  }

  /**
   * A token's bytes in context. As llama2.c's `decode()`: a piece right after BOS loses its leading
   * space (the dummy prefix); elsewhere the space is real text and kept.
   */
  protected override pieceBytes(id: number, prev: number, keepSpecial: boolean): Uint8Array {
    const type = this.#types[id];
    if (type === TokenType.CONTROL || type === TokenType.UNKNOWN) {
      return keepSpecial ? utf8.encode(this.#tokens[id]) : EMPTY;
    }
    const b = this.#byteOf[id];
    if (b >= 0) return Uint8Array.of(b);
    const bytes = (this.#pieceCache[id] ??= utf8.encode(this.#tokens[id].replaceAll(this.#space, " ")));
    return prev === this.bosId && prev >= 0 && bytes[0] === 0x20 ? bytes.subarray(1) : bytes;
  }

  protected override storedText(id: number): string {
    return this.#tokens[id];
  }
}

function hex(b: number): string {
  return b.toString(16).toUpperCase().padStart(2, "0");
}
