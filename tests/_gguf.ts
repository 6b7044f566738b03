/**
 * Synthetic GGUF LLaMA models shared by gguf_test.ts and gguf_hostile_test.ts: a small GQA config with
 * Llama-3.1 RoPE factors, an spm tokenizer, and a file writer that stores every weight in another dtype.
 * @module
 */
import {
  ggufMetadataForLlama,
  type GgufTensorInput,
  ggufTensorName,
  ropeFreqsTensor,
  writeGgufBytes,
} from "../src/format/gguf_write.ts";
import { quantize } from "../src/dtype.ts";
import { LlmError, type LlmErrorCode } from "../src/errors.ts";
import type { DType } from "../src/types.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { randn } from "./_util.ts";

export const isCode = (code: LlmErrorCode) => (e: unknown): boolean =>
  e instanceof LlmError && e.code === code;

export const CONFIG: LlamaConfig = {
  dim: 64,
  hiddenDim: 128,
  nLayers: 2,
  nHeads: 4,
  nKvHeads: 2,
  headDim: 16,
  vocabSize: 96,
  seqLen: 128,
  normEps: 1e-5,
  ropeTheta: 500000,
  ropeStyle: "interleaved",
  ropeFreqFactors: [1, 1, 1, 1.5, 2, 4, 8, 8],
  tiedEmbeddings: false,
};

export const TOKENIZER: TokenizerData = {
  kind: "spm",
  tokens: [
    "<unk>",
    "<s>",
    "</s>",
    ...Array.from({ length: 16 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, "0")}>`),
    ...Array.from({ length: 77 }, (_, i) => `\u2581t${i}`),
  ],
  scores: Array.from({ length: 96 }, (_, i) => Math.fround(-i * 0.25)),
  tokenTypes: Array.from({ length: 96 }, (_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 19 ? 6 : 1)),
  bosId: 1,
  eosId: 2,
  unkId: 0,
  eotIds: [2],
  addBos: true,
  addSpacePrefix: false,
  chatTemplate: "{% for m in messages %}{{ m.content }}{% endfor %}",
};

const DTYPE_CYCLE: readonly DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"];

/** GGUF tensors for a config: every weight in a different dtype, norms f32. */
export function llamaTensors(c: LlamaConfig, seed = 1): GgufTensorInput[] {
  const out: GgufTensorInput[] = [];
  requiredTensors(c).forEach((name, i) => {
    const shape = expectedShape(c, name);
    const dtype = shape.length === 1 ? "f32" : DTYPE_CYCLE[i % DTYPE_CYCLE.length];
    const n = shape.reduce((a, b) => a * b, 1);
    out.push({ name: ggufTensorName(name), dtype, shape, data: quantize(dtype, randn(n, seed + i, 0.5)) });
  });
  const rope = ropeFreqsTensor(c);
  if (rope) out.push(rope);
  return out;
}

export function llamaFile(
  c = CONFIG,
  options: { tokenizer?: TokenizerData; alignment?: number; version?: 2 | 3 } = { tokenizer: TOKENIZER },
): { bytes: Uint8Array; tensors: GgufTensorInput[] } {
  const tensors = llamaTensors(c);
  const bytes = writeGgufBytes({
    metadata: ggufMetadataForLlama(c, options.tokenizer),
    tensors,
    alignment: options.alignment,
    version: options.version,
  });
  return { bytes, tensors };
}
