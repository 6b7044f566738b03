/**
 * llama2.c checkpoints (Karpathy's `run.c` format), float32 only.
 *
 * Two layouts exist:
 * - **legacy (v0)**, what `stories260K.bin` and the tinyllamas use: a 28-byte header of 7 int32
 *   `(dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len)`, where a negative
 *   `vocab_size` means an untied classifier follows; then float32 arrays stacked over layers in the
 *   order token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, two dead RoPE
 *   tables (seq_len * head_size / 2 floats each), and wcls when untied.
 * - **v1** (`export.py --version 1`): magic "ak42" (u32 0x616b3432), int32 version 1, the same 7
 *   int32, a u8 shared-classifier flag, zero padding to 256 bytes; then float32 arrays in the order
 *   rms_att, rms_ffn, rms_final, token_embedding, wq, wk, wv, wo, w1, w2, w3, and wcls when untied.
 *   v2 (`--version 2`) stores int8 weights with per-group f32 scales, a layout none of our dtypes
 *   matches, so it is refused with a clear message.
 *
 * The weights are in Meta's layout, where RoPE rotates adjacent pairs: ropeStyle "interleaved".
 * Every per-layer tensor is a view (byte offset) into the stacked arrays: nothing is copied here.
 * @module
 */
import type { ByteSource } from "../io/byte_source.ts";
import { LlmError } from "../errors.ts";
import { type LlamaConfig, validateConfig } from "../model/config.ts";
import { type ModelFile, type TensorEntry, validateTensors } from "./model_file.ts";

/** "ak42" read as a little-endian u32: the magic of export.py's versioned files. */
const MAGIC_AK42 = 0x616b3432;
const LEGACY_HEADER_BYTES = 28;
const V1_HEADER_BYTES = 256;
const F32 = 4;

/** The raw header fields, as stored (vocab_size keeps its sign in legacy files). */
interface Header {
  version: 0 | 1;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  tied: boolean;
  rawVocabSize: number;
}

/**
 * Parse a llama2.c checkpoint (legacy v0 or export.py v1) into a validated {@link ModelFile}.
 * Reads only the header; tensors are located, not loaded.
 *
 * @example
 * ```ts
 * import { parseLlama2c } from "./llama2c.ts";
 * import { bytesSource } from "../io/byte_source.ts";
 * const bytes = new Uint8Array(await (await fetch("https://example.com/stories260K.bin")).arrayBuffer());
 * const model = await parseLlama2c(bytesSource(bytes, "stories260K.bin"));
 * console.log(model.config.dim, model.tensors.get("l0.wq")?.byteOffset);
 * model.close();
 * ```
 */
export async function parseLlama2c(src: ByteSource): Promise<ModelFile> {
  const header = await readHeader(src);
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen, tied } = header;
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;

  // Byte sizes of each stacked array. A product past 2^53 loses precision, but it then exceeds any
  // real file, so checkSize still rejects it before any offset is used.
  const sz = {
    tok_embd: vocabSize * dim * F32,
    attn_norm: nLayers * dim * F32,
    wq: nLayers * dim * dim * F32,
    wk: nLayers * kvDim * dim * F32,
    wv: nLayers * kvDim * dim * F32,
    wo: nLayers * dim * dim * F32,
    ffn_norm: nLayers * dim * F32,
    w1: nLayers * hiddenDim * dim * F32,
    w2: nLayers * dim * hiddenDim * F32,
    w3: nLayers * hiddenDim * dim * F32,
    norm: dim * F32,
    rope: header.version === 0 ? 2 * seqLen * (headDim / 2) * F32 : 0,
    output: tied ? 0 : vocabSize * dim * F32,
  };
  const order: (keyof typeof sz)[] = header.version === 0
    ? [
      "tok_embd",
      "attn_norm",
      "wq",
      "wk",
      "wv",
      "wo",
      "ffn_norm",
      "w1",
      "w2",
      "w3",
      "norm",
      "rope",
      "output",
    ]
    : ["attn_norm", "ffn_norm", "norm", "tok_embd", "wq", "wk", "wv", "wo", "w1", "w2", "w3", "output"];
  const start = {} as Record<keyof typeof sz, number>;
  let pos = header.version === 0 ? LEGACY_HEADER_BYTES : V1_HEADER_BYTES;
  for (const k of order) {
    start[k] = pos;
    pos += sz[k];
  }
  const expected = pos;
  checkSize(src, header, expected);

  const config: LlamaConfig = validateConfig({
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeStyle: "interleaved",
    tiedEmbeddings: tied,
  }, src.name);

  const tensors = new Map<string, TensorEntry>();
  const add = (name: string, shape: number[], byteOffset: number): void => {
    tensors.set(name, { name, dtype: "f32", shape, source: src, byteOffset, byteLength: shapeBytes(shape) });
  };
  add("tok_embd", [vocabSize, dim], start.tok_embd);
  add("norm", [dim], start.norm);
  if (!tied) add("output", [vocabSize, dim], start.output);
  // Per-layer views: layer i of a stacked array starts i slices in.
  const perLayer: [string, number[]][] = [
    ["attn_norm", [dim]],
    ["wq", [dim, dim]],
    ["wk", [kvDim, dim]],
    ["wv", [kvDim, dim]],
    ["wo", [dim, dim]],
    ["ffn_norm", [dim]],
    ["w1", [hiddenDim, dim]],
    ["w2", [dim, hiddenDim]],
    ["w3", [hiddenDim, dim]],
  ];
  for (let i = 0; i < nLayers; i++) {
    for (const [t, shape] of perLayer) {
      add(`l${i}.${t}`, shape, start[t as keyof typeof sz] + i * shapeBytes(shape));
    }
  }
  validateTensors(config, tensors, src.name);

  return {
    format: "llama2c",
    config,
    tensors,
    metadata: {
      version: header.version,
      dim,
      hidden_dim: hiddenDim,
      n_layers: nLayers,
      n_heads: nHeads,
      n_kv_heads: nKvHeads,
      vocab_size: header.rawVocabSize,
      seq_len: seqLen,
      shared_classifier: tied,
    },
    close(): void {
      src.close();
    },
  };
}

