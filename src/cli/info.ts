/**
 * `info`: what a model is and what it will cost, read from the file's header and tensor table
 * without loading weights.
 * @module
 */
import type { ModelFile } from "../format/model_file.ts";
import { kvDim, parameterCount } from "../model/config.ts";
import { byteLengthOf } from "../dtype.ts";

/** A model summary, as data and as text. */
export interface ModelSummary {
  readonly format: string;
  readonly architecture: "llama";
  readonly config: ModelFile["config"];
  readonly parameters: number;
  /** Bytes and tensor count per dtype. */
  readonly dtypes: Record<string, { tensors: number; bytes: number }>;
  readonly weightBytes: number;
  readonly contextSize: number;
  /** KV cache bytes at `contextSize` per cache dtype. */
  readonly kvBytes: { f32: number; f16: number; int8: number };
  readonly tokenizer?: { kind: string; vocabSize: number };
  readonly text: string;
}

function gib(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(2)} MiB`;
}

/** Summarise a parsed model. */
export function modelSummary(model: ModelFile, options: { contextSize?: number } = {}): ModelSummary {
  const c = model.config;
  const ctx = options.contextSize ?? Math.min(c.seqLen, 4096);
  const dtypes: Record<string, { tensors: number; bytes: number }> = {};
  let weightBytes = 0;
  for (const t of model.tensors.values()) {
    const d = (dtypes[t.dtype] ??= { tensors: 0, bytes: 0 });
    d.tensors++;
    d.bytes += t.byteLength;
    weightBytes += t.byteLength;
  }
  const kvElems = 2 * c.nLayers * ctx * kvDim(c);
  // int8 adds one f32 scale per cached row and kv head (see KvCache).
  const int8 = byteLengthOf("i8", kvElems) + byteLengthOf("f32", 2 * c.nLayers * ctx * c.nKvHeads);
  const kvBytes = { f32: byteLengthOf("f32", kvElems), f16: byteLengthOf("f16", kvElems), int8 };
  const params = parameterCount(c);
  const tok = model.tokenizer
    ? { kind: model.tokenizer.kind, vocabSize: model.tokenizer.tokens.length }
    : undefined;
  const lines = [
    `format        ${model.format}`,
    `architecture  llama`,
    `parameters    ${params.toLocaleString("en-US")} (${
      params >= 1e9 ? `${(params / 1e9).toFixed(2)} B` : `${(params / 1e6).toFixed(2)} M`
    })`,
    `dim ${c.dim}, hiddenDim ${c.hiddenDim}, nLayers ${c.nLayers}, nHeads ${c.nHeads}, nKvHeads ${c.nKvHeads}, ` +
    `headDim ${c.headDim}, vocab ${c.vocabSize}, seqLen ${c.seqLen}`,
    `rope          theta ${c.ropeTheta}, ${c.ropeStyle}${
      c.ropeScaling ? `, llama3 scaling x${c.ropeScaling.factor}` : ""
    }` +
    `${c.ropeFreqFactors ? ", rope_freqs factors" : ""}`,
    `norm eps      ${c.normEps}; embeddings ${c.tiedEmbeddings ? "tied" : "separate"}`,
    `dtypes        ${
      Object.entries(dtypes).map(([d, v]) => `${d} x${v.tensors} (${gib(v.bytes)})`).join(", ")
    }`,
    `memory        weights ${gib(weightBytes)}; KV cache at ${ctx} tokens: ${gib(kvBytes.f16)} f16, ${
      gib(kvBytes.f32)
    } f32, ${gib(kvBytes.int8)} int8`,
    `tokenizer     ${tok ? `${tok.kind}, ${tok.vocabSize} tokens` : "none in the file (pass --tokenizer)"}`,
  ];
  return {
    format: model.format,
    architecture: "llama",
    config: c,
    parameters: params,
    dtypes,
    weightBytes,
    contextSize: ctx,
    kvBytes,
    tokenizer: tok,
    text: lines.join("\n"),
  };
}
