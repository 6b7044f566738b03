/**
 * Build a {@link Tokenizer} from format-neutral {@link TokenizerData}, and check it fits a model.
 * @module
 */
import { LlmError } from "../errors.ts";
import type { Tokenizer, TokenizerData } from "./tokenizer.ts";
import { SpmTokenizer } from "./tokenizer_spm.ts";
import { BpeTokenizer } from "./tokenizer_bpe.ts";

/**
 * Create the tokenizer `data.kind` names: `spm` (SentencePiece scores + byte fallback) or `bpe`
 * (byte-level BPE by merge ranks). Throws TOKENIZER_FORMAT for an unknown kind or inconsistent data.
 *
 * @example
 * ```ts
 * import { createTokenizer } from "./tokenizer_load.ts";
 * import { parseLlama2cTokenizer } from "./llama2c_tokenizer.ts";
 * const tok = createTokenizer(parseLlama2cTokenizer(await Deno.readFile("tok512.bin"), { vocabSize: 512 }));
 * console.log(tok.encode("Once upon a time"));
 * ```
 */
export function createTokenizer(data: TokenizerData): Tokenizer {
  switch (data.kind) {
    case "spm":
      return new SpmTokenizer(data);
    case "bpe":
      return new BpeTokenizer(data);
  }
  throw new LlmError(
    "TOKENIZER_FORMAT",
    `tokenizer kind ${
      JSON.stringify((data as { kind: unknown }).kind)
    } is not supported; expected "spm" or "bpe"`,
  );
}

/**
 * Throw TOKENIZER_MISMATCH when the tokenizer's vocabulary size differs from the model's: ids from a
 * foreign tokenizer would index the wrong embedding rows (or past the end). `where` names the model.
 *
 * @example
 * ```ts
 * import { checkTokenizerMatchesModel, createTokenizer } from "./tokenizer_load.ts";
 * const tok = createTokenizer({ kind: "spm", tokens: ["<unk>", "<s>", "</s>"] });
 * checkTokenizerMatchesModel(tok, 3, "model.gguf"); // passes; 32000 would throw TOKENIZER_MISMATCH
 * ```
 */
export function checkTokenizerMatchesModel(tok: Tokenizer, vocabSize: number, where: string): void {
  if (tok.vocabSize !== vocabSize) {
    throw new LlmError(
      "TOKENIZER_MISMATCH",
      `${where}: the tokenizer has ${tok.vocabSize} tokens but the model's vocab size is ${vocabSize}; ` +
        `pass the tokenizer that came with the model`,
    );
  }
}
