/**
 * Deterministic synthetic models for tests: seeded random weights under canonical names and writers
 * for the llama2.c and Hugging Face (safetensors) formats.
 *
 * Rotary layout. Canonical weights (what {@link synthWeights} returns, what llama2.c and GGUF store)
 * use the *interleaved* layout: RoPE rotates adjacent pairs (2i, 2i+1) of each head. HF checkpoints
 * store wq/wk for *rotate_half*, which rotates (i, i + headDim/2). The two are the same model under
 * a fixed per-head row permutation; llama.cpp's converter applies HF→GGUF as
 * `interleaved row 2i   = HF row i`, `interleaved row 2i+1 = HF row i + headDim/2`.
 * {@link writeHfDirectory} applies the inverse ({@link interleavedToHalf}) to wq (per query head) and
 * wk (per KV head), so one set of canonical weights written by {@link writeLlama2c} (run with ropeStyle
 * "interleaved") and by {@link writeHfDirectory} (loaded with ropeStyle "half") gives identical logits.
 * @module
 */
import type { LlamaConfig } from "../src/model/config.ts";
import type { DType } from "../src/types.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { ggufMetadataForLlama, ggufTensorName, writeGgufBytes } from "../src/format/gguf_write.ts";
import { quantize } from "../src/dtype.ts";
import { randn } from "./_util.ts";

/**
 * A GGUF file of `config` in memory, from canonical weights: 1-D tensors (the norms) f32, matrices stored as
 * `dtype`; `vocab` goes into the metadata as the file's tokenizer.
 */
export function synthGgufBytes(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  dtype: DType,
  vocab?: TokenizerData,
): Uint8Array {
  return writeGgufBytes({
    metadata: ggufMetadataForLlama(config, vocab),
    tensors: requiredTensors(config).map((name) => {
      const shape = [...expectedShape(config, name)];
      const d = shape.length === 1 ? "f32" : dtype;
      return { name: ggufTensorName(name), dtype: d, shape, data: quantize(d, weights.get(name)!) };
    }),
  });
}

/** A small GQA model: every test that needs "a model" can start here. */
export const TINY_CONFIG: LlamaConfig = {
  dim: 64,
  hiddenDim: 172,
  nLayers: 2,
  nHeads: 8,
  nKvHeads: 4,
  headDim: 8,
  vocabSize: 512,
  seqLen: 128,
  normEps: 1e-5,
  ropeTheta: 10000,
  ropeStyle: "interleaved",
  tiedEmbeddings: false,
};

/**
 * Seeded weights for every tensor `config` requires (canonical names, row-major, interleaved RoPE
 * layout). Matrices are uniform in ±1/sqrt(in) so activations keep their scale through the layers;
 * norms are 1 ± 0.1; the embedding is ±1 and the untied head ±2/sqrt(dim) so logits spread enough
 * for greedy decoding to be unambiguous.
 */
export function synthWeights(config: LlamaConfig, seed: number): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  requiredTensors(config).forEach((name, i) => {
    const shape = expectedShape(config, name);
    const n = shape.reduce((a, b) => a * b, 1);
    const s = (seed * 7919 + i * 104729) >>> 0; // distinct stream per tensor
    const base = name.replace(/^l\d+\./, "");
    if (shape.length === 1) {
      const w = randn(n, s, 0.1);
      for (let j = 0; j < n; j++) w[j] += 1;
      out.set(name, w);
    } else if (base === "tok_embd") {
      out.set(name, randn(n, s, 1));
    } else if (base === "output") {
      out.set(name, randn(n, s, 2 / Math.sqrt(shape[1])));
    } else {
      out.set(name, randn(n, s, 1 / Math.sqrt(shape[1])));
    }
  });
  return out;
}

function need(config: LlamaConfig, weights: Map<string, Float32Array>, name: string): Float32Array {
  const w = weights.get(name);
  const n = expectedShape(config, name).reduce((a, b) => a * b, 1);
  if (!w || w.length !== n) throw new Error(`synth: weight ${name} missing or not ${n} values`);
  return w;
}

/**
 * Write canonical weights as a llama2.c checkpoint: legacy v0 (default: 7-int header, zeroed RoPE
 * tables, negative vocab_size when untied) or export.py v1 ("ak42" 256-byte header, no RoPE tables).
 * llama2.c has no head_dim field, so `config.headDim` must equal dim / nHeads.
 */
