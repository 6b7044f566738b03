/**
 * What every model-format parser returns: a validated config, a table of tensors located in a byte
 * source (read one at a time, never all at once), optional tokenizer data, and raw metadata.
 *
 * Canonical tensor names (shapes row-major, weights `(out, in)`):
 * `tok_embd (vocabSize, dim)`, `norm (dim)`, `output (vocabSize, dim)` (absent when tied), and per
 * layer `l{i}.attn_norm (dim)`, `l{i}.wq (nHeads*headDim, dim)`, `l{i}.wk (kvDim, dim)`,
 * `l{i}.wv (kvDim, dim)`, `l{i}.wo (dim, nHeads*headDim)`, `l{i}.ffn_norm (dim)`,
 * `l{i}.w1 (hiddenDim, dim)`, `l{i}.w2 (dim, hiddenDim)`, `l{i}.w3 (hiddenDim, dim)`.
 * @module
 */
import type { DType, Shape } from "../types.ts";
import type { LlamaConfig } from "../model/config.ts";
import type { ByteSource } from "../io/byte_source.ts";
import type { TokenizerData } from "./tokenizer.ts";
import { LlmError } from "../errors.ts";
import { byteLengthOf } from "../dtype.ts";

/** One tensor's location and type inside a source. */
export interface TensorEntry {
  /** Canonical tensor name, e.g. `tok_embd` or `l0.wq`. */
  readonly name: string;
  /** Element type as stored. */
  readonly dtype: DType;
  /** Shape, row-major; weight matrices are `(out, in)`. */
  readonly shape: Shape;
  /** The source holding the tensor's bytes. */
  readonly source: ByteSource;
  /** Where the tensor's data starts in `source`, in bytes. */
  readonly byteOffset: number;
  /** Size of the tensor's data in bytes (as its dtype and shape require). */
  readonly byteLength: number;
}

/** A parsed model file (or directory). */
export interface ModelFile {
  /** Which file format the model was parsed from. */
  readonly format: "gguf" | "safetensors" | "llama2c";
  /** The validated model configuration. */
  readonly config: LlamaConfig;
  /** Tensors by canonical name (every tensor the config requires is present). */
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  /** Tokenizer carried by the model (GGUF metadata, tokenizer.json beside safetensors), if any. */
  readonly tokenizer?: TokenizerData;
  /** Format metadata for `info` (GGUF key/values, config.json, llama2.c header). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Close the underlying sources. */
  close(): void;
}

/** Canonical tensor names a config requires, in load order. */
export function requiredTensors(c: LlamaConfig): string[] {
  const names = ["tok_embd"];
  for (let i = 0; i < c.nLayers; i++) {
    for (const t of ["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]) {
      names.push(`l${i}.${t}`);
    }
  }
  names.push("norm");
  if (!c.tiedEmbeddings) names.push("output");
  return names;
}

/** Expected shape of a canonical tensor under a config. */
export function expectedShape(c: LlamaConfig, name: string): Shape {
  const q = c.nHeads * c.headDim, kv = c.nKvHeads * c.headDim;
  const base = name.replace(/^l\d+\./, "");
  switch (base) {
    case "tok_embd":
    case "output":
      return [c.vocabSize, c.dim];
    case "norm":
    case "attn_norm":
    case "ffn_norm":
      return [c.dim];
    case "wq":
      return [q, c.dim];
    case "wk":
    case "wv":
      return [kv, c.dim];
    case "wo":
      return [c.dim, q];
    case "w1":
    case "w3":
      return [c.hiddenDim, c.dim];
    case "w2":
      return [c.dim, c.hiddenDim];
  }
  throw new LlmError("INTERNAL", `no expected shape for tensor ${name}`);
}

/**
 * Check that every required tensor is present with the expected shape and a byte length that matches
 * its dtype, and lies inside its source. Parsers call this last so every format fails the same way.
 */
export function validateTensors(
  c: LlamaConfig,
  tensors: ReadonlyMap<string, TensorEntry>,
  where: string,
): void {
  for (const name of requiredTensors(c)) {
    const t = tensors.get(name);
    if (!t) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: tensor ${name} is missing; the file is incomplete or not a LLaMA`,
      );
    }
    const want = expectedShape(c, name);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: tensor ${name} has shape (${t.shape.join(", ")}), the config implies (${want.join(", ")})`,
      );
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    const bytes = byteLengthOf(t.dtype, n, name);
    if (bytes !== t.byteLength) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: tensor ${name} has ${t.byteLength} bytes, ${t.dtype} needs ${bytes}`,
      );
    }
    if (t.byteOffset < 0 || t.byteOffset + t.byteLength > t.source.size) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: tensor ${name} (bytes ${t.byteOffset}..${
          t.byteOffset + t.byteLength
        }) passes the end of ` +
          `${t.source.name} (${t.source.size} bytes); the file is truncated: download it again`,
      );
    }
  }
}
