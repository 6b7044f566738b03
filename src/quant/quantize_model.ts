/**
 * A float model (llama2.c, GGUF or HF directory) to a quantized GGUF that llama.cpp loads too: the
 * metadata (with the tokenizer), and each tensor's bytes produced only when the writer reaches it, so a
 * multi-gigabyte model is held one tensor at a time.
 *
 * HF checkpoints rotate RoPE halves (i, i + headDim/2); GGUF's llama graph rotates adjacent pairs, so
 * wq and wk rows are permuted per head on the way (interleaved row 2i = HF row i, 2i+1 = HF row
 * i + headDim/2), as llama.cpp's converter does. llama2.c and GGUF sources are interleaved already.
 *
 * SmoothQuant (Xiao et al., 2023): with calibration maxima `max|X_j|` of a matmul's input channels and
 * `max|W_j|` of the weight columns, `s_j = max|X_j|^alpha / max|W_j|^(1-alpha)`; the input is divided by
 * s (folded into the RMSNorm weight that produces it) and the weight columns multiplied by it, which
 * leaves the product unchanged and moves activation outliers into the weights. wq/wk/wv share
 * attn_norm's output and w1/w3 share ffn_norm's, so each group gets one s from the maxima over its
 * weights. w2's input `silu(w1 x) * (w3 x)` is linear in w3's rows, so its s divides those rows; wo's
 * input is attention over v, linear in wv's rows, so its s divides them, one s per value channel shared
 * by the query heads of its GQA group. Every fold is exact in real arithmetic.
 * @module
 */
import type { DType } from "../types.ts";
import type { LlamaConfig } from "../model/config.ts";
import type { ModelFile, TensorEntry } from "../format/model_file.ts";
import type { TokenizerData } from "../format/tokenizer.ts";
import type { ActivationStats } from "./calibrate.ts";
import type { GgufLazyTensorInput, GgufValue, GgufWriteOptions } from "../format/gguf_write.ts";
import { ggufMetadataForLlama, ggufTensorName, ropeFreqsTensor } from "../format/gguf_write.ts";
import { expectedShape, requiredTensors } from "../format/model_file.ts";
import { LlmError } from "../errors.ts";
import { dequantize, quantize } from "../dtype.ts";
import { ropeInvFreq } from "../model/rope.ts";
import {
  ggufFileType,
  matrixDType,
  QUANTIZATION_KEY,
  quantizeMatrix,
  type QuantScheme,
  SMOOTHQUANT_ALPHA_KEY,
} from "./schemes.ts";

/** Options of {@link planQuantizedGguf}. */
export interface QuantizeOptions {
  /** The scheme for weight matrices. */
  readonly scheme: QuantScheme;
  /** Written as `tokenizer.ggml.*` so the file is self-contained (llama.cpp needs it). */
  readonly tokenizer?: TokenizerData;
  /**
   * Calibration maxima ({@link collectActivationStats}): smooths before quantizing. Required by
   * `w8a8_smoothquant`; with other schemes it gives smoothed weight-only files (and with `f32`, a
   * smoothed float model with the same outputs).
   */
  readonly activations?: ActivationStats;
  /** SmoothQuant migration strength in [0, 1] (default 0.5). */
  readonly alpha?: number;
  /** `general.name`. */
  readonly name?: string;
}

const FLOAT: readonly DType[] = ["f32", "f16", "bf16"];
/**
 * The smoothings: which calibration input (`stats`, by the weight that reads it) is divided by s in the
 * tensor that produces it, and which weights' columns are multiplied by s.
 */
const FOLDS = {
  attn: { stats: "wq", producer: "attn_norm", weights: ["wq", "wk", "wv"] },
  ffn: { stats: "w1", producer: "ffn_norm", weights: ["w1", "w3"] },
  out: { stats: "wo", producer: "wv", weights: ["wo"] },
  down: { stats: "w2", producer: "w3", weights: ["w2"] },
} as const satisfies Record<string, { stats: string; producer: string; weights: readonly string[] }>;
type Fold = keyof typeof FOLDS;

/** SmoothQuant's per-channel factors; channels never active (or all-zero weights) keep s = 1. */
export function smoothingFactors(xMax: Float32Array, wMax: Float32Array, alpha: number): Float32Array {
  const s = new Float32Array(xMax.length);
  for (let j = 0; j < s.length; j++) {
    s[j] = xMax[j] > 0 && wMax[j] > 0 ? Math.max(xMax[j] ** alpha / wMax[j] ** (1 - alpha), 1e-5) : 1;
  }
  return s;
}