export function writeLlama2c(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  options?: { version?: 0 | 1 },
): Uint8Array {
  const c = config, version = options?.version ?? 0;
  if (c.headDim * c.nHeads !== c.dim) throw new Error("synth: llama2.c needs headDim == dim / nHeads");
  const stack = (t: string): Float32Array[] =>
    Array.from({ length: c.nLayers }, (_, i) => need(c, weights, `l${i}.${t}`));
  const layers = (ts: string[]): Float32Array[] => ts.flatMap(stack);
  const parts: Float32Array[] = version === 0
    ? [
      need(c, weights, "tok_embd"),
      ...layers(["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]),
      need(c, weights, "norm"),
      new Float32Array(2 * c.seqLen * (c.headDim / 2)), // legacy freq_cis_real / freq_cis_imag, unused
    ]
    : [
      ...layers(["attn_norm", "ffn_norm"]),
      need(c, weights, "norm"),
      need(c, weights, "tok_embd"),
      ...layers(["wq", "wk", "wv", "wo", "w1", "w2", "w3"]),
    ];
  if (!c.tiedEmbeddings) parts.push(need(c, weights, "output"));
  const headerBytes = version === 0 ? 28 : 256;
  const floats = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(headerBytes + 4 * floats);
  const dv = new DataView(out.buffer);
  let o = 0;
  if (version === 1) {
    dv.setUint32(0, 0x616b3432, true);
    dv.setInt32(4, 1, true);
    o = 8;
  }
  const vocab = version === 0 && !c.tiedEmbeddings ? -c.vocabSize : c.vocabSize;
  for (const v of [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, vocab, c.seqLen]) {
    dv.setInt32(o, v, true);
    o += 4;
  }
  if (version === 1) out[o] = c.tiedEmbeddings ? 1 : 0;
  o = headerBytes;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++, o += 4) dv.setFloat32(o, p[i], true);
  }
  return out;
}

/**
 * Reorder the rows of a (nHeads*headDim, in) q/k projection from the interleaved layout to HF's
 * rotate_half layout: per head, rows 0,2,4,.. become the first half and rows 1,3,5,.. the second.
 */
export function interleavedToHalf(w: Float32Array, nHeads: number, headDim: number): Float32Array {
  return permuteRows(w, nHeads, headDim, (r) => r < headDim / 2 ? 2 * r : 2 * (r - headDim / 2) + 1);
}

/** The inverse of {@link interleavedToHalf} (what llama.cpp's HF→GGUF converter does). */
export function halfToInterleaved(w: Float32Array, nHeads: number, headDim: number): Float32Array {
  return permuteRows(w, nHeads, headDim, (r) => r % 2 === 0 ? r / 2 : headDim / 2 + (r - 1) / 2);
}

/** out row (h, r) = w row (h, from(r)). */
function permuteRows(
  w: Float32Array,
  nHeads: number,
  headDim: number,
  from: (r: number) => number,
): Float32Array {
  const cols = w.length / (nHeads * headDim);
  if (!Number.isInteger(cols)) {
    throw new Error(`synth: ${w.length} values are not (${nHeads}*${headDim}, in)`);
  }
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++) {
    for (let r = 0; r < headDim; r++) {
      const src = (h * headDim + from(r)) * cols, dst = (h * headDim + r) * cols;
      out.set(w.subarray(src, src + cols), dst);
    }
  }
  return out;
}

const HF_LAYER: Record<string, string> = {
  attn_norm: "input_layernorm",
  wq: "self_attn.q_proj",
  wk: "self_attn.k_proj",
  wv: "self_attn.v_proj",
  wo: "self_attn.o_proj",
  ffn_norm: "post_attention_layernorm",
  w1: "mlp.gate_proj",
  w2: "mlp.down_proj",
  w3: "mlp.up_proj",
};

/** The HF name of a canonical tensor (inverse of `hfTensorName`). */
export function hfNameOf(canonical: string): string {
  if (canonical === "tok_embd") return "model.embed_tokens.weight";
  if (canonical === "norm") return "model.norm.weight";
  if (canonical === "output") return "lm_head.weight";
  const m = /^l(\d+)\.(\w+)$/.exec(canonical);
  if (!m || !HF_LAYER[m[2]]) throw new Error(`synth: no HF name for ${canonical}`);
  return `model.layers.${m[1]}.${HF_LAYER[m[2]]}.weight`;
}

/**
 * Canonical weights as the f32 tensors of an HF checkpoint (HF names, wq/wk permuted to the
 * rotate_half layout, no lm_head when tied), in the order writers store them.
 */
export function toHfTensors(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
): Map<string, { shape: number[]; data: Float32Array }> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const name of requiredTensors(config)) {
    let data = need(config, weights, name);
    if (/\.wq$/.test(name)) data = interleavedToHalf(data, config.nHeads, config.headDim);
    if (/\.wk$/.test(name)) data = interleavedToHalf(data, config.nKvHeads, config.headDim);
    out.set(hfNameOf(name), { shape: [...expectedShape(config, name)], data });
  }
  return out;
}

