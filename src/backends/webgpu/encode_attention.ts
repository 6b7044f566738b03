/**
 * RoPE / KV-cache write and attention nodes as dispatches, for NodeEncoder (encode.ts): the kernel per step
 * shape (prefill, decode with position splits, decode with the RoPE + KV write folded in), its workgroup
 * memory tile and the cache format.
 * @module
 */
import type { Tensor } from "../../tensor.ts";
import type { Node } from "./program.ts";
import type { Dispatch, DispatchSink, StepShape } from "./encode.ts";
import { bufferOf, type WgTensor } from "./wg_tensor.ts";
import { LlmError } from "../../errors.ts";

/** Where an encoder's dispatches go: the node encoder's sink, the step's shape, the step's dispatch list. */
export interface EncodeTarget {
  readonly sink: DispatchSink;
  readonly shape: StepShape;
  readonly out: Dispatch[];
}

/** A rope_kv node: RoPE of q and k and the KV-cache write (f32 / f16 / int8), one dispatch. */
export function encodeRope(n: Extract<Node, { kind: "rope_kv" }>, t: EncodeTarget): void {
  const { sink: e, shape: s, out } = t;
  const write = n.write;
  const kvDim = write ? (write.cache.k as WgTensor).width : 0;
  // a kv_write without rope carries no head dim (0): an int8 cache is quantized per (row, kv head), so the
  // head dim comes from its scales' width (kv heads); f32/f16 writes may cut the row into any units
  const scaleW = write?.cache.kScale ? (write.cache.kScale as WgTensor).width : 0;
  const hd = n.headDim || (scaleW ? kvDim / scaleW : kvDim % 8 === 0 ? 8 : 4);
  const half = n.style === "half" && (n.nHq > 0 || n.nHk > 0);
  const np = half ? 4 : 2;
  const kvf = write ? kvFormat(write.cache.k) : 0;
  const per = hd / (2 * np);
  if (hd % (2 * np) !== 0 || kvDim % 4 !== 0 || (kvf === 2 && 64 % per !== 0)) {
    throw new LlmError(
      "UNSUPPORTED_DTYPE",
      `webgpu: rope/kv_write needs head dim ${hd} to be a multiple of ${2 * np}` +
        (kvf === 2 ? ` with head dim / ${2 * np} dividing 64 (int8 cache)` : "") +
        ` and kv width ${kvDim} of 4`,
    );
  }
  const k = n.k ?? write?.k;
  const units = Math.max(n.nHq, n.nHk, write ? kvDim / hd : 0) * per;
  const w = e.dummyW;
  e.dispatch(
    out,
    n,
    "rope_kv_write",
    { KVF: kvf, STYLE: half ? 1 : 0 },
    {
      nHq: n.nHq,
      nHk: n.nHk,
      hd,
      qW: n.q ? (n.q as WgTensor).width : 0,
      kW: k ? (k as WgTensor).width : 0,
      write: write ? 1 : 0,
      kvDim,
      blockSize: write?.cache.blockSize ?? 1,
    },
    [
      n.q ? bufferOf(n.q) : w[0],
      k ? bufferOf(k) : w[1],
      write ? bufferOf(write.v) : e.dummyR,
      write ? bufferOf(write.cache.k) : w[2],
      write ? bufferOf(write.cache.v) : w[3],
      n.invFreq && (n.nHq || n.nHk) ? e.ctx.ropeTable(n.invFreq, hd) : e.dummyR,
      write?.cache.kScale ? bufferOf(write.cache.kScale) : w[4],
      write?.cache.vScale ? bufferOf(write.cache.vScale) : w[5],
    ],
    [Math.ceil(units / 64), s.nTokens, 1],
    "rope",
  );
}

/**
 * An attention node: the prefill kernel for many rows, else the decode kernel (positions split across
 * workgroups, then combined), which in a pure decode step also does the preceding RoPE + KV write.
 */
