/**
 * GGUF (versions 2 and 3) reader: a LLaMA model built from a GGUF header (config from `llama.*` keys,
 * tokenizer from `tokenizer.ggml.*` keys, canonical tensor names). The header itself (metadata, tensor
 * infos, ggml type ids) is read by `gguf_header.ts`, whose exports this module re-exports.
 * @module
 */
import type { Shape } from "../types.ts";
import { LlmError } from "../errors.ts";
import type { ByteSource } from "../io/byte_source.ts";
import { dequantize } from "../dtype.ts";
import { type LlamaConfig, validateConfig } from "../model/config.ts";
import { type ModelFile, type TensorEntry, validateTensors } from "./model_file.ts";
import type { TokenizerData } from "./tokenizer.ts";
import { activationQuantOf, QUANTIZATION_KEY } from "../quant/schemes.ts";
import {
  corrupt,
  ggmlTypeName,
  type GgufData,
  type GgufKv,
  type GgufTensorInfo,
  readGgufHeader,
  SUPPORTED_GGML_TYPES,
  wrap,
} from "./gguf_header.ts";

export {
  dtypeFromGgml,
  ggmlTypeName,
  ggmlTypeOf,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_VALUE_TYPES,
  type GgufData,
  type GgufHeader,
  type GgufIntType,
  type GgufKv,
  type GgufScalarType,
  type GgufTensorInfo,
  type GgufTypeName,
  type GgufValueType,
  readGgufHeader,
  SUPPORTED_GGML_TYPES,
} from "./gguf_header.ts";

/** GGUF global tensor names and our canonical ones. */
export const GGUF_GLOBAL_TENSORS: Readonly<Record<string, string>> = {
  "token_embd.weight": "tok_embd",
  "output_norm.weight": "norm",
  "output.weight": "output",
};

/** GGUF per-layer tensor stems (`blk.N.<stem>.weight`) and our canonical per-layer names (`lN.<name>`). */
export const GGUF_LAYER_TENSORS: Readonly<Record<string, string>> = {
  attn_norm: "attn_norm",
  attn_q: "wq",
  attn_k: "wk",
  attn_v: "wv",
  attn_output: "wo",
  ffn_norm: "ffn_norm",
  ffn_gate: "w1",
  ffn_down: "w2",
  ffn_up: "w3",
};

/** Our canonical name for a GGUF tensor name (`blk.3.attn_q.weight` → `l3.wq`), undefined for others. */
export function canonicalTensorName(ggufName: string): string | undefined {
  const g = GGUF_GLOBAL_TENSORS[ggufName];
  if (g !== undefined) return g;
  const m = /^blk\.(0|[1-9]\d{0,6})\.([a-z_]+)\.weight$/.exec(ggufName);
  const stem = m && Object.hasOwn(GGUF_LAYER_TENSORS, m[2]) ? GGUF_LAYER_TENSORS[m[2]] : undefined;
  return m && stem ? `l${m[1]}.${stem}` : undefined;
}

// ---- tokenizer --------------------------------------------------------------------------------------

function tokFail(where: string, msg: string): LlmError {
  return new LlmError(
    "TOKENIZER_FORMAT",
    `${where}: ${msg}; the GGUF tokenizer metadata is corrupt: re-convert`,
  );
}

/**
 * The tokenizer carried in `tokenizer.ggml.*` metadata: `llama` (SentencePiece, "▁" for spaces) becomes
 * `spm`, `gpt2` (byte-level BPE) becomes `bpe`. Other models give undefined; their name stays in the
 * metadata so the engine can say which tokenizer is missing.
 */