/** One tensor for {@link writeSafetensors}: either f32 data to encode, or raw bytes with any dtype string. */
export interface SafetensorsInput {
  name: string;
  dtype: string;
  shape: number[];
  data?: Float32Array;
  bytes?: Uint8Array;
}

const ST_DTYPE: Record<string, "f32" | "f16" | "bf16"> = { F32: "f32", F16: "f16", BF16: "bf16" };

/** Serialize tensors as one safetensors file (header padded with spaces to 8 bytes, as the spec suggests). */
export function writeSafetensors(tensors: SafetensorsInput[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata ?? { format: "pt" } };
  const blobs: Uint8Array[] = [];
  let off = 0;
  for (const t of tensors) {
    const bytes = t.bytes ?? quantize(ST_DTYPE[t.dtype] ?? "f32", t.data ?? new Float32Array(0));
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + bytes.byteLength] };
    blobs.push(bytes);
    off += bytes.byteLength;
  }
  const text = JSON.stringify(header);
  const pad = (8 - (new TextEncoder().encode(text).byteLength % 8)) % 8;
  const json = new TextEncoder().encode(text + " ".repeat(pad));
  const out = new Uint8Array(8 + json.byteLength + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  let o = 8 + json.byteLength;
  for (const b of blobs) {
    out.set(b, o);
    o += b.byteLength;
  }
  return out;
}

/** An HF LLaMA config.json for `config` (ids default to Llama-2's BOS 1 / EOS 2). */
export function hfConfigJson(config: LlamaConfig, options?: { bosId?: number; eosId?: number | number[] }): {
  [key: string]: unknown;
} {
  const c = config;
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_act: "silu",
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    ...(c.ropeScaling
      ? {
        rope_scaling: {
          rope_type: "llama3",
          factor: c.ropeScaling.factor,
          low_freq_factor: c.ropeScaling.lowFreqFactor,
          high_freq_factor: c.ropeScaling.highFreqFactor,
          original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings,
        },
      }
      : {}),
    tie_word_embeddings: c.tiedEmbeddings,
    bos_token_id: options?.bosId ?? 1,
    eos_token_id: options?.eosId ?? 2,
    torch_dtype: "float32",
  };
}

/** Options of {@link writeHfDirectory}. */
export interface HfDirOptions {
  /** Storage dtype of every tensor (default f32). */
  dtype?: "f32" | "f16" | "bf16";
  /** Number of safetensors shards; > 1 writes model.safetensors.index.json (default 1). */
  shards?: number;
  /** Written as tokenizer.json when given. */
  tokenizerJson?: unknown;
  /** Written as tokenizer_config.json when given (e.g. `{ chat_template }`). */
  tokenizerConfig?: unknown;
  bosId?: number;
  eosId?: number | number[];
  /** Merged over the generated config.json (a key set to undefined is dropped). */
  configOverrides?: Record<string, unknown>;
}

/**
 * Write canonical (interleaved-layout) weights as an HF LLaMA directory: config.json, then
 * model.safetensors, or `shards` files model-0000i-of-0000n.safetensors plus the index. wq/wk are
 * permuted to the rotate_half layout here (see the module comment), so callers pass the same
 * weights they give {@link writeLlama2c}.
 */
export async function writeHfDirectory(
  dir: string,
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  options?: HfDirOptions,
): Promise<void> {
  const dtype = options?.dtype ?? "f32";
  const stName = { f32: "F32", f16: "F16", bf16: "BF16" }[dtype];
  const shards = Math.max(1, options?.shards ?? 1);
  await Deno.mkdir(dir, { recursive: true });
  const cfg = {
    ...hfConfigJson(config, options),
    torch_dtype: { f32: "float32", f16: "float16", bf16: "bfloat16" }[dtype],
  };
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({ ...cfg, ...options?.configOverrides }, null, 2),
  );

  const all: SafetensorsInput[] = [...toHfTensors(config, weights)].map(([name, t]) => ({
    name,
    dtype: stName,
    shape: t.shape,
    data: t.data,
  }));
  if (shards === 1) {
    await Deno.writeFile(`${dir}/model.safetensors`, writeSafetensors(all));
  } else {
    const weightMap: Record<string, string> = {};
    let total = 0;
    const per = Math.ceil(all.length / shards);
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, "0")}-of-${
        String(shards).padStart(5, "0")
      }.safetensors`;
      const part = all.slice(s * per, (s + 1) * per);
      for (const t of part) weightMap[t.name] = file;
      const bytes = writeSafetensors(part);
      total += bytes.byteLength;
      await Deno.writeFile(`${dir}/${file}`, bytes);
    }
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2),
    );
  }
  if (options?.tokenizerJson !== undefined) {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(options.tokenizerJson));
  }
  if (options?.tokenizerConfig !== undefined) {
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(options.tokenizerConfig));
  }
}
