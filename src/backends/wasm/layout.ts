/**
 * How each weight dtype is stored in wasm memory, and how uploaded bytes become that layout:
 *
 * | source | wasm layout | how |
 * |---|---|---|
 * | f32, f16, bf16 | same bytes (WF f32/f16/bf16) | copied as they arrive |
 * | q8_0 | int8 quants + f32 scale per 32 + i32 bias per 32 (WF q8, group 32) | staged, repacked (prep.c) |
 * | q4_0 | nibbles (ggml order) + f32 scale per 32 (WF q4, group 32) | staged, repacked |
 * | float + weightQuant int8 | int8 per output channel (WF q8, group k) | staged, quantized (prep.c) |
 * | float + weightQuant int4 | int4 groups of 128 (WF q4, group 128) | staged, quantized |
 * | q4_1, q4_k, q6_k | f32 (WF f32) | staged on the host, dequantized (src/dtype.ts) |
 *
 * Quantization at load applies to 2-D float weights whose rows divide into its groups (int8: k % 32,
 * int4: k % 128), as on the cuda backend; others stay float.
 * @module
 */
import type { DType, Shape } from "../../types.ts";
import { byteLengthOf } from "../../dtype.ts";
import { WF } from "./program.ts";

/** The storage plan of one tensor. */
export interface Layout {
  /** Weight format for the kernels (WF). */
  readonly fmt: number;
  /** Bytes of data (quants, or the plain tensor). */
  readonly dataBytes: number;
  /** Bytes of f32 scales and of q8 block biases (0 when none). */
  readonly scaleBytes: number;
  readonly biasBytes: number;
  /** Scale group in elements (0 for float formats). */
  readonly group: number;
  /** How uploads are handled: copied in place, staged and repacked/quantized, or dequantized on the host. */
  readonly prepare: "none" | "q8_0" | "q4_0" | "int8" | "int4" | "dequant";
}

const FLOAT: Partial<Record<DType, number>> = { f32: WF.f32, f16: WF.f16, bf16: WF.bf16 };

/** Plan a tensor's storage. `weightQuant` applies to 2-D float weights only. */
export function planLayout(
  dtype: DType,
  shape: Shape,
  options: { weights: boolean; weightQuant?: "int8" | "int4" },
): Layout {
  const n = shape.reduce((a, b) => a * b, 1);
  const plain = (fmt: number): Layout => ({
    fmt,
    dataBytes: byteLengthOf(dtype, n),
    scaleBytes: 0,
    biasBytes: 0,
    group: 0,
    prepare: "none",
  });
  if (!options.weights || shape.length !== 2) return plain(FLOAT[dtype] ?? WF.f32);
  const [m, k] = shape;
  const float = FLOAT[dtype];
  if (float !== undefined) {
    if (options.weightQuant === "int8" && k % 32 === 0) {
      return {
        fmt: WF.q8,
        dataBytes: m * k,
        scaleBytes: m * 4,
        biasBytes: (m * k / 32) * 4,
        group: k,
        prepare: "int8",
      };
    }
    if (options.weightQuant === "int4" && k % 128 === 0) {
      return {
        fmt: WF.q4,
        dataBytes: m * k / 2,
        scaleBytes: (m * k / 128) * 4,
        biasBytes: 0,
        group: 128,
        prepare: "int4",
      };
    }
    return plain(float);
  }
  if (dtype === "q8_0") {
    return {
      fmt: WF.q8,
      dataBytes: n,
      scaleBytes: (n / 32) * 4,
      biasBytes: (n / 32) * 4,
      group: 32,
      prepare: "q8_0",
    };
  }
  if (dtype === "q4_0") {
    return {
      fmt: WF.q4,
      dataBytes: n / 2,
      scaleBytes: (n / 32) * 4,
      biasBytes: 0,
      group: 32,
      prepare: "q4_0",
    };
  }
  return { fmt: WF.f32, dataBytes: n * 4, scaleBytes: 0, biasBytes: 0, group: 0, prepare: "dequant" };
}

/** Bytes a layout occupies in wasm memory, allocation padding included. */
export function layoutBytes(l: Layout): number {
  const pad = (b: number): number => b ? Math.ceil(b / 64) * 64 : 0;
  return pad(l.dataBytes) + pad(l.scaleBytes) + pad(l.biasBytes);
}
