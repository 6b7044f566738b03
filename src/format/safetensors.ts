/**
 * safetensors headers and Hugging Face LLaMA config.json / tensor names. Pure over `ByteSource`;
 * the directory loader (`src/io/hf_dir.ts`) ties these together.
 *
 * safetensors layout: u64 LE header length N, then N bytes of UTF-8 JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, then the data
 * section; offsets are relative to the data section's start (8 + N).
 *
 * The examples are fenced `ts ignore`: `deno check --doc` injects every export of a file into each
 * snippet, and with several exports here noUnusedLocals would reject them.
 * @module
 */
import type { ByteSource } from "../io/byte_source.ts";
import type { DType } from "../types.ts";
import { LlmError } from "../errors.ts";
import { type LlamaConfig, type RopeScaling, validateConfig } from "../model/config.ts";

/** One tensor of a safetensors file; `byteOffset` is absolute within the source. */
export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  byteOffset: number;
  byteLength: number;
}

/** Headers beyond this are not produced by any writer (the safetensors spec caps them at 100 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPES: Record<string, DType> = { F32: "f32", F16: "f16", BF16: "bf16" };
const BYTES: Record<DType, number> = { f32: 4, f16: 2, bf16: 2 } as Record<DType, number>;

/**
 * Parse a safetensors header into a map from tensor name to dtype, shape and absolute byte range.
 * Every range is checked against the file and against shape x element size. `options.filter`
 * skips tensors the caller will not use (checked for structure, not for dtype), so e.g. an integer
 * buffer beside the weights does not fail the load.
 *
 * @example
 * ```ts ignore
 * import { parseSafetensorsHeader } from "./safetensors.ts";
 * import { bytesSource } from "../io/byte_source.ts";
 * const bytes = new Uint8Array(await (await fetch("https://example.com/model.safetensors")).arrayBuffer());
 * const header = await parseSafetensorsHeader(bytesSource(bytes, "model.safetensors"));
 * console.log(header.get("model.norm.weight")?.shape);
 * ```
 */