/** Per-column max |w| of a row-major `(rows, cols)` matrix, folded into `into`. */
export function columnAbsMax(w: Float32Array, cols: number, into: Float32Array): Float32Array {
  for (let i = 0; i < w.length; i++) {
    const a = Math.abs(w[i]), j = i % cols;
    if (a > into[j]) into[j] = a;
  }
  return into;
}

/** HF rotate-half rows of `nHeads` heads to GGUF's interleaved order (llama.cpp's converter permutation). */
export function halfToInterleavedRows(
  w: Float32Array,
  nHeads: number,
  headDim: number,
  cols: number,
): Float32Array {
  const out = new Float32Array(w.length), half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const dst = (h * headDim + 2 * i + j) * cols, src = (h * headDim + j * half + i) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

async function readF32(e: TensorEntry): Promise<Float32Array> {
  const out = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
  dequantize(e.dtype, await e.source.read(e.byteOffset, e.byteLength), out);
  return out;
}

/** The GGUF config: interleaved RoPE, Llama-3.1 scaling as `rope_freqs` divisors. */
function ggufConfig(c: LlamaConfig): LlamaConfig {
  const out: LlamaConfig = { ...c, ropeStyle: "interleaved" };
  if (!c.ropeScaling || c.ropeFreqFactors) return out;
  const plain = ropeInvFreq({ ...c, ropeScaling: undefined }), scaled = ropeInvFreq(c);
  return { ...out, ropeScaling: undefined, ropeFreqFactors: Array.from(plain, (f, j) => f / scaled[j]) };
}

function checkOptions(model: ModelFile, o: QuantizeOptions): number {
  for (const name of requiredTensors(model.config)) {
    const d = model.tensors.get(name)!.dtype;
    if (!FLOAT.includes(d)) {
      throw new LlmError(
        "UNSUPPORTED_DTYPE",
        `quantize needs float weights (f32, f16, bf16) but tensor ${name} is ${d}; quantize from the ` +
          `original float model, not an already-quantized file`,
      );
    }
  }
  const alpha = o.alpha ?? 0.5;
  if (!(alpha >= 0 && alpha <= 1)) {
    throw new LlmError(
      "BAD_REQUEST",
      `SmoothQuant alpha ${o.alpha} is outside [0, 1]; 0.5 is the usual value`,
    );
  }
  if (o.scheme === "w8a8_smoothquant" && !o.activations) {
    throw new LlmError(
      "BAD_REQUEST",
      "w8a8_smoothquant needs activation statistics: pass a calibration text (--calibration FILE)",
    );
  }
  if (o.activations) {
    for (const name of requiredTensors(model.config).filter((n) => /\.(wq|w1)$/.test(n))) {
      const m = o.activations.absMax.get(name);
      if (!m || m.length !== model.config.dim) {
        throw new LlmError(
          "BAD_REQUEST",
          `the activation statistics lack ${name}'s input (${model.config.dim} channels)`,
        );
      }
    }
  }
  return alpha;
}

/**
 * Plan the GGUF for `model` under a scheme: metadata (config, tokenizer, `llama_ts.quantization`,
 * llama.cpp's `general.file_type`) and lazily produced tensors, for `streamGguf`. Throws
 * UNSUPPORTED_DTYPE for a non-float source and BAD_REQUEST for bad options.
 */
export function planQuantizedGguf(
  model: ModelFile,
  options: QuantizeOptions,
): GgufWriteOptions<GgufLazyTensorInput> {
  const alpha = checkOptions(model, options);
  const src = model.config, config = ggufConfig(src), scheme = options.scheme;
  const smooth = options.activations;
  const factors = new Map<string, Promise<Float32Array | undefined>>(); // `l3.attn` -> s
  const group = src.nHeads / src.nKvHeads, hd = src.headDim;
  const colMax = async (layer: number, weights: readonly string[], cols: number): Promise<Float32Array> => {
    const m = new Float32Array(cols);
    for (const w of weights) columnAbsMax(await readF32(model.tensors.get(`l${layer}.${w}`)!), cols, m);
    return m;
  };
  /** wo's input channel (head h, i) to the value channel (kv head of h, i) that produces it. */
  const kvChannel = (c: number): number => Math.floor(Math.floor(c / hd) / group) * hd + (c % hd);

  const smoothing = (layer: number, fold: Fold): Promise<Float32Array | undefined> => {
    const key = `l${layer}.${fold}`;
    let s = factors.get(key);
    if (!s) {
      const x = smooth!.absMax.get(`l${layer}.${FOLDS[fold].stats}`);
      s = (async () => {
        if (!x) return undefined;
        const w = await colMax(layer, FOLDS[fold].weights, x.length);
        if (fold !== "out") return smoothingFactors(x, w, alpha);
        // GQA: a value channel feeds the same channel of every head in its group, so one s per kv channel
        const kd = src.nKvHeads * hd, xk = new Float32Array(kd), wk = new Float32Array(kd);
        for (let c = 0; c < x.length; c++) {
          const k = kvChannel(c);
          xk[k] = Math.max(xk[k], x[c]);
          wk[k] = Math.max(wk[k], w[c]);
        }
        return smoothingFactors(xk, wk, alpha);
      })();
      factors.set(key, s);
    }
    return s;
  };

  /** Fold every smoothing that touches this tensor: ÷ s where it produces a smoothed input, × s on the columns that consume one. */
  const applySmoothing = async (
    layer: number,
    base: string,
    w: Float32Array,
    cols: number,
  ): Promise<void> => {
    for (const fold of Object.keys(FOLDS) as Fold[]) {
      const f = FOLDS[fold];
      const producer = f.producer === base, consumer = (f.weights as readonly string[]).includes(base);
      if (!producer && !consumer) continue;
      const s = await smoothing(layer, fold);
      if (!s) continue;
      if (producer) {
        // a norm weight (one value per channel) or the rows of wv / w3
        const per = base.endsWith("norm") ? 1 : cols;
        for (let i = 0; i < w.length; i++) w[i] /= s[Math.floor(i / per)];
      } else if (fold === "out") {
        for (let i = 0; i < w.length; i++) w[i] *= s[kvChannel(i % cols)];
      } else {
        for (let i = 0; i < w.length; i++) w[i] *= s[i % cols];
      }
    }
  };

  const produce = async (name: string): Promise<Uint8Array> => {
    const e = model.tensors.get(name)!;
    let w = await readF32(e);
    const m = /^l(\d+)\.(\w+)$/.exec(name), base = m ? m[2] : name;
    if (src.ropeStyle === "half" && (base === "wq" || base === "wk")) {
      w = halfToInterleavedRows(w, base === "wq" ? src.nHeads : src.nKvHeads, src.headDim, src.dim);
    }
    if (smooth && m) await applySmoothing(Number(m[1]), base, w, e.shape[e.shape.length - 1]);
    if (e.shape.length === 1) return quantize("f32", w);
    const shape = [e.shape[0], e.shape[1]] as const;
    return quantizeMatrix(scheme, w, shape, e.dtype).data;
  };

  const tensors: GgufLazyTensorInput[] = requiredTensors(src).map((name) => {
    const e = model.tensors.get(name)!, shape = [...expectedShape(src, name)];
    const dtype: DType = shape.length === 1 ? "f32" : matrixDType(scheme, shape[1], e.dtype);
    return { name: ggufTensorName(name), dtype, shape, data: () => produce(name) };
  });
  const freqs = ropeFreqsTensor(config);
  if (freqs) tensors.push(freqs);

  const metadata: Record<string, GgufValue> = {
    "general.architecture": "llama",
    "general.name": options.name ?? "llama.ts quantized model",
    "general.file_type": { type: "u32", value: ggufFileType(scheme) },
    ...ggufMetadataForLlama(config, options.tokenizer),
  };
  if (scheme !== "f32" && scheme !== "f16") {
    metadata["general.quantization_version"] = { type: "u32", value: 2 };
    metadata[QUANTIZATION_KEY] = scheme;
  }
  if (smooth) {
    metadata[SMOOTHQUANT_ALPHA_KEY] = { type: "f32", value: alpha };
    metadata["llama_ts.smoothquant.calibration_tokens"] = { type: "u32", value: smooth.tokens };
  }
  return { metadata, tensors };
}
