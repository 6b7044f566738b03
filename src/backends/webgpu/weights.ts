/**
 * Weight matrices on the device (layout in kernels/wgsl/lib/weights.wgsl): rows of 16-byte chunks,
 * zero-padded, in one of five formats; quantized formats carry f16 scales. A matrix larger than the
 * adapter's storage binding limit is split by rows into parts, each its own buffers and dispatches.
 *
 * Uploads stream in: bytes that need no rearranging go straight into the part's buffer; otherwise
 * they land in a per-part staging buffer and, once a part is complete, one dispatch rearranges
 * (weight_repack: padding, GGUF q8_0/q4_0 blocks) or quantizes (weight_quantize: weight-only int8 per
 * channel / int4 in groups of 128, as the CUDA backend does) them, and the staging buffer is freed.
 * @module
 */
import type { DType } from "../../types.ts";
import { LlmError } from "../../errors.ts";
import { byteLengthOf } from "../../dtype.ts";
import { quantizesAtLoad } from "../../backend.ts";
import { type Gpu, STORAGE } from "./device.ts";

/** Device weight formats (lib/weights.wgsl FMT). */
export const FMT = { f32: 0, f16: 1, bf16: 2, q8: 3, q4: 4 } as const;
/** Elements per 16-byte chunk, by format. */
export const EPC: readonly number[] = [4, 8, 8, 16, 32];

/** One row range of a weight matrix. */
export interface WeightPart {
  /** Chunks, (rows, kc) vec4<u32>. */
  readonly q: GPUBuffer;
  /** f16 scales, (rows, sw) u32, for q8/q4. */
  readonly s?: GPUBuffer;
  /** First row of the matrix this part holds. */
  readonly row0: number;
  readonly rows: number;
  /** Staging for the part's file bytes while it is uploaded, when they need rearranging. */
  staging?: GPUBuffer;
  received: number;
}

/** A weight matrix's device layout. */
export interface WeightLayout {
  readonly fmt: number;
  /** Elements per scale (q8/q4). */
  readonly group: number;
  readonly m: number;
  readonly k: number;
  /** Chunks per row. */
  readonly kc: number;
  /** Scale words (2 f16) per row. */
  readonly sw: number;
  readonly parts: WeightPart[];
  /** How staged bytes become the layout: none (written directly), repack mode, or quantize. */
  readonly prepare: { kind: "none" } | { kind: "repack"; mode: number; src: number } | {
    kind: "quantize";
    src: number;
  };
  /** File bytes per row. */
  readonly srcRowBytes: number;
}

const SRC_FLOAT: Partial<Record<DType, number>> = { f32: 0, f16: 1, bf16: 2 };

/** Device format of a matrix of `dtype` (k columns) under the weight-quantization option. */
export function planFormat(
  dtype: DType,
  k: number,
  quant: "int8" | "int4" | undefined,
): { fmt: number; group: number; prepare: WeightLayout["prepare"] } {
  const src = SRC_FLOAT[dtype];
  if (src !== undefined) {
    if (quant === "int8" && quantizesAtLoad(quant, k)) {
      return { fmt: FMT.q8, group: k, prepare: { kind: "quantize", src } };
    }
    if (quant === "int4" && quantizesAtLoad(quant, k)) {
      return { fmt: FMT.q4, group: 128, prepare: { kind: "quantize", src } };
    }
    const fmt = dtype === "f32" ? FMT.f32 : dtype === "f16" ? FMT.f16 : FMT.bf16;
    return {
      fmt,
      group: 0,
      prepare: k % EPC[fmt] === 0 ? { kind: "none" } : { kind: "repack", mode: 0, src },
    };
  }
  if (dtype === "q8_0") return { fmt: FMT.q8, group: 32, prepare: { kind: "repack", mode: 1, src: 0 } };
  if (dtype === "q4_0") return { fmt: FMT.q4, group: 32, prepare: { kind: "repack", mode: 2, src: 0 } };
  throw new LlmError(
    "UNSUPPORTED_DTYPE",
    `webgpu: weight dtype ${dtype} is not supported (f32, f16, bf16, q8_0, q4_0); re-quantize the model`,
  );
}

/** Allocate a weight matrix's buffers, split by rows so every part fits a storage binding. */
export function allocWeight(
  gpu: Gpu,
  dtype: DType,
  shape: readonly number[],
  label: string,
  options: { quant: "int8" | "int4" | undefined; maxBinding: number },
): WeightLayout {
  const [m, k] = shape;
  const { fmt, group, prepare } = planFormat(dtype, k, options.quant);
  const kc = Math.ceil(k / EPC[fmt]);
  const sw = fmt >= FMT.q8 ? Math.ceil(k / group / 2) : 0;
  const srcRowBytes = byteLengthOf(dtype, k, label);
  const rowBytes = kc * 16;
  // rows per part: fit the binding limit (chunks, staging) and keep staged parts 4-byte aligned
  const limit = Math.min(options.maxBinding, gpu.limits.maxBinding, gpu.limits.maxBuffer);
  let per = Math.floor(limit / Math.max(rowBytes, prepare.kind === "none" ? 0 : srcRowBytes));
  if (per >= 4) per -= per % 4;
  if (per < 1) {
    throw new LlmError(
      "OUT_OF_MEMORY",
      `webgpu: one row of ${label} (${rowBytes} bytes) exceeds the storage binding limit ${limit}`,
    );
  }
  const parts: WeightPart[] = [];
  try {
    for (let row0 = 0; row0 < m; row0 += per) {
      const rows = Math.min(per, m - row0);
      const tag = m > per ? `${label}[${row0}:${row0 + rows}]` : label;
      const q = gpu.buffer(rows * rowBytes, STORAGE, tag);
      const part: WeightPart = { q, row0, rows, received: 0 };
      parts.push(part);
      if (sw) (part as { s?: GPUBuffer }).s = gpu.buffer(rows * sw * 4, STORAGE, `${tag} scales`);
      if (prepare.kind !== "none") part.staging = gpu.buffer(rows * srcRowBytes, STORAGE, `${tag} staging`);
    }
  } catch (e) {
    for (const p of parts) freePart(gpu, p);
    throw e;
  }
  return { fmt, group, m, k, kc, sw, parts, prepare, srcRowBytes };
}