export async function parseSafetensorsHeader(
  src: ByteSource,
  options?: { filter?: (name: string) => boolean },
): Promise<Map<string, SafetensorsEntry>> {
  const where = src.name;
  if (src.size < 8) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: truncated: a safetensors file starts with an 8-byte header length, file has ${src.size} bytes`,
    );
  }
  const lenBytes = await src.read(0, 8);
  const n = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (n < 2n || n > BigInt(MAX_HEADER_BYTES) || n > BigInt(src.size - 8)) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: safetensors header length ${n} is absurd for a ${src.size}-byte file ` +
        `(must be 2..${Math.min(MAX_HEADER_BYTES, src.size - 8)}); the file is truncated or not safetensors`,
    );
  }
  const headerLen = Number(n);
  const dataStart = 8 + headerLen;
  const dataSize = src.size - dataStart;
  const text = await src.read(8, headerLen);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(text));
  } catch (e) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: safetensors header is not valid UTF-8 JSON (${(e as Error).message}); the file is corrupt`,
      { cause: e },
    );
  }
  if (!isRecord(json)) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: safetensors header is not a JSON object; the file is corrupt`,
    );
  }

  const out = new Map<string, SafetensorsEntry>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") continue;
    const bad = (what: string): LlmError =>
      new LlmError("MODEL_FORMAT", `${where}: tensor "${name}" ${what}; the file is corrupt`);
    if (!isRecord(raw)) throw bad("is not a JSON object");
    const { dtype, shape, data_offsets: offs } = raw;
    if (typeof dtype !== "string") throw bad(`has dtype ${JSON.stringify(dtype)}, expected a string`);
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every(isCount)) {
      throw bad(`has shape ${short(shape)}, expected a list of at most 8 non-negative integers`);
    }
    if (
      !Array.isArray(offs) || offs.length !== 2 || !isCount(offs[0]) || !isCount(offs[1]) || offs[0] > offs[1]
    ) {
      throw bad(`has data_offsets ${short(offs)}, expected [begin, end] with 0 <= begin <= end`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataSize) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: tensor "${name}" data_offsets [${begin}, ${end}] pass the end of the data section ` +
          `(${dataSize} bytes); the file is truncated: download it again`,
      );
    }
    if (options?.filter && !options.filter(name)) continue;
    const dt = Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined;
    if (dt === undefined) {
      throw new LlmError(
        "UNSUPPORTED_DTYPE",
        `${where}: tensor "${name}" has dtype ${dtype}; only F32, F16 and BF16 safetensors are supported: ` +
          `convert the checkpoint to one of them (or quantize it to GGUF)`,
      );
    }
    // Stop multiplying once past the data size so the product stays exact (any such count is wrong).
    let elems = (shape as number[]).includes(0) ? 0 : 1;
    for (const d of shape as number[]) {
      if (elems > dataSize) break;
      elems *= d;
    }
    const want = elems * BYTES[dt];
    if (want !== end - begin) {
      throw bad(
        `has shape (${shape.join(", ")}) x ${dtype} = ${want} bytes but data_offsets span ${end - begin}`,
      );
    }
    out.set(name, {
      dtype: dt,
      shape: (shape as number[]).slice(),
      byteOffset: dataStart + begin,
      byteLength: end - begin,
    });
  }
  return out;
}

// ---- config.json -----------------------------------------------------------------------------------

/**
 * Map a Hugging Face LLaMA `config.json` (already parsed) to a validated {@link LlamaConfig}.
 * Non-LLaMA architectures, attention/MLP biases and RoPE scalings other than "llama3" throw
 * UNSUPPORTED_MODEL; wrongly typed keys throw MODEL_FORMAT naming the key. HF checkpoints rotate
 * with rotate_half, so the result has ropeStyle "half" (no weight permutation needed).
 *
 * @example
 * ```ts ignore
 * import { hfConfigToLlama } from "./safetensors.ts";
 * const cfg = hfConfigToLlama(await (await fetch("https://example.com/config.json")).json(), "config.json");
 * console.log(cfg.dim, cfg.nKvHeads);
 * ```
 */
export function hfConfigToLlama(config: unknown, where: string): LlamaConfig {
  if (!isRecord(config)) {
    throw new LlmError("MODEL_FORMAT", `${where}: config.json is not a JSON object; the file is corrupt`);
  }
  const c = config;
  const modelType = optString(c, "model_type", where);
  const archs = c.architectures ?? undefined;
  if (archs !== undefined && (!Array.isArray(archs) || !archs.every((a) => typeof a === "string"))) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: architectures is ${short(archs)}, expected a list of strings`,
    );
  }
  const archList = (archs ?? []) as string[];
  if (
    (modelType !== undefined && modelType !== "llama") ||
    (archs !== undefined && !archList.includes("LlamaForCausalLM")) ||
    (modelType === undefined && archs === undefined)
  ) {
    throw new LlmError(
      "UNSUPPORTED_MODEL",
      `${where}: model_type ${JSON.stringify(modelType)}, architectures ${
        JSON.stringify(archs)
      }: only LLaMA ` +
        `(model_type "llama", LlamaForCausalLM) checkpoints are supported; use a LLaMA-family model`,
    );
  }
  const act = optString(c, "hidden_act", where);
  if (act !== undefined && act !== "silu") {
    throw new LlmError(
      "UNSUPPORTED_MODEL",
      `${where}: hidden_act "${act}" is not supported; LLaMA uses "silu"`,
    );
  }
  for (const k of ["attention_bias", "mlp_bias"]) {
    if (optBool(c, k, where) === true) {
      throw new LlmError(
        "UNSUPPORTED_MODEL",
        `${where}: ${k} is true; biased LLaMA variants are not supported`,
      );
    }
  }

  const dim = int(c, "hidden_size", where);
  const nHeads = int(c, "num_attention_heads", where);
  const nKvHeads = int(c, "num_key_value_heads", where, nHeads);
  let headDefault: number | undefined;
  if (Number.isInteger(dim / nHeads)) headDefault = dim / nHeads;
  const headDim = int(c, "head_dim", where, headDefault);
  const cfg: LlamaConfig = {
    dim,
    hiddenDim: int(c, "intermediate_size", where),
    nLayers: int(c, "num_hidden_layers", where),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: int(c, "vocab_size", where),
    // HF LlamaConfig's own defaults where a key may be omitted.
    seqLen: int(c, "max_position_embeddings", where, 2048),
    normEps: num(c, "rms_norm_eps", where, 1e-6),
    ropeTheta: ropeTheta(c, where),
    ropeStyle: "half",
    tiedEmbeddings: optBool(c, "tie_word_embeddings", where) ?? false,
  };
  const scaling = c.rope_scaling !== undefined && c.rope_scaling !== null
    ? ropeScaling(c.rope_scaling, where, "rope_scaling")
    : ropeScaling(c.rope_parameters, where, "rope_parameters");
  return validateConfig(scaling ? { ...cfg, ropeScaling: scaling } : cfg, where);
}

