/**
 * How each weight dtype is stored in wasm memory, and how uploaded bytes become that layout:
 *
 * | source | wasm layout | how |
 * |---|---|---|
 * | f32, f16, bf16 (1-D, or not weights) | same bytes | copied as they arrive |
 * | f32, f16, bf16 matrices | groups of 4 rows x chunks of 4 elements (WF f32/f16/bf16) | staged, repacked (prep.c) |
 * | q8_0 | q8x4: groups of 4 rows, per 32-block 4 f32 scales, 4 x 32 int8 (WF q8) | staged, repacked (prep.c) |
 * | q4_0 | q4x4: groups of 4 rows, per 32-block 4 f32 scales, 4 x 16 bytes of nibbles (WF q4) | staged, repacked |
 * | float + weightQuant int8 | q8x4 with one scale per output channel (repeated per block) | staged, quantized (prep.c) |
 * | float + weightQuant int4 | q4x4 with one scale per 128 (repeated per block) | staged, quantized |
 * | q4_1, q4_k, q6_k | as f32 matrices | staged on the host, dequantized (src/dtype.ts), repacked |
 *
 * Quantization at load applies to 2-D float weights whose rows divide into its groups (int8: k % 32,
 * int4: k % 128), as on the cuda backend; others stay float.
 * @module
 */
import type { DType, Shape } from "../../types.ts";
import { byteLengthOf } from "../../dtype.ts";
import { quantizesAtLoad } from "../../backend.ts";
import { WF } from "./program.ts";

/** The storage plan of one tensor. */
export interface Layout {
  /** Weight format for the kernels (WF). */
  readonly fmt: number;
  /** Bytes of data (the plain tensor, or the interleaved quant blocks with their scales). */
  readonly dataBytes: number;
  /** Scale group of the source quantization in elements (0 for float formats). */
  readonly group: number;
  /** How uploads are handled: copied in place, staged and repacked/quantized, or dequantized on the host. */
  readonly prepare: "none" | "float" | "q8_0" | "q4_0" | "int8" | "int4" | "dequant";
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
    group: 0,
    prepare: "none",
  });
  if (!options.weights || shape.length !== 2) return plain(FLOAT[dtype] ?? WF.f32);
  const [m, k] = shape;
  const float = FLOAT[dtype];
  // q8/q4: rows interleaved in groups of 4, 144 / 80 bytes per group and 32-block (kernels/wasm/prep.c)
  // floats: groups of 4 rows x chunks of 4 elements, k padded to a multiple of 4
  const floats = (fmt: number, prepare: Layout["prepare"]): Layout => ({
    fmt,
    dataBytes: Math.ceil(m / 4) * Math.ceil(k / 4) * 16 * (fmt === WF.f32 ? 4 : 2),
    group: 0,
    prepare,
  });
  const q8 = (group: number, prepare: Layout["prepare"]): Layout => ({
    fmt: WF.q8,
    dataBytes: Math.ceil(m / 4) * (k / 32) * 144,
    group,
    prepare,
  });
  const q4 = (group: number, prepare: Layout["prepare"]): Layout => ({
    fmt: WF.q4,
    dataBytes: Math.ceil(m / 4) * (k / 32) * 80,
    group,
    prepare,
  });
  if (float !== undefined) {
    if (options.weightQuant === "int8" && quantizesAtLoad("int8", k)) return q8(k, "int8");
    if (options.weightQuant === "int4" && quantizesAtLoad("int4", k)) return q4(128, "int4");
    return floats(float, "float");
  }
  if (dtype === "q8_0") return q8(32, "q8_0");
  if (dtype === "q4_0") return q4(32, "q4_0");
  return floats(WF.f32, "dequant");
}

/** Bytes a layout occupies in wasm memory, allocation padding included. */
export function layoutBytes(l: Layout): number {
  return Math.ceil(l.dataBytes / 64) * 64;
}