export function readGgufTokenizer(
  metadata: ReadonlyMap<string, GgufKv>,
  where: string,
): TokenizerData | undefined {
  const get = (k: string): GgufData | undefined => metadata.get(k)?.value;
  const model = get("tokenizer.ggml.model");
  const kind: TokenizerData["kind"] | undefined = model === "llama"
    ? "spm"
    : model === "gpt2"
    ? "bpe"
    : undefined;
  if (kind === undefined) return undefined;
  const strings = (k: string): string[] | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
      throw tokFail(where, `${k} is not an array of strings`);
    }
    return v as string[];
  };
  const tokens = strings("tokenizer.ggml.tokens");
  if (tokens === undefined || tokens.length === 0) {
    throw tokFail(where, "tokenizer.ggml.tokens is missing or empty");
  }
  const numbers = (k: string): number[] | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length !== tokens.length || !v.every((x) => typeof x === "number")) {
      throw tokFail(where, `${k} is not an array of ${tokens.length} numbers, one per token`);
    }
    return v as number[];
  };
  // Like llama.cpp, an out-of-range special id is ignored rather than fatal: some converters write -1.
  const id = (k: string): number | undefined => {
    const v = get(k);
    return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < tokens.length ? v : undefined;
  };
  const flag = (k: string): boolean | undefined => {
    const v = get(k);
    if (v !== undefined && typeof v !== "boolean") {
      throw tokFail(where, `${k} = ${String(v)} is not a boolean`);
    }
    return v;
  };
  const merges = kind === "bpe" ? strings("tokenizer.ggml.merges") : undefined;
  if (kind === "bpe" && merges === undefined) {
    throw tokFail(where, "a gpt2 tokenizer needs tokenizer.ggml.merges");
  }
  const eotIds = [id("tokenizer.ggml.eot_token_id"), id("tokenizer.ggml.eom_token_id")]
    .filter((x): x is number => x !== undefined);
  const pre = get("tokenizer.ggml.pre");
  const chatTemplate = get("tokenizer.chat_template");
  return stripUndefined({
    kind,
    tokens,
    scores: numbers("tokenizer.ggml.scores"),
    tokenTypes: numbers("tokenizer.ggml.token_type"),
    merges,
    pre: typeof pre === "string" ? pre : undefined,
    bosId: id("tokenizer.ggml.bos_token_id"),
    eosId: id("tokenizer.ggml.eos_token_id"),
    eotIds: eotIds.length ? [...new Set(eotIds)] : undefined,
    unkId: id("tokenizer.ggml.unknown_token_id"),
    padId: id("tokenizer.ggml.padding_token_id"),
    addBos: flag("tokenizer.ggml.add_bos_token"),
    addSpacePrefix: flag("tokenizer.ggml.add_space_prefix"),
    chatTemplate: typeof chatTemplate === "string" ? chatTemplate : undefined,
  });
}

/** Drop undefined fields so absent values are absent keys (deep equality, spreading defaults). */
function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// ---- model ------------------------------------------------------------------------------------------

const SUMMARY_OVER = 64; // arrays longer than this (vocabularies, merges) are summarised in `metadata`

function summarise(kv: GgufKv): unknown {
  if (!Array.isArray(kv.value) || kv.value.length <= SUMMARY_OVER) return kv.value;
  const item = kv.type.slice("array<".length, -1);
  return `<array of ${kv.value.length} ${item === "string" ? "strings" : item}>`;
}

/**
 * Parse a GGUF LLaMA model: the header, the config from `llama.*` keys, the tokenizer from
 * `tokenizer.ggml.*` keys and a table of canonical tensors (see `model_file.ts`). The returned model
 * owns `src` and closes it in `close()`; on failure the caller still owns it.
 *
 * Throws `MODEL_FORMAT` (malformed file), `UNSUPPORTED_MODEL` (not `general.architecture = "llama"`),
 * `UNSUPPORTED_DTYPE` (a weight of a ggml type llama.ts cannot run) or `TOKENIZER_FORMAT`.
 */
export async function parseGguf(src: ByteSource): Promise<ModelFile> {
  try {
    return await parseInner(src);
  } catch (e) {
    throw wrap(e, src);
  }
}