// transformers >= 5 writes rope_theta (and any scaling) inside `rope_parameters` instead of at the top
// level; a config may carry both only if they agree.
function ropeTheta(c: Record<string, unknown>, where: string): number {
  const rp = c.rope_parameters;
  if (rp !== undefined && rp !== null && !isRecord(rp)) {
    throw new LlmError("MODEL_FORMAT", `${where}: rope_parameters is ${short(rp)}, expected an object`);
  }
  const nested = isRecord(rp) && rp.rope_theta !== undefined
    ? num(rp, "rope_theta", `${where}: rope_parameters`)
    : undefined;
  const top = c.rope_theta !== undefined ? num(c, "rope_theta", where) : undefined;
  if (top !== undefined && nested !== undefined && top !== nested) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: rope_theta ${top} and rope_parameters.rope_theta ${nested} disagree; fix config.json`,
    );
  }
  return top ?? nested ?? 10000;
}

function ropeScaling(v: unknown, where: string, key: string): RopeScaling | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) {
    throw new LlmError("MODEL_FORMAT", `${where}: ${key} is ${short(v)}, expected an object`);
  }
  const type = v.rope_type ?? v.type;
  // newer transformers spell "no scaling" "default"; rope_parameters without a type holds just rope_theta
  if (type === "default" || (type === undefined && key === "rope_parameters")) return undefined;
  if (type !== "llama3") {
    throw new LlmError(
      "UNSUPPORTED_MODEL",
      `${where}: ${key} type ${JSON.stringify(type)} is not supported; only "llama3" scaling is`,
    );
  }
  const field = (k: string): number => num(v, k, `${where}: ${key}`);
  const s: RopeScaling = {
    type: "llama3",
    factor: field("factor"),
    lowFreqFactor: field("low_freq_factor"),
    highFreqFactor: field("high_freq_factor"),
    originalMaxPositionEmbeddings: int(v, "original_max_position_embeddings", `${where}: ${key}`),
  };
  if (!(s.factor > 0 && s.lowFreqFactor > 0 && s.highFreqFactor > s.lowFreqFactor)) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: ${key} factor ${s.factor}, low_freq_factor ${s.lowFreqFactor}, high_freq_factor ` +
        `${s.highFreqFactor} are inconsistent (need factor > 0 and high > low > 0)`,
    );
  }
  return s;
}

// ---- tensor names ------------------------------------------------------------------------------------

const LAYER_RE = /^model\.layers\.(0|[1-9][0-9]*)\.(.+)\.weight$/;
const LAYER_PARTS: Record<string, string> = {
  "input_layernorm": "attn_norm",
  "self_attn.q_proj": "wq",
  "self_attn.k_proj": "wk",
  "self_attn.v_proj": "wv",
  "self_attn.o_proj": "wo",
  "post_attention_layernorm": "ffn_norm",
  "mlp.gate_proj": "w1",
  "mlp.down_proj": "w2",
  "mlp.up_proj": "w3",
};

/**
 * The canonical name of a Hugging Face LLaMA tensor (`model.layers.3.self_attn.q_proj.weight` →
 * `l3.wq`), or undefined for tensors the model does not use (e.g. `rotary_emb.inv_freq`).
 *
 * @example
 * ```ts ignore
 * import { hfTensorName } from "./safetensors.ts";
 * hfTensorName("model.embed_tokens.weight"); // "tok_embd"
 * ```
 */
export function hfTensorName(name: string): string | undefined {
  switch (name) {
    case "model.embed_tokens.weight":
      return "tok_embd";
    case "model.norm.weight":
      return "norm";
    case "lm_head.weight":
      return "output";
  }
  const m = LAYER_RE.exec(name);
  if (!m) return undefined;
  const part = Object.hasOwn(LAYER_PARTS, m[2]) ? LAYER_PARTS[m[2]] : undefined;
  return part === undefined ? undefined : `l${m[1]}.${part}`;
}

// ---- helpers -----------------------------------------------------------------------------------------

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** A value for messages, cut short so hostile input cannot produce megabyte-long errors. */
function short(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}

function optString(c: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw wrongType(key, v, "string", where);
  return v;
}

function optBool(c: Record<string, unknown>, key: string, where: string): boolean | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw wrongType(key, v, "boolean", where);
  return v;
}

function wrongType(key: string, v: unknown, type: string, where: string): LlmError {
  return new LlmError("MODEL_FORMAT", `${where}: ${key} is ${short(v)}, expected a ${type}; fix config.json`);
}

function int(c: Record<string, unknown>, key: string, where: string, fallback?: number): number {
  const v = c[key];
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: ${key} is ${
        v === undefined ? "missing" : short(v)
      }, expected a positive integer; fix config.json`,
    );
  }
  return v;
}

function num(c: Record<string, unknown>, key: string, where: string, fallback?: number): number {
  const v = c[key];
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: ${key} is ${v === undefined ? "missing" : short(v)}, expected a number; fix config.json`,
    );
  }
  return v;
}
