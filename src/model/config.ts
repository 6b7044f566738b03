/**
 * The model configuration and its glossary. One set of names everywhere (TS, WGSL, CUDA, C, tests):
 *
 * | name | meaning |
 * |---|---|
 * | dim | model (residual stream) width |
 * | hiddenDim | SwiGLU FFN inner width |
 * | nLayers | decoder layers |
 * | nHeads | query heads |
 * | nKvHeads | key/value heads (GQA: nHeads % nKvHeads == 0; MQA: 1) |
 * | headDim | per-head width (usually dim / nHeads, but not always) |
 * | kvDim | nKvHeads * headDim |
 * | seqLen | context length the model was trained for (the KV cache's default capacity) |
 * | pos | absolute position of a token in its sequence |
 * | wq, wk, wv, wo | attention projections, shaped (out, in) |
 * | w1, w2, w3 | FFN gate, down and up projections: out = w2(silu(w1 x) * w3 x) |
 * @module
 */
import { LlmError } from "../errors.ts";

/** Llama-3.1-style RoPE frequency scaling. */
export interface RopeScaling {
  /** The scaling scheme; only Llama-3.1's is supported. */
  readonly type: "llama3";
  /** Divisor applied to low (long-wavelength) frequencies. */
  readonly factor: number;
  /** Wavelengths above `originalMaxPositionEmbeddings / lowFreqFactor` are fully scaled. */
  readonly lowFreqFactor: number;
  /** Wavelengths below `originalMaxPositionEmbeddings / highFreqFactor` are left unscaled. */
  readonly highFreqFactor: number;
  /** Context length the model was pre-trained with before scaling. */
  readonly originalMaxPositionEmbeddings: number;
}

/**
 * How RoPE pairs dimensions within a head. `interleaved` rotates adjacent pairs (i, i+1): llama2.c,
 * GGUF (whose converter permutes wq/wk rows). `half` rotates (i, i + headDim/2): HF checkpoints'
 * rotate_half. The two are the same model under a fixed row permutation of wq and wk, so choosing the
 * style per checkpoint avoids permuting weights at load.
 */
export type RopeStyle = "interleaved" | "half";

/** A LLaMA-family decoder's shape and hyper-parameters. */
export interface LlamaConfig {
  /** Model (residual stream) width. */
  readonly dim: number;
  /** SwiGLU FFN inner width. */
  readonly hiddenDim: number;
  /** Number of decoder layers. */
  readonly nLayers: number;
  /** Number of query heads. */
  readonly nHeads: number;
  /** Number of key/value heads (GQA: nHeads % nKvHeads == 0; MQA: 1). */
  readonly nKvHeads: number;
  /** Per-head width (usually dim / nHeads, but not always). */
  readonly headDim: number;
  /** Number of tokens in the vocabulary (rows of the embedding and LM head). */
  readonly vocabSize: number;
  /** Context length the model was trained for (the KV cache's default capacity). */
  readonly seqLen: number;
  /** Epsilon added inside RMSNorm's square root. */
  readonly normEps: number;
  /** RoPE base frequency (theta), e.g. 10000. */
  readonly ropeTheta: number;
  /** How RoPE pairs dimensions within a head. */
  readonly ropeStyle: RopeStyle;
  /** Llama-3.1-style frequency scaling, if the model uses it. */
  readonly ropeScaling?: RopeScaling;
  /**
   * Per-pair frequency divisors (headDim/2 values) as GGUF stores them in `rope_freqs.weight` for
   * Llama-3.1; when present they take the place of `ropeScaling`.
   */
  readonly ropeFreqFactors?: readonly number[];
  /** The LM head reuses the token embedding (no separate `output` tensor). */
  readonly tiedEmbeddings: boolean;
  /**
   * SmoothQuant W8A8 checkpoints: every matmul inside a decoder layer quantizes its input per token to
   * int8 (`actQuant` on the op); the LM head does not. Part of the model, not of storage: the smoothing
   * folded into the weights was chosen for these numerics.
   */
  readonly activationQuant?: "int8";
}

/** nKvHeads * headDim. */
export function kvDim(c: LlamaConfig): number {
  return c.nKvHeads * c.headDim;
}

const LIMIT = 1 << 20; // no real LLaMA dimension comes near a million; larger values mean corruption

/** Check a config for internal consistency; throws MODEL_FORMAT naming the bad field. */
export function validateConfig(c: LlamaConfig, where: string): LlamaConfig {
  const ints: [string, number][] = [
    ["dim", c.dim],
    ["hiddenDim", c.hiddenDim],
    ["nLayers", c.nLayers],
    ["nHeads", c.nHeads],
    ["nKvHeads", c.nKvHeads],
    ["headDim", c.headDim],
    ["vocabSize", c.vocabSize],
    ["seqLen", c.seqLen],
  ];
  for (const [k, v] of ints) {
    if (!Number.isInteger(v) || v <= 0 || v > (k === "vocabSize" || k === "seqLen" ? 1 << 24 : LIMIT)) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: ${k} = ${v} is not a plausible value; the file is corrupt`,
      );
    }
  }
  if (c.nHeads % c.nKvHeads !== 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: nHeads (${c.nHeads}) is not a multiple of nKvHeads (${c.nKvHeads}); the file is corrupt`,
    );
  }
  if (c.headDim % 2 !== 0) {
    throw new LlmError("MODEL_FORMAT", `${where}: headDim = ${c.headDim} must be even for RoPE`);
  }
  if (!(c.normEps > 0 && c.normEps < 1)) {
    throw new LlmError("MODEL_FORMAT", `${where}: normEps = ${c.normEps} is not in (0, 1)`);
  }
  if (!(c.ropeTheta > 0 && Number.isFinite(c.ropeTheta))) {
    throw new LlmError("MODEL_FORMAT", `${where}: ropeTheta = ${c.ropeTheta} is not a positive number`);
  }
  return c;
}

/** Parameter count implied by a config (embeddings counted once when tied). */
export function parameterCount(c: LlamaConfig): number {
  const kd = kvDim(c);
  const q = c.nHeads * c.headDim;
  const perLayer = c.dim * q + 2 * c.dim * kd + q * c.dim + 3 * c.dim * c.hiddenDim + 2 * c.dim;
  return c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) + c.nLayers * perLayer + c.dim;
}
