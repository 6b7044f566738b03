/**
 * Models that never touch the disk: canonical weights (tests/_synth.ts) stored in any dtype behind
 * in-memory byte sources, with a placeholder tokenizer of the model's vocabulary. For tests that
 * compare backends on the same weights, and the host model of weight-only quantization.
 * @module
 */
import type { DType } from "../src/types.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { ModelFile, TensorEntry } from "../src/format/model_file.ts";
import type { Tokenizer, TokenizerData } from "../src/format/tokenizer.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { createTokenizer } from "../src/format/tokenizer_load.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { quantize, roundF16 } from "../src/dtype.ts";
import { quantizesAtLoad } from "../src/backend.ts";

/** An spm vocabulary of `n` pieces: `<unk>`, `<s>` (BOS 1), `</s>` (EOS 2), then `▁{prefix}3`, `▁{prefix}4`, ... */
export function placeholderVocab(n: number, prefix = "w"): TokenizerData {
  const tokens = Array.from({ length: n }, (_, i) => i < 3 ? ["<unk>", "<s>", "</s>"][i] : `▁${prefix}${i}`);
  return { kind: "spm", tokens, scores: tokens.map((_, i) => -i), bosId: 1, eosId: 2, unkId: 0 };
}

/** A tokenizer of `n` placeholder pieces (BOS 1, EOS 2). */
export function placeholderTokenizer(n: number): Tokenizer {
  return createTokenizer(placeholderVocab(n));
}

/** A model whose matrices are stored as `dtype` (norms f32), from canonical f32 weights. */
export function memoryModel(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  dtype: DType,
): ModelFile {
  return inMemoryModel(config, weights, (shape) => shape.length === 1 ? "f32" : dtype);
}

/** Every tensor `config` requires, stored as `dtypeOf(shape, name)` behind an in-memory byte source. */
function inMemoryModel(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  dtypeOf: (shape: readonly number[], name: string) => DType,
): ModelFile {
  const tensors = new Map<string, TensorEntry>();
  for (const name of requiredTensors(config)) {
    const shape = expectedShape(config, name);
    const d = dtypeOf(shape, name);
    const bytes = quantize(d, weights.get(name)!);
    tensors.set(name, {
      name,
      dtype: d,
      shape,
      source: bytesSource(bytes, name),
      byteOffset: 0,
      byteLength: bytes.byteLength,
    });
  }
  return { format: "gguf", config, tensors, metadata: {}, close() {} };
}

/**
 * Host model of weight-only quantization (the CUDA and WebGPU backends' schemes): int8 per output
 * channel, int4 in groups of 128 with the scale rounded to f16; round half away from zero.
 */
export function simulateQuant(w: Float32Array, rows: number, scheme: "int8" | "int4"): Float32Array {
  const k = w.length / rows, group = scheme === "int8" ? k : 128, qmax = scheme === "int8" ? 127 : 7;
  const out = new Float32Array(w.length);
  const away = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));
  for (let g = 0; g < w.length; g += group) {
    let amax = 0;
    for (let i = 0; i < group; i++) amax = Math.max(amax, Math.abs(w[g + i]));
    const scale = roundF16(amax / qmax);
    for (let i = 0; i < group; i++) {
      if (scale === 0) continue;
      const q = scheme === "int8"
        ? Math.max(-127, Math.min(127, away(Math.fround(w[g + i] / scale))))
        : Math.max(0, Math.min(15, away(Math.fround(w[g + i] / scale)) + 8)) - 8;
      out[g + i] = scale * q;
    }
  }
  return out;
}

/** Whether the backends quantize a matrix of `k` columns under `scheme` (else they keep it as it is). */
export function quantizable(k: number, scheme: "int8" | "int4"): boolean {
  return quantizesAtLoad(scheme, k);
}

/** Canonical weights with every quantizable matrix replaced by its quantized-then-dequantized values. */
export function quantizedWeights(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  scheme: "int8" | "int4",
): Map<string, Float32Array> {
  return new Map([...weights].map(([name, w]) => {
    const shape = expectedShape(config, name);
    return [
      name,
      shape.length === 2 && quantizable(shape[1], scheme) ? simulateQuant(w, shape[0], scheme) : w,
    ];
  }));
}

/**
 * A model for int8-activation (W8A8) tests: 2-D weights whose rows are a multiple of 32 wide are stored as
 * `dtype` (q8_0 / q4_0 blocks), everything else (norms, odd widths, and the LM head when `floatHead`) as f32.
 */
export function blockQuantModel(
  config: LlamaConfig,
  weights: Map<string, Float32Array>,
  opts: { dtype: DType; floatHead?: boolean },
): ModelFile {
  return inMemoryModel(
    config,
    weights,
    (shape, name) =>
      shape.length === 2 && shape[1] % 32 === 0 && !(opts.floatHead && name === "output")
        ? opts.dtype
        : "f32",
  );
}
