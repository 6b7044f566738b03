/**
 * Quantization schemes of `cli.ts quantize` and how each is stored in GGUF. Every scheme is written with
 * GGUF's own block types, so llama.cpp loads every file we write:
 *
 * | scheme | matrices stored as | exactly |
 * |---|---|---|
 * | `q8_0`, `q4_0` | ggml's q8_0 / q4_0 | ggml's reference quantizers (a scale per 32 weights) |
 * | `int8_per_channel` | q8_0 | one f16 scale per output row (`f16(max|row| / 127)`), repeated in each of the row's blocks |
 * | `int4_g128` | q4_0 | one f16 scale per 128 weights of a row (`f16(max|group| / 7)`, q in -8..7), repeated in the group's 4 blocks |
 * | `w8a8_smoothquant` | q8_0 as `int8_per_channel`, after smoothing | plus per-token int8 activations at run time |
 * | `f32`, `f16` | f32 / f16 | plain conversion (reference files) |
 *
 * `int8_per_channel` and `int4_g128` round as the cuda backend's `weightQuant` does at load (`q =
 * round(w / f16 scale)`, halves away from zero), so a file and a load-time quantization of the same float
 * weights give the same numbers. A row of `int4_g128` whose length is not a multiple of 128 ends with a
 * shorter group (32, 64 or 96 weights). Matrices whose rows are not whole 32-blocks keep their float type
 * (as llama.cpp's quantizer also falls back). The key `llama_ts.quantization` names the scheme; readers
 * that do not know it still get exact weights from the block types.
 * @module
 */
import type { DType } from "../types.ts";
import { LlmError } from "../errors.ts";
import { f16ToF32, f32ToF16, quantize } from "../dtype.ts";

/** A scheme `quantize` can write. */
export type QuantScheme =
  | "f32"
  | "f16"
  | "q8_0"
  | "q4_0"
  | "int8_per_channel"
  | "int4_g128"
  | "w8a8_smoothquant";

/** Every scheme, in the order help texts list them. */
export const QUANT_SCHEMES: readonly QuantScheme[] = [
  "q8_0",
  "q4_0",
  "int8_per_channel",
  "int4_g128",
  "w8a8_smoothquant",
  "f16",
  "f32",
];

/** GGUF metadata key naming the scheme of a file we wrote (absent for plain f32/f16 files). */
export const QUANTIZATION_KEY = "llama_ts.quantization";
/** GGUF metadata key holding SmoothQuant's migration strength alpha (f32). */
export const SMOOTHQUANT_ALPHA_KEY = "llama_ts.smoothquant.alpha";

/** Schemes a file may name in `llama_ts.quantization`. */
const RECORDED: readonly QuantScheme[] = [
  "q8_0",
  "q4_0",
  "int8_per_channel",
  "int4_g128",
  "w8a8_smoothquant",
];

/** Parse a user's scheme name; BAD_REQUEST listing the known ones otherwise. */
export function parseScheme(s: string): QuantScheme {
  if ((QUANT_SCHEMES as readonly string[]).includes(s)) return s as QuantScheme;
  throw new LlmError(
    "BAD_REQUEST",
    `unknown quantization scheme "${s}"; choose one of ${QUANT_SCHEMES.join(", ")}`,
  );
}

/**
 * What a file's `llama_ts.quantization` value means for the graph: W8A8 files need int8-activation
 * matmuls. UNSUPPORTED_MODEL for a value this version does not know (it may change the numerics).
 */
export function activationQuantOf(value: unknown, where: string): { activationQuant?: "int8" } {
  if (value === undefined) return {};
  if (!(RECORDED as readonly unknown[]).includes(value)) {
    throw new LlmError(
      "UNSUPPORTED_MODEL",
      `${where}: ${QUANTIZATION_KEY} = ${JSON.stringify(value)} is not a scheme this version knows ` +
        `(${RECORDED.join(", ")}); update llama.ts or re-quantize the model`,
    );
  }
  return value === "w8a8_smoothquant" ? { activationQuant: "int8" } : {};
}

/** The GGUF dtype a `(rows, cols)` weight matrix gets under a scheme (its float dtype when rows are not whole blocks). */
export function matrixDType(scheme: QuantScheme, cols: number, floatDType: DType = "f32"): DType {
  if (scheme === "f32" || scheme === "f16") return scheme;
  if (cols % 32 !== 0) return floatDType;
  return scheme === "q4_0" || scheme === "int4_g128" ? "q4_0" : "q8_0";
}