async function parseInner(src: ByteSource): Promise<ModelFile> {
  const h = await readGgufHeader(src);
  const where = src.name;
  // Typed lookups: a wrong-typed key fails here, with its name, instead of as NaN somewhere later.
  const get = (key: string, want: string, ok: (v: GgufData) => boolean): GgufData | undefined => {
    const kv = h.metadata.get(key);
    if (kv === undefined || ok(kv.value)) return kv?.value;
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: metadata ${key} = ${String(kv.value).slice(0, 80)} (${kv.type}) is not ${want}; ` +
        `the file is corrupt or from an incompatible converter`,
    );
  };
  const isCount = (v: GgufData): boolean => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  const int = (key: string): number | undefined =>
    get(key, "a non-negative integer", isCount) as number | undefined;
  const float = (key: string): number | undefined =>
    get(key, "a number", (v) => typeof v === "number") as number | undefined;
  const required = (key: string): number => {
    const v = int(key);
    if (v !== undefined) return v;
    throw new LlmError("MODEL_FORMAT", `${where}: required metadata ${key} is missing; re-convert the model`);
  };
  const arch = get("general.architecture", "a string", (v) => typeof v === "string");
  if (arch === undefined) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: metadata general.architecture is missing; re-convert the model`,
    );
  }
  if (arch !== "llama") {
    throw new LlmError(
      "UNSUPPORTED_MODEL",
      `${where}: architecture "${arch}" is not supported; llama.ts runs LLaMA-family models ` +
        `(general.architecture = "llama")`,
    );
  }

  const tensors = new Map<string, TensorEntry>();
  const rowsOf = new Map<string, number>();
  for (const t of h.tensors) {
    const name = canonicalTensorName(t.name);
    if (name === undefined && t.name !== "rope_freqs.weight") continue;
    if (t.dtype === undefined || t.byteLength === undefined) {
      throw new LlmError(
        "UNSUPPORTED_DTYPE",
        `${where}: tensor ${t.name} has ggml type ${ggmlTypeName(t.ggmlType)} (id ${t.ggmlType}), which ` +
          `llama.ts cannot run; supported: ${SUPPORTED_GGML_TYPES}. Use a file quantized to one of those ` +
          `(e.g. Q4_K_M, Q8_0 or F16)`,
      );
    }
    if (name === undefined) continue;
    // ggml lists dimensions innermost first; our shapes are row-major, outermost first.
    const shape: Shape = [...t.ne].reverse();
    const { dtype, byteOffset, byteLength } = t;
    tensors.set(name, { name, dtype, shape, source: src, byteOffset, byteLength });
    rowsOf.set(name, shape[0]);
  }

  const tokenizer = readGgufTokenizer(h.metadata, where);
  const dim = required("llama.embedding_length");
  const nHeads = required("llama.attention.head_count");
  const vocabSize = int("llama.vocab_size") ?? tokenizer?.tokens.length ?? rowsOf.get("tok_embd") ?? 0;
  const headDim = int("llama.attention.key_length") ?? (nHeads > 0 ? dim / nHeads : 0);
  const ropeFreqs = h.tensors.find((t) => t.name === "rope_freqs.weight");
  const ropeFreqFactors = ropeFreqs ? await readRopeFreqs(src, ropeFreqs, headDim) : undefined;
  const config: LlamaConfig = {
    dim,
    hiddenDim: required("llama.feed_forward_length"),
    nLayers: required("llama.block_count"),
    nHeads,
    nKvHeads: int("llama.attention.head_count_kv") ?? nHeads,
    headDim,
    vocabSize,
    seqLen: required("llama.context_length"),
    normEps: float("llama.attention.layer_norm_rms_epsilon") ?? 1e-5,
    ropeTheta: float("llama.rope.freq_base") ?? 10000,
    // The GGUF converter permutes wq/wk rows so adjacent pairs rotate together.
    ropeStyle: "interleaved",
    ...(ropeFreqFactors ? { ropeFreqFactors } : {}),
    tiedEmbeddings: !tensors.has("output"),
    ...activationQuantOf(get(QUANTIZATION_KEY, "a string", (v) => typeof v === "string"), where),
  };
  validateConfig(config, where);
  validateTensors(config, tensors, where);

  const metadata: Record<string, unknown> = {};
  for (const [k, kv] of h.metadata) metadata[k] = summarise(kv);
  return {
    format: "gguf",
    config,
    tensors,
    ...(tokenizer ? { tokenizer } : {}),
    metadata,
    close: (): void => src.close(),
  };
}

/** Llama-3.1's per-pair RoPE divisors are a tiny tensor; read them now so the config is complete. */
async function readRopeFreqs(src: ByteSource, t: GgufTensorInfo, headDim: number): Promise<number[]> {
  const n = t.ne.reduce((a, b) => a * b, 1), want = headDim / 2;
  if (n !== want || t.dtype === undefined) {
    throw corrupt(src, `rope_freqs.weight has ${n} values where headDim ${headDim} needs ${want}`);
  }
  const out = new Float32Array(n);
  dequantize(t.dtype, await src.read(t.byteOffset, t.byteLength ?? 0), out);
  return Array.from(out);
}
