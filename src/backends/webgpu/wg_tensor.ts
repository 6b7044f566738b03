/**
 * The webgpu backend's tensor handle.
 * @module
 */
import type { Tensor, TensorUsage } from "../../tensor.ts";
import type { DType, Shape } from "../../types.ts";
import type { WeightLayout } from "./weights.ts";
import { byteLengthOf } from "../../dtype.ts";
import { numel } from "../../tensor.ts";
import { LlmError } from "../../errors.ts";

/** A tensor in device memory: one buffer (activations, caches, vectors) or a weight layout (matrices). */
export class WgTensor implements Tensor {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly byteLength: number;
  readonly usage: TensorUsage;
  readonly label: string;
  /** The data, for everything but weight matrices. */
  buffer?: GPUBuffer;
  /** Weight matrices: device layout (chunks, scales, parts). */
  weight?: WeightLayout;
  /** Small f32 weight vectors: a host copy, for tables the host builds (RoPE). */
  host?: Float32Array;
  /** Output tensors: the rows the last run read back, and how many bytes of them are current. */
  hostRows?: Uint8Array;
  hostFresh = 0;
  /** Activations: the mappable buffer downloads reuse. */
  readback?: GPUBuffer;

  constructor(dtype: DType, shape: Shape, usage: TensorUsage, label: string) {
    this.dtype = dtype;
    this.shape = [...shape];
    this.byteLength = byteLengthOf(dtype, numel(shape), label);
    this.usage = usage;
    this.label = label;
  }

  /** Row width (last dimension). */
  get width(): number {
    return this.shape[this.shape.length - 1];
  }
}

/** The buffer of a non-matrix tensor. */
export function bufferOf(t: Tensor): GPUBuffer {
  const b = (t as WgTensor).buffer;
  if (!b) throw new LlmError("INTERNAL", `webgpu: ${t.label} has no plain buffer (it is a weight matrix)`);
  return b;
}

/** The device layout of a weight matrix. */
export function weightOf(t: Tensor): WeightLayout {
  const w = (t as WgTensor).weight;
  if (!w) throw new LlmError("INTERNAL", `webgpu: ${t.label} is not a weight matrix on this backend`);
  return w;
}
