/**
 * RoPE inverse frequencies, computed once per model on the host (f32, headDim/2 values) and uploaded,
 * so every backend rotates with the same numbers and Llama-3.1 scaling lives in one place.
 * @module
 */
import type { LlamaConfig } from "./config.ts";
import { LlmError } from "../errors.ts";

/** invFreq[j] = theta^(-2j/headDim), adjusted by Llama-3.1 scaling or GGUF `rope_freqs` factors. */
export function ropeInvFreq(c: LlamaConfig): Float32Array {
  const half = c.headDim / 2;
  const out = new Float32Array(half);
  for (let j = 0; j < half; j++) out[j] = 1 / Math.pow(c.ropeTheta, (2 * j) / c.headDim);
  if (c.ropeFreqFactors) {
    if (c.ropeFreqFactors.length !== half) {
      throw new LlmError(
        "MODEL_FORMAT",
        `rope_freqs has ${c.ropeFreqFactors.length} values, headDim ${c.headDim} needs ${half}`,
      );
    }
    for (let j = 0; j < half; j++) out[j] /= c.ropeFreqFactors[j];
    return out;
  }
  const s = c.ropeScaling;
  if (s) {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let j = 0; j < half; j++) {
      const f = out[j], wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        out[j] = f / s.factor;
      } else {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) /
          (s.highFreqFactor - s.lowFreqFactor);
        out[j] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  return out;
}