/** llama.cpp's `general.file_type` (LLAMA_FTYPE) for a scheme, so its tools describe the file right. */
export function ggufFileType(scheme: QuantScheme): number {
  return { f32: 0, f16: 1, q4_0: 2, int4_g128: 2, q8_0: 7, int8_per_channel: 7, w8a8_smoothquant: 7 }[scheme];
}

/** Halves away from zero, as C's roundf (see dtype.ts: exact for f32 inputs, faster than Math.round). */
function roundAway(v: number): number {
  return Math.trunc(v + (v < 0 ? -0.5 : 0.5));
}

/**
 * Symmetric quantization of `w[start, start + n)` with one f16 scale: `d = f16(max|w| / qmax)`,
 * `q = clamp(round(w / d), -qmax - 1, qmax)` (f32 division, halves away from zero). Returns the f16 bits.
 */
function quantizeGroup(w: Float32Array, start: number, n: number, qmax: number, q: Int8Array): number {
  let amax = 0;
  for (let i = 0; i < n; i++) amax = Math.max(amax, Math.abs(w[start + i]));
  const bits = f32ToF16(Math.fround(amax / qmax)), d = f16ToF32(bits);
  for (let i = 0; i < n; i++) {
    q[i] = d === 0 ? 0 : Math.max(-qmax - 1, Math.min(qmax, roundAway(Math.fround(w[start + i] / d))));
  }
  return bits;
}

/** int8 per output channel, as q8_0 blocks that all carry their row's scale. `cols` must be a multiple of 32. */
export function quantizeInt8PerChannel(w: Float32Array, rows: number, cols: number): Uint8Array {
  checkMatrix(w, rows, cols, 32);
  const nb = cols / 32, out = new Uint8Array(rows * nb * 34), q = new Int8Array(cols);
  for (let r = 0; r < rows; r++) {
    const bits = quantizeGroup(w, r * cols, cols, 127, q);
    for (let b = 0; b < nb; b++) {
      const o = (r * nb + b) * 34;
      out[o] = bits & 0xff;
      out[o + 1] = bits >> 8;
      for (let i = 0; i < 32; i++) out[o + 2 + i] = q[b * 32 + i] & 0xff;
    }
  }
  return out;
}

/**
 * int4 in groups of `group` (default 128) weights along each row, as q4_0 blocks (nibble = q + 8) that
 * carry their group's scale. A row's last group may be shorter. `cols` must be a multiple of 32.
 */
export function quantizeInt4Groups(w: Float32Array, rows: number, cols: number, group = 128): Uint8Array {
  checkMatrix(w, rows, cols, 32);
  if (group % 32 !== 0 || group <= 0) {
    throw new LlmError("BAD_REQUEST", `int4 group ${group} is not a multiple of 32`);
  }
  const nb = cols / 32, out = new Uint8Array(rows * nb * 18), q = new Int8Array(group);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += group) {
      const n = Math.min(group, cols - g);
      const bits = quantizeGroup(w, r * cols + g, n, 7, q);
      for (let b = 0; b < n / 32; b++) {
        const o = (r * nb + g / 32 + b) * 18;
        out[o] = bits & 0xff;
        out[o + 1] = bits >> 8;
        for (let i = 0; i < 16; i++) out[o + 2 + i] = (q[b * 32 + i] + 8) | ((q[b * 32 + i + 16] + 8) << 4);
      }
    }
  }
  return out;
}

function checkMatrix(w: Float32Array, rows: number, cols: number, block: number): void {
  if (w.length !== rows * cols || cols % block !== 0) {
    throw new LlmError(
      "INTERNAL",
      `quantize: a (${rows}, ${cols}) matrix needs ${
        rows * cols
      } values in rows of whole ${block}-blocks, got ${w.length}`,
    );
  }
}

/** Quantize one `(rows, cols)` f32 matrix under a scheme: its GGUF dtype and bytes. */
export function quantizeMatrix(
  scheme: QuantScheme,
  w: Float32Array,
  shape: readonly [number, number],
  floatDType: DType = "f32",
): { dtype: DType; data: Uint8Array } {
  const [rows, cols] = shape;
  const dtype = matrixDType(scheme, cols, floatDType);
  if (dtype !== "q8_0" && dtype !== "q4_0") return { dtype, data: quantize(dtype, w) };
  switch (scheme) {
    case "q8_0":
    case "q4_0":
      return { dtype, data: quantize(dtype, w) };
    case "int8_per_channel":
    case "w8a8_smoothquant":
      return { dtype, data: quantizeInt8PerChannel(w, rows, cols) };
    case "int4_g128":
      return { dtype, data: quantizeInt4Groups(w, rows, cols, 128) };
  }
  throw new LlmError("INTERNAL", `quantizeMatrix: scheme ${scheme} has no block type`);
}
