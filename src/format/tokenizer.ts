/**
 * Tokenizer data (what the formats carry) and the Tokenizer interface (what the engine uses).
 * Implementations: `tokenizer_spm.ts` (SentencePiece-style BPE with scores and byte fallback: llama2.c
 * files, GGUF `llama`), `tokenizer_bpe.ts` (byte-level BPE: GGUF `gpt2`, Llama-3), built from
 * `TokenizerData` by `createTokenizer` in `tokenizer_load.ts`; HF tokenizer.json is parsed into TokenizerData.
 * @module
 */

/** Token kinds, as GGUF `tokenizer.ggml.token_type` numbers them. */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** Format-neutral tokenizer description. */
export interface TokenizerData {
  /** `spm`: SentencePiece BPE by piece scores; `bpe`: byte-level BPE by merge ranks (GPT-2 style). */
  readonly kind: "spm" | "bpe";
  /** Token strings, index = id. For spm, spaces are U+2581 ("▁") unless `spaceIsLiteral`. */
  readonly tokens: readonly string[];
  /** spm: merge priority per token (higher merges first). */
  readonly scores?: readonly number[];
  /** Per-token TokenType; absent means NORMAL except recognised `<0xXX>` byte tokens. */
  readonly tokenTypes?: readonly number[];
  /** bpe: merges in rank order, "a b". */
  readonly merges?: readonly string[];
  /** bpe: pre-tokenizer regex flavour (GGUF `tokenizer.ggml.pre`), e.g. "llama-bpe", "gpt2". */
  readonly pre?: string;
  /** Beginning-of-sequence token id. */
  readonly bosId?: number;
  /** End-of-sequence token id. */
  readonly eosId?: number;
  /** Extra end-of-generation ids (e.g. Llama-3 `<|eot_id|>`). */
  readonly eotIds?: readonly number[];
  /** Unknown-token id. */
  readonly unkId?: number;
  /** Padding token id. */
  readonly padId?: number;
  /** Prepend BOS when encoding a prompt (default true for spm). */
  readonly addBos?: boolean;
  /** spm: prepend a space ("dummy prefix") before encoding (default true). */
  readonly addSpacePrefix?: boolean;
  /** spm: pieces store a literal " " instead of "▁" (llama2.c tokenizer files). */
  readonly spaceIsLiteral?: boolean;
  /** Chat template (Jinja) if the model carries one. */
  readonly chatTemplate?: string;
}

/** Incremental decoder: returns only complete UTF-8 text, holding back partial characters. */
export interface StreamDecoder {
  /** Feed one token id; returns the text that became complete. */
  push(id: number): string;
  /** End of stream: returns anything held back (invalid bytes become U+FFFD). */
  flush(): string;
}

/** What the engine needs of a tokenizer. */
export interface Tokenizer {
  /** `spm`: SentencePiece BPE by piece scores; `bpe`: byte-level BPE by merge ranks. */
  readonly kind: "spm" | "bpe";
  /** Number of tokens in the vocabulary; ids are `0..vocabSize-1`. */
  readonly vocabSize: number;
  /** Beginning-of-sequence token id, or undefined when the tokenizer has none. */
  readonly bosId: number | undefined;
  /** Ids that end generation (EOS and EOT). */
  readonly eosIds: readonly number[];
  /**
   * Encode text. `addBos` defaults to the tokenizer's own setting; `parseSpecial` (default false)
   * lets text like "<|eot_id|>" map to its special token.
   */
  encode(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): number[];
  /** Decode ids to text (special tokens are skipped unless `keepSpecial`). */
  decode(ids: readonly number[], options?: { keepSpecial?: boolean }): string;
  /** The raw bytes a token stands for (after space/byte-fallback mapping). */
  tokenBytes(id: number): Uint8Array;
  /** A fresh incremental decoder. */
  streamDecoder(): StreamDecoder;
  /** The token string as stored in the vocabulary. */
  tokenText(id: number): string;
}