/** Free a part's buffers. */
export function freePart(gpu: Gpu, p: WeightPart): void {
  gpu.destroy(p.q);
  gpu.destroy(p.s);
  gpu.destroy(p.staging);
  p.staging = undefined;
}

/** Whether every part has been uploaded and prepared. */
export function weightReady(w: WeightLayout): boolean {
  return w.parts.every((p) => p.received >= p.rows * w.srcRowBytes && !p.staging);
}

/**
 * Write `bytes` (the matrix's file bytes from `offset`) into the parts they cover; a part whose
 * staged bytes are complete is rearranged at once.
 */
export function uploadWeight(
  gpu: Gpu,
  w: WeightLayout,
  bytes: Uint8Array,
  offset: number,
  label: string,
): void {
  if (offset % 4 !== 0) {
    throw new LlmError(
      "INTERNAL",
      `webgpu: upload of ${label} at byte ${offset}: offsets must be multiples of 4`,
    );
  }
  for (const p of w.parts) {
    const start = p.row0 * w.srcRowBytes, end = start + p.rows * w.srcRowBytes;
    const a = Math.max(start, offset), b = Math.min(end, offset + bytes.byteLength);
    if (a >= b) continue;
    const piece = bytes.subarray(a - offset, b - offset);
    const dst = p.staging ?? p.q;
    writePadded(gpu, dst, a - start, piece);
    p.received += piece.byteLength;
    if (p.staging && p.received >= p.rows * w.srcRowBytes) prepare(gpu, w, p, label);
  }
}

/** queue.writeBuffer, padding a piece whose length is not a multiple of 4. */
export function writePadded(gpu: Gpu, dst: GPUBuffer, at: number, piece: Uint8Array): void {
  if (piece.byteLength % 4 === 0 && piece.byteOffset % 4 === 0) {
    gpu.device.queue.writeBuffer(dst, at, piece as Uint8Array<ArrayBuffer>);
    return;
  }
  const padded = new Uint8Array(Math.ceil(piece.byteLength / 4) * 4);
  padded.set(piece);
  gpu.device.queue.writeBuffer(dst, at, padded);
}

function prepare(gpu: Gpu, w: WeightLayout, p: WeightPart, label: string): void {
  const d = gpu.device;
  const enc = d.createCommandEncoder({ label: `prepare ${label}` });
  const pass = enc.beginComputePass();
  const prep = w.prepare;
  const dummy = p.s ?? gpu.buffer(16, STORAGE, "no scales");
  let params: GPUBuffer;
  if (prep.kind === "quantize") {
    const pipe = gpu.pipeline("weight_quantize", { SRC: prep.src, OUT: w.fmt, G: w.group });
    params = gpu.params("weight_quantize", { K: w.k, KC: w.kc, SW: w.sw, m: p.rows }, label);
    pass.setPipeline(pipe.pipeline);
    pass.setBindGroup(0, bindGroup(gpu, pipe.layout, [params, p.staging!, p.q, dummy]));
    dispatch2d(gpu, pass, w.sw, p.rows);
  } else if (prep.kind === "repack") {
    const pipe = gpu.pipeline("weight_repack", { MODE: prep.mode, SRC: prep.src });
    params = gpu.params("weight_repack", { K: w.k, KC: w.kc, SW: w.sw, m: p.rows }, label);
    pass.setPipeline(pipe.pipeline);
    pass.setBindGroup(0, bindGroup(gpu, pipe.layout, [params, p.staging!, p.q, dummy]));
    dispatch2d(gpu, pass, Math.ceil((prep.mode === 0 ? w.kc : w.sw) / 64), p.rows);
  } else {
    throw new LlmError("INTERNAL", `webgpu: ${label} needs no preparation`);
  }
  pass.end();
  d.queue.submit([enc.finish()]);
  // destroying after submit is safe: the buffers live until the queued work is done
  gpu.destroy(p.staging);
  p.staging = undefined;
  gpu.destroy(params);
  if (!p.s) gpu.destroy(dummy);
}

/** A bind group over whole buffers, bindings 0..n-1. */
export function bindGroup(gpu: Gpu, layout: GPUBindGroupLayout, buffers: readonly GPUBuffer[]): GPUBindGroup {
  return gpu.device.createBindGroup({
    layout,
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
}

/** Dispatch (x, rows) workgroups; rows past the per-dimension limit fold into z (kernels unfold them). */
function dispatch2d(gpu: Gpu, pass: GPUComputePassEncoder, x: number, rows: number): void {
  const max = gpu.limits.maxWorkgroups;
  if (x > max) throw new LlmError("INTERNAL", `webgpu: dispatch of ${x} workgroups exceeds ${max}`);
  const y = Math.min(rows, max);
  pass.dispatchWorkgroups(x, y, Math.ceil(rows / y));
}