export function encodeAttention(n: Extract<Node, { kind: "attention" }>, t: EncodeTarget): void {
  const { sink: e, shape: s, out } = t;
  const hd = n.headDim, ng = n.nHeads / n.nKvHeads, kvf = kvFormat(n.cache.k);
  if (hd % 4 !== 0 || hd > 256 || ng > 8) {
    throw new LlmError(
      "UNSUPPORTED_DTYPE",
      `webgpu: attention needs headDim a multiple of 4 up to 256 and at most 8 query heads per KV head ` +
        `(got ${hd}, ${ng})`,
    );
  }
  const limit = e.ctx.gpu.limits.workgroupStorage;
  const kvDim = (n.cache.k as WgTensor).width;
  const rows = s.nTokens, decode = rows <= e.ctx.tuning.gemvMaxRows;
  // attention_prefill: 32 rows of q, a padded 16-position K / V tile, the scores, row and plan words
  const prefill = !decode && hd <= 128 && (32 * hd + 16 * (hd + 4) + 32 * 17 + 129) * 4 <= limit;
  const bufs = [bufferOf(n.q), bufferOf(n.cache.k), bufferOf(n.cache.v), bufferOf(n.out)];
  const r = e.dummyR;
  const scales = [
    n.cache.kScale ? bufferOf(n.cache.kScale) : e.dummyW[0],
    n.cache.vScale ? bufferOf(n.cache.vScale) : e.dummyW[1],
  ];
  const params = {
    nHeads: n.nHeads,
    nKvHeads: n.nKvHeads,
    kvDim,
    blockSize: n.cache.blockSize,
    scale: n.scale,
  };
  // a pure decode step folds the preceding RoPE + KV write into the attention dispatch
  const rope = n.rope;
  const fused = rope !== undefined && decode && s.distinct;
  if (rope && !fused) encodeRope(rope, t);
  if (prefill) {
    e.dispatch(
      out,
      n,
      "attention_prefill",
      { KVF: kvf, HD: hd },
      params,
      [
        ...bufs,
        n.cache.kScale ? bufferOf(n.cache.kScale) : r,
        n.cache.vScale ? bufferOf(n.cache.vScale) : r,
      ],
      [Math.ceil(rows / 32), n.nHeads, 1],
      "prefill",
    );
    return;
  }
  const splits = decode ? s.splits : 1;
  // the largest tile of positions whose K and V rows (padded by a word) fit workgroup memory
  const rw = hd / [1, 2, 4][kvf];
  let tp = 64;
  while (tp > 8 && (2 * tp * (rw + 1) + ng * hd + 3 * ng * tp + 3 * tp + 2 * hd + 2) * 4 > limit) tp /= 2;
  const constants = {
    KVF: kvf,
    HD: hd,
    NG: ng,
    TP: tp,
    ROPE: fused,
    STYLE: rope?.style === "half" ? 1 : 0,
  };
  e.dispatch(
    out,
    n,
    "attention_decode",
    constants,
    params,
    [
      ...bufs,
      e.ctx.partials,
      ...scales,
      fused ? bufferOf(rope.k!) : r,
      fused ? bufferOf(rope.write!.v) : r,
      fused && rope.invFreq ? e.ctx.ropeTable(rope.invFreq, hd) : r,
    ],
    [splits, n.nKvHeads, rows],
    fused ? "decode+rope" : "decode",
  );
  if (splits > 1) {
    e.dispatch(
      out,
      n,
      "attention_combine",
      {},
      { nHeads: n.nHeads, hd },
      [
        e.ctx.partials,
        bufferOf(n.out),
      ],
      [n.nHeads, rows, 1],
      "combine",
    );
  }
}

/** KV cache storage format of the kernels (0 f32, 1 f16, 2 int8 with per-(row, kv head) scales). */
export function kvFormat(t: Tensor): number {
  if (t.dtype === "f32") return 0;
  if (t.dtype === "f16") return 1;
  if (t.dtype === "i8") return 2;
  throw new LlmError(
    "UNSUPPORTED_DTYPE",
    `webgpu: KV cache dtype ${t.dtype} is not supported (f32, f16, i8)`,
  );
}
