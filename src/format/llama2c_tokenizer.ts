/**
 * llama2.c `tokenizer.bin`: int32 max_token_length, then per token float32 score, int32 byte length
 * and the piece's bytes. The file holds no token count: the model's vocab size says how many to read.
 * Pieces store spaces literally (" the") and byte-fallback tokens as text (`<0x0A>`).
 * @module
 */
import { LlmError } from "../errors.ts";
import { type TokenizerData, TokenType } from "./tokenizer.ts";
import { BYTE_PIECE } from "./tokenizer_spm.ts";

/** No real vocabulary has pieces this long; a larger max_token_length means a corrupt file. */
const MAX_PIECE_BYTES = 1 << 16;

/**
 * Parse a llama2.c tokenizer file into SentencePiece tokenizer data (BOS 1, EOS 2, UNK 0, dummy
 * prefix, literal spaces; generation also stops at BOS, as in run.c). With `vocabSize` exactly that many tokens must be present; without it,
 * tokens are read to the end of the file. llama2.c writes BOS/EOS as "\n<s>\n" / "\n</s>\n"; they
 * are stored here as "<s>" / "</s>" so `parseSpecial` recognises the usual spelling.
 *
 * @example
 * ```ts
 * import { parseLlama2cTokenizer } from "./llama2c_tokenizer.ts";
 * const data = parseLlama2cTokenizer(await Deno.readFile("tok512.bin"), { vocabSize: 512 });
 * console.log(data.tokens.length); // 512
 * ```
 */
export function parseLlama2cTokenizer(
  bytes: Uint8Array,
  options: { vocabSize?: number; name?: string } = {},
): TokenizerData {
  const name = options.name ?? "tokenizer.bin";
  const want = options.vocabSize;
  if (want !== undefined && (!Number.isSafeInteger(want) || want < 3)) {
    throw new LlmError(
      "BAD_REQUEST",
      `${name}: vocab size ${want} is not a usable token count (llama2.c needs at least <unk>, <s>, </s>)`,
    );
  }
  const mismatch = (detail: string): LlmError =>
    new LlmError(
      "TOKENIZER_MISMATCH",
      `${name}: ${detail}, so this tokenizer does not match the model's vocab size ${want}; ` +
        `pass the tokenizer that came with the model`,
    );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `${name}: ${bytes.byteLength} bytes is too short for a llama2.c tokenizer (it starts with an int32 ` +
        `max_token_length); the file is truncated or not a tokenizer`,
    );
  }
  const maxLen = view.getInt32(0, true);
  if (maxLen <= 0 || maxLen > MAX_PIECE_BYTES) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `${name}: max_token_length ${maxLen} is absurd (expected 1..${MAX_PIECE_BYTES}); ` +
        `this is not a llama2.c tokenizer file`,
    );
  }
  // Each token needs at least 8 bytes, so a vocab size the file cannot hold fails before any work.
  if (want !== undefined && want * 8 > bytes.byteLength - 4) {
    throw mismatch(`the file (${bytes.byteLength} bytes) is too small to hold ${want} tokens`);
  }
  const dec = new TextDecoder("utf-8", { ignoreBOM: true });
  const tokens: string[] = [];
  const scores: number[] = [];
  let off = 4;
  while (want === undefined ? off < bytes.byteLength : tokens.length < want) {
    const i = tokens.length;
    if (off + 8 > bytes.byteLength) {
      if (want !== undefined) throw mismatch(`the file ends after ${i} tokens`);
      throw new LlmError(
        "TOKENIZER_FORMAT",
        `${name}: token ${i} at byte ${off} is cut off (${
          bytes.byteLength - off
        } bytes left, a header needs 8); ` +
          `the file is truncated: download it again`,
      );
    }
    const score = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    off += 8;
    if (len < 0 || len > maxLen) {
      throw new LlmError(
        "TOKENIZER_FORMAT",
        `${name}: token ${i} has length ${len}, outside 0..${maxLen} (max_token_length); the file is corrupt ` +
          `or is not the tokenizer of this model (vocab size ${want ?? "unknown"})`,
      );
    }
    if (off + len > bytes.byteLength) {
      if (want !== undefined) throw mismatch(`the file ends inside token ${i}`);
      throw new LlmError(
        "TOKENIZER_FORMAT",
        `${name}: token ${i} needs ${len} bytes at ${off} but the file ends at ${bytes.byteLength}; ` +
          `the file is truncated: download it again`,
      );
    }
    tokens.push(dec.decode(bytes.subarray(off, off + len)));
    scores.push(score);
    off += len;
  }
  if (want !== undefined && off !== bytes.byteLength) {
    throw mismatch(
      `${bytes.byteLength - off} bytes remain after token ${want - 1} (the file holds more tokens)`,
    );
  }
  if (tokens.length < 3) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `${name}: only ${tokens.length} tokens; a llama2.c tokenizer has at least <unk>, <s> and </s>`,
    );
  }
  // llama2.c's export wraps BOS/EOS in newlines; store the conventional spelling.
  if (tokens[1].trim() === "<s>") tokens[1] = "<s>";
  if (tokens[2].trim() === "</s>") tokens[2] = "</s>";
  const tokenTypes = tokens.map((t, i) =>
    i === 0
      ? TokenType.UNKNOWN
      : i <= 2
      ? TokenType.CONTROL
      : BYTE_PIECE.test(t)
      ? TokenType.BYTE
      : TokenType.NORMAL
  );
  return {
    kind: "spm",
    tokens,
    scores,
    tokenTypes,
    bosId: 1,
    eosId: 2,
    // llama2.c models are trained on BOS-separated stories with no EOS: run.c stops when the model
    // emits BOS (a new story would begin), so BOS also ends generation here.
    eotIds: [1],
    unkId: 0,
    addBos: true,
    addSpacePrefix: true,
    spaceIsLiteral: true,
  };
}