function shapeBytes(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1) * F32;
}

/** Read and sanity-check the header (legacy or v1); throws MODEL_FORMAT / UNSUPPORTED_DTYPE. */
async function readHeader(src: ByteSource): Promise<Header> {
  if (src.size < LEGACY_HEADER_BYTES) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: truncated: a llama2.c checkpoint needs at least a ${LEGACY_HEADER_BYTES}-byte header, ` +
        `file has ${src.size} bytes; download it again`,
    );
  }
  const head = await src.read(0, LEGACY_HEADER_BYTES);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (dv.getUint32(0, true) !== MAGIC_AK42) {
    const ints = [];
    for (let i = 0; i < 7; i++) ints.push(dv.getInt32(4 * i, true));
    return checkFields(src, 0, ints, undefined);
  }
  const version = dv.getInt32(4, true);
  if (version === 2) {
    throw new LlmError(
      "UNSUPPORTED_DTYPE",
      `${src.name}: llama2.c export version 2 (int8 weights with per-group scales) is not supported; ` +
        `export with --version 1 (float32) or the legacy format, or convert the model to GGUF (q8_0)`,
    );
  }
  if (version !== 1) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: llama2.c "ak42" header has version ${version}; only version 1 (float32) and the legacy ` +
        `header-less format are supported: re-export the model with export.py --version 1`,
    );
  }
  if (src.size < V1_HEADER_BYTES) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: truncated: a llama2.c v1 checkpoint needs a ${V1_HEADER_BYTES}-byte header, ` +
        `file has ${src.size} bytes; download it again`,
    );
  }
  // magic (4) + version (4) + 7 int32 (28) + shared-classifier u8 (1); the rest is padding.
  const full = await src.read(0, 37);
  const fdv = new DataView(full.buffer, full.byteOffset, full.byteLength);
  const ints = [];
  for (let i = 0; i < 7; i++) ints.push(fdv.getInt32(8 + 4 * i, true));
  return checkFields(src, 1, ints, full[36]);
}

/** Field sanity before any size arithmetic: corrupt headers must not produce huge or NaN sizes. */
function checkFields(src: ByteSource, version: 0 | 1, ints: number[], v1Shared: number | undefined): Header {
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, rawVocab, seqLen] = ints;
  const names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
  const where = `${src.name}: llama2.c header`;
  const shown = names.map((n, i) => `${n}=${ints[i]}`).join(", ");
  // Same bounds as validateConfig, checked here so the size computation below stays exact.
  const limits = [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 24, 1 << 24];
  for (let i = 0; i < 7; i++) {
    const v = i === 5 && version === 0 ? Math.abs(ints[i]) : ints[i];
    if (v <= 0 || v > limits[i]) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where} has ${names[i]} = ${ints[i]}, which is not plausible (${shown}); ` +
          `the file is corrupt or not a llama2.c checkpoint`,
      );
    }
  }
  if (dim % nHeads !== 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: dim ${dim} is not divisible by n_heads ${nHeads} (${shown}); the file is corrupt`,
    );
  }
  if (nHeads % nKvHeads !== 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads} (${shown}); the file is corrupt`,
    );
  }
  if ((dim / nHeads) % 2 !== 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: head size ${
        dim / nHeads
      } (dim / n_heads) is odd, RoPE needs it even (${shown}); the file is corrupt`,
    );
  }
  if (v1Shared !== undefined && v1Shared > 1) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: shared-classifier flag is ${v1Shared}, expected 0 or 1; the file is corrupt`,
    );
  }
  const tied = version === 0 ? rawVocab > 0 : v1Shared === 1;
  return {
    version,
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    vocabSize: Math.abs(rawVocab),
    seqLen,
    tied,
    rawVocabSize: rawVocab,
  };
}

/**
 * The format carries no tensor table, so the file size is the only integrity check: a short file is
 * truncated, and a long one means the header does not describe these weights (e.g. a flipped
 * vocab_size sign), which would silently load garbage.
 */
function checkSize(src: ByteSource, h: Header, expected: number): void {
  const shown = `dim=${h.dim}, hidden_dim=${h.hiddenDim}, n_layers=${h.nLayers}, n_heads=${h.nHeads}, ` +
    `n_kv_heads=${h.nKvHeads}, vocab_size=${h.rawVocabSize}, seq_len=${h.seqLen}`;
  if (expected > src.size) {
    // Far more than the file holds: the header, not the file length, is what is wrong.
    const hint = expected > 2 * src.size + (1 << 20)
      ? `; either the download stopped early (download it again) or the header (${shown}) is implausible ` +
        `for this file, which is then corrupt or not a llama2.c checkpoint`
      : `; download it again`;
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: truncated: expected ${expected} bytes, file has ${src.size}${hint}`,
    );
  }
  if (expected < src.size) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: the llama2.c header (${shown}) implies ${expected} bytes but the file has ${src.size} ` +
        `(${src.size - expected} extra); the header does not match the weights: the file is corrupt or ` +
        `not a llama2.c checkpoint`,
    );
  }
}
