/**
 * Synthetic GGUF models of well-known shapes for benchmarks (deterministic random weights, a
 * placeholder vocabulary): written once to a cache folder under the system temp directory.
 */
import type { DType } from "../src/types.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { ggufMetadataForLlama, ggufTensorName, streamGguf } from "../src/format/gguf_write.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { quantize } from "../src/dtype.ts";
import { synthWeights } from "../tests/_synth.ts";

const base = { normEps: 1e-5, ropeTheta: 10000, ropeStyle: "interleaved", tiedEmbeddings: true } as const;

/** Shapes of llama2.c's TinyStories models and LLaMA-7B. */
export const SHAPES: Record<string, LlamaConfig> = {
  stories15M: {
    ...base,
    dim: 288,
    hiddenDim: 768,
    nLayers: 6,
    nHeads: 6,
    nKvHeads: 6,
    headDim: 48,
    vocabSize: 32000,
    seqLen: 256,
  },
  stories110M: {
    ...base,
    dim: 768,
    hiddenDim: 2048,
    nLayers: 12,
    nHeads: 12,
    nKvHeads: 12,
    headDim: 64,
    vocabSize: 32000,
    seqLen: 1024,
  },
  llama7B: {
    ...base,
    dim: 4096,
    hiddenDim: 11008,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 32,
    headDim: 128,
    vocabSize: 32000,
    seqLen: 4096,
    tiedEmbeddings: false,
  },
};

/** Llama-2's layout: 3 specials, the 256 byte tokens (llama.cpp needs `<0x0A>`), then placeholder words. */
function placeholderVocab(n: number): TokenizerData {
  const byte = (i: number): string => `<0x${(i - 3).toString(16).toUpperCase().padStart(2, "0")}>`;
  const tokens = Array.from(
    { length: n },
    (_, i) => i < 3 ? ["<unk>", "<s>", "</s>"][i] : i < 259 ? byte(i) : `▁w${i}`,
  );
  return { kind: "spm", tokens, scores: tokens.map((_, i) => -i), bosId: 1, eosId: 2, unkId: 0 };
}

/** Path of a synthetic GGUF of `shape` with matrices in `dtype` (norms f32), written if missing. */
export async function synthGguf(shape: string, dtype: DType): Promise<string> {
  const config = SHAPES[shape];
  if (!config) throw new Error(`unknown shape ${shape}; known: ${Object.keys(SHAPES).join(", ")}`);
  const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/llama-ts-bench`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${shape}-${dtype}-v2.gguf`; // v2: byte tokens in the vocabulary
  try {
    await Deno.stat(path);
    return path;
  } catch { /* write it */ }
  const weights = synthWeights(config, 1);
  const file = await Deno.open(`${path}.tmp`, { write: true, create: true, truncate: true });
  for await (
    const chunk of streamGguf({
      metadata: ggufMetadataForLlama(config, placeholderVocab(config.vocabSize)),
      tensors: requiredTensors(config).map((name) => {
        const d = name.endsWith("norm") ? "f32" : dtype;
        return {
          name: ggufTensorName(name),
          dtype: d,
          shape: [...expectedShape(config, name)],
          data: () => quantize(d, weights.get(name)!),
        };
      }),
    })
  ) {
    let off = 0;
    while (off < chunk.byteLength) off += await file.write(chunk.subarray(off));
  }
  file.close();
  await Deno.rename(`${path}.tmp`, path);
  return path;
}
