/**
 * A compiled graph on the webgpu backend: per-step parameters in a ring of slots (one per step in
 * flight), one command buffer per step holding every dispatch, and the two ways to run steps:
 * - `run`: one step; when it has logit rows they are copied back in the same command buffer and mapped
 *   (the only wait);
 * - `decodeGreedy` (graphs ending in an argmax or sample op): decode steps queued back to back, each row
 *   taking its input token from the previous step's device choice for the same row (each step's slot
 *   carries its rows' sampling settings and uniforms, written ahead), so the host never waits per
 *   token. Deno 2.9.6's mapAsync blocks until the queue is idle and then sleeps about 10 ms, so the ids
 *   are read back per batch of steps: batch k+1 is submitted right after batch k's map call returns, and
 *   batch k+2 is encoded while the map completes; batches grow until one keeps the GPU busy
 *   `tuning.burstMs` (15 ms by default).
 * @module
 */
import { type CompiledGraph, type GreedyDecodeOptions, queuedStepRows } from "../../backend.ts";
import type { StepParams } from "../../ops.ts";
import type { Tensor } from "../../tensor.ts";
import type { Node } from "./program.ts";
import type { Dispatch, NodeEncoder, StepShape, Tuning } from "./encode.ts";
import { type Gpu, STORAGE } from "./device.ts";
import { bufferOf, type WgTensor } from "./wg_tensor.ts";
import { LlmError } from "../../errors.ts";
import { PICK_PARAMS } from "../../sample/pick.ts";

const HEADER = 16;
const SLOTS = 128;
const MAX_BATCH = 48;

/**
 * How many splits decode attention cuts each row's cached positions into (step[7]): one per
 * `splitTokens` positions, and at short contexts enough that splits x KV heads x rows reaches
 * `splitGroups` workgroups, each split keeping at least `splitMinTokens` positions; at most `maxSplits`.
 * Prefill steps (more than `gemvMaxRows` rows) do not split.
 */
export function attentionSplits(
  t: Tuning,
  step: { readonly rows: number; readonly maxLen: number; readonly kvHeads: number },
): number {
  const { rows, maxLen, kvHeads } = step;
  if (rows > t.gemvMaxRows || maxLen <= 1) return 1;
  const byLen = Math.ceil(maxLen / t.splitTokens);
  const fill = t.splitGroups > 0
    ? Math.min(
      Math.ceil(t.splitGroups / (Math.max(1, kvHeads) * Math.max(1, rows))),
      Math.ceil(maxLen / Math.max(1, t.splitMinTokens)),
    )
    : 1;
  return Math.max(1, Math.min(t.maxSplits, Math.max(byLen, fill)));
}

/** What the compiled graph was built for. */
export interface GraphLimits {
  readonly maxTokens: number;
  readonly maxLogitRows: number;
  /** Block-table entries per sequence (cache rows / block size). */
  readonly blocksPerSeq: number;
  /** Physical cache blocks (block-table entries must be below it). */
  readonly nBlocks: number;
  readonly blockSize: number;
  /** Rows of the embedding table (token ids must be below it), or 0 without embed. */
  readonly vocab: number;
  /** Highest position the RoPE tables cover. */
  readonly maxPos: number;
  readonly hasAttention: boolean;
  /** Fewest KV heads of the graph's attention nodes (1 without attention): workgroups per split and row. */
  readonly kvHeads: number;
  /** Most sequences (block-table rows) one step carries. */
  readonly maxSeqs: number;
  /** The graph reads logit rows' values (gather_rows): they must index the step's rows. */
  readonly gathers: boolean;
  /** The graph ends in an argmax or sample op (its output is the ids): decodeGreedy is possible. */
  readonly argmax: boolean;
}

/** A graph compiled for the webgpu backend. */
export class WgGraph implements CompiledGraph {
  readonly #gpu: Gpu;
  readonly #nodes: readonly Node[];
  readonly #encoder: NodeEncoder;
  readonly #limits: GraphLimits;
  readonly #tuning: Tuning;
  readonly #output?: WgTensor;
  readonly #owned: GPUBuffer[];
  readonly #stepBuf: GPUBuffer;
  readonly #tok: GPUBuffer;
  readonly #slotBgs: GPUBindGroup[];
  readonly #slotWords: number;
  readonly #slotBytes: number;
  readonly #seqCap: number;
  readonly #readback: GPUBuffer[];
  #trace?: { qs: GPUQuerySet; cap: number; count: number };
  #cache = new Map<string, Dispatch[]>();
  #slot = 0;
  #unsynced = 0;
  #busy = false;

  constructor(
    gpu: Gpu,
    nodes: readonly Node[],
    encoder: NodeEncoder,
    options: { limits: GraphLimits; tuning: Tuning; output?: Tensor; owned: GPUBuffer[] },
  ) {
    this.#gpu = gpu;
    this.#nodes = nodes;
    this.#encoder = encoder;
    this.#limits = options.limits;
    this.#tuning = options.tuning;
    this.#output = options.output as WgTensor | undefined;
    this.#owned = options.owned;
    const l = options.limits;
    this.#seqCap = l.maxSeqs;
    this.#slotWords = HEADER + 3 * l.maxTokens + l.maxLogitRows + this.#seqCap * l.blocksPerSeq +
      SAMPLING_WORDS * l.maxLogitRows;
    const align = Math.max(gpu.limits.storageAlign, 16);
    this.#slotBytes = Math.ceil((this.#slotWords * 4) / align) * align;
    this.#stepBuf = gpu.buffer(this.#slotBytes * SLOTS, STORAGE, "step slots");
    this.#tok = gpu.buffer(SLOTS * l.maxLogitRows * 4, STORAGE, "sampled tokens");
    this.#slotBgs = Array.from({ length: SLOTS }, (_, i) =>
      gpu.device.createBindGroup({
        label: `step slot ${i}`,
        layout: gpu.stepLayout,
        entries: [
          {
            binding: 0,
            resource: { buffer: this.#stepBuf, offset: i * this.#slotBytes, size: this.#slotBytes },
          },
          { binding: 1, resource: { buffer: this.#tok } },
        ],
      }));
    const rb = Math.max(this.#output?.byteLength ?? 0, MAX_BATCH * l.maxLogitRows * 4);
    this.#readback = [0, 1, 2].map((i) =>
      gpu.buffer(rb, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, `readback ${i}`)
    );
    if (this.#output) this.#output.hostRows = new Uint8Array(this.#output.byteLength);
  }

  /** Validate a step against the graph and write it into the next slot. */
  #write(
    step: StepParams,
    fromDevice: boolean,
    prevSlot: number,
    splitsOverride?: number,
  ): { slot: number; shape: StepShape } {
    const l = this.#limits;
    const n = step.nTokens, nl = step.logitRows.length;
    const bad = (why: string): never => {
      throw new LlmError("INTERNAL", `webgpu: step ${why}`);
    };
    if (!(n >= 0 && n <= l.maxTokens)) bad(`has ${n} rows; the graph takes 1..${l.maxTokens}`);
    if (nl > l.maxLogitRows) bad(`asks ${nl} logit rows; the graph has ${l.maxLogitRows}`);
    const nSeqs = step.maxBlocksPerSeq > 0 ? step.blockTables.length / step.maxBlocksPerSeq : 0;
    if (nSeqs > this.#seqCap) bad(`has ${nSeqs} sequences; at most ${this.#seqCap}`);
    if (l.hasAttention && step.maxBlocksPerSeq > l.blocksPerSeq) {
      bad(`block table of ${step.maxBlocksPerSeq} blocks exceeds ${l.blocksPerSeq}`);
    }
    const w = new Int32Array(this.#slotWords);
    const off = { tok: HEADER, pos: HEADER + l.maxTokens, seq: HEADER + 2 * l.maxTokens };
    const offLogit = HEADER + 3 * l.maxTokens, offBlock = offLogit + l.maxLogitRows;
    const offSampling = offBlock + this.#seqCap * l.blocksPerSeq;
    if (step.sampling) writeSampling(w, offSampling, step.sampling, nl);
    let maxLen = 0;
    for (let r = 0; r < n; r++) {
      const id = step.tokens[r];
      if (l.vocab && !(fromDevice && r === 0) && !(id >= 0 && id < l.vocab)) {
        throw new LlmError("BAD_REQUEST", `token id ${id} is outside the vocabulary (0..${l.vocab - 1})`);
      }
      const pos = step.positions[r], seq = step.seqIndex[r];
      if (!(pos >= 0 && pos <= l.maxPos)) bad(`position ${pos} is outside 0..${l.maxPos}`);
      if (l.hasAttention) {
        if (!(seq >= 0 && seq < nSeqs)) bad(`row ${r} names sequence ${seq} of ${nSeqs}`);
        const lb = Math.floor(pos / l.blockSize);
        if (lb >= step.maxBlocksPerSeq) {
          bad(`position ${pos} is past the block table (${step.maxBlocksPerSeq} blocks)`);
        }
        const b = step.blockTables[seq * step.maxBlocksPerSeq + lb];
        if (!(b >= 0 && b < l.nBlocks)) bad(`block ${b} is outside the cache (${l.nBlocks} blocks)`);
      }
      maxLen = Math.max(maxLen, pos + 1);
      w[off.tok + r] = id;
      w[off.pos + r] = pos;
      w[off.seq + r] = seq;
    }
    for (let i = 0; i < nl; i++) {
      const row = step.logitRows[i];
      if (l.gathers && !(row >= 0 && row < n)) bad(`logit row ${row} is not one of its ${n} rows`);
      w[offLogit + i] = row;
    }
    for (let s = 0; s < nSeqs; s++) {
      const width = Math.min(step.maxBlocksPerSeq, l.blocksPerSeq);
      w.set(
        step.blockTables.subarray(s * step.maxBlocksPerSeq, s * step.maxBlocksPerSeq + width),
        offBlock + s * l.blocksPerSeq,
      );
    }
    const t = this.#tuning;
    if (
      splitsOverride !== undefined &&
      !(Number.isInteger(splitsOverride) && splitsOverride >= 1 && splitsOverride <= t.maxSplits)
    ) {
      throw new LlmError(
        "BAD_REQUEST",
        `webgpu: profile splits ${splitsOverride} is not an integer in 1..${t.maxSplits} (tuning.maxSplits)`,
      );
    }
    const splits = n > t.gemvMaxRows
      ? 1
      : splitsOverride ?? attentionSplits(t, { rows: n, maxLen, kvHeads: l.kvHeads });
    const slot = this.#slot;
    this.#slot = (this.#slot + 1) % SLOTS;
    w.set([n, nl, nSeqs, l.blocksPerSeq, fromDevice ? 1 : 0, Math.max(prevSlot, 0), slot, splits]);
    w.set([off.tok, off.pos, off.seq, offLogit, offBlock, l.maxLogitRows, offSampling], 8);
    this.#gpu.device.queue.writeBuffer(this.#stepBuf, slot * this.#slotBytes, w);
    const distinct = new Set(step.seqIndex.subarray(0, n)).size === n;
    return { slot, shape: { nTokens: n, nLogits: nl, splits, distinct } };
  }

  #dispatches(shape: StepShape): Dispatch[] {
    const key = `${shape.nTokens}|${shape.nLogits}|${shape.splits}|${shape.distinct}`;
    let d = this.#cache.get(key);
    if (!d) {
      if (this.#cache.size > 64) this.#cache.clear();
      d = this.#encoder.encode(this.#nodes, shape);
      this.#cache.set(key, d);
    }
    return d;
  }

  /** One step's command buffer. */
  #encode(
    slot: number,
    shape: StepShape,
    extra?: (enc: GPUCommandEncoder) => void,
    passDesc?: GPUComputePassDescriptor,
  ): GPUCommandBuffer {
    const enc = this.#gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass(passDesc);
    // group 1 (the step slot) has one layout in every pipeline, so it stays bound across setPipeline
    pass.setBindGroup(1, this.#slotBgs[slot]);
    for (const d of this.#dispatches(shape)) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.group0);
      pass.dispatchWorkgroups(d.x, d.y, d.z);
    }
    pass.end();
    extra?.(enc);
    return enc.finish();
  }

  #enter(): void {
    if (this.#busy) {
      throw new LlmError("INTERNAL", "webgpu: a compiled graph runs one step or decode at a time");
    }
    this.#gpu.check("the previous step");
    this.#busy = true;
  }

  async run(step: StepParams): Promise<void> {
    this.#enter();
    try {
      const { slot, shape } = this.#write(step, false, -1);
      const out = this.#output;
      const rowBytes = out ? out.byteLength / out.shape[0] : 0;
      const bytes = out ? shape.nLogits * rowBytes : 0;
      const rb = this.#readback[0];
      if (out) out.hostFresh = 0;
      const cb = this.#encode(
        slot,
        shape,
        bytes ? (enc) => enc.copyBufferToBuffer(bufferOf(out!), 0, rb, 0, bytes) : undefined,
      );
      this.#gpu.device.queue.submit([cb]);
      if (bytes) {
        await rb.mapAsync(GPUMapMode.READ, 0, bytes);
        out!.hostRows!.set(new Uint8Array(rb.getMappedRange(0, bytes)));
        rb.unmap();
        out!.hostFresh = bytes;
        this.#unsynced = 0;
        this.#gpu.check("a step");
      } else if (++this.#unsynced >= SLOTS / 2) {
        // the slot ring must not wrap onto steps still queued
        await this.#gpu.idle();
        this.#unsynced = 0;
      }
    } finally {
      this.#busy = false;
    }
  }

  async *decodeGreedy(options: GreedyDecodeOptions): AsyncGenerator<Int32Array> {
    if (!this.#limits.argmax) {
      throw new LlmError(
        "INTERNAL",
        "webgpu: decodeGreedy needs a graph that ends in an argmax or sample op of its logits",
      );
    }
    this.#enter();
    const R = this.#limits.maxLogitRows;
    let prev = -1;
    let index = 0;
    let ended = false;
    let rbIndex = 0;
    let rows = 0;
    type Batch = { cbs: GPUCommandBuffer[]; rb: GPUBuffer; count: number; submitted: number };
    const build = (size: number): Batch | undefined => {
      const rb = this.#readback[rbIndex++ % this.#readback.length];
      const cbs: GPUCommandBuffer[] = [];
      while (cbs.length < size && !ended) {
        const step = index === 0 ? options.first : options.next(index);
        if (!step) {
          ended = true;
          break;
        }
        const n = rows = queuedStepRows("webgpu", step, index, rows);
        const { slot, shape } = this.#write(step, index > 0, prev);
        const at = cbs.length * R * 4;
        const tr = this.#trace && index < this.#trace.cap ? this.#trace : undefined;
        if (tr) tr.count = index + 1;
        cbs.push(
          this.#encode(
            slot,
            shape,
            (enc) => enc.copyBufferToBuffer(this.#tok, slot * R * 4, rb, at, n * 4),
            tr && {
              timestampWrites: {
                querySet: tr.qs,
                beginningOfPassWriteIndex: 2 * index,
                endOfPassWriteIndex: 2 * index + 1,
              },
            },
          ),
        );
        prev = slot;
        index++;
      }
      return cbs.length ? { cbs, rb, count: cbs.length, submitted: 0 } : undefined;
    };
    const submit = (b: Batch): void => {
      this.#gpu.device.queue.submit(b.cbs);
      b.cbs = [];
      b.submitted = performance.now();
    };
    let size = 2;
    let mapping: Promise<void> | undefined;
    let drained = false;
    try {
      let current = build(size);
      if (current) submit(current);
      let upcoming = current ? build(size *= 2) : undefined;
      while (current) {
        const t0 = performance.now();
        // blocks until every submitted step is done (Deno 2.9.6), then resolves ~10 ms later
        mapping = current.rb.mapAsync(GPUMapMode.READ, 0, current.count * R * 4);
        const blockEnd = performance.now();
        const following = upcoming;
        if (following) submit(following);
        // size the batch after next from how long this one kept the GPU busy
        const perStep = (blockEnd - current.submitted) / current.count;
        size = blockEnd - t0 > 0.5
          ? Math.max(1, Math.min(MAX_BATCH, Math.ceil(this.#tuning.burstMs / Math.max(perStep, 0.01))))
          : Math.min(MAX_BATCH, size * 2);
        upcoming = following ? build(size) : undefined;
        await mapping;
        mapping = undefined;
        const ids = new Int32Array(current.rb.getMappedRange(0, current.count * R * 4).slice(0));
        current.rb.unmap();
        this.#gpu.check("greedy decoding");
        for (let j = 0; j < current.count; j++) yield ids.slice(j * R, j * R + rows);
        current = following;
      }
      drained = true;
    } finally {
      // stopped early: let queued steps finish (they only write cache rows past where sequences stopped)
      if (mapping) await mapping.catch(() => {});
      for (const b of this.#readback) if (b.mapState === "mapped") b.unmap();
      if (!drained) await this.#gpu.idle();
      this.#unsynced = 0;
      this.#busy = false;
    }
  }

  /** The labels of the dispatches a step of this shape runs, in order (tests and benchmarks). */
  dispatchLabels(shape: StepShape): string[] {
    return this.#dispatches(shape).map((d) => d.label);
  }

  /**
   * Profiling (benchmarks only): the next decodeGreedy times the pass of each of its first `steps` steps
   * on the GPU (timestamp queries); {@link takeDecodeTrace} reads them back.
   */
  traceDecode(steps: number): void {
    if (!this.#gpu.hasTimestamps) {
      throw new LlmError("BACKEND_UNAVAILABLE", "webgpu: the device has no timestamp-query");
    }
    this.#trace?.qs.destroy();
    const cap = Math.max(1, Math.min(steps, 2048));
    this.#trace = {
      qs: this.#gpu.device.createQuerySet({ type: "timestamp", count: 2 * cap }),
      cap,
      count: 0,
    };
  }

  /**
   * The traced decode's steps: each pass's begin and end on the GPU's clock, in microseconds from the
   * first step's begin (what lies between one step's end and the next one's begin is the GPU's idle time
   * between steps, or the read-back copies). Ends the trace.
   */
  async takeDecodeTrace(): Promise<{ begin: number[]; end: number[] }> {
    const tr = this.#trace;
    if (!tr) throw new LlmError("INTERNAL", "webgpu: no decode trace (traceDecode first)");
    this.#trace = undefined;
    const n = tr.count;
    const begin: number[] = [], end: number[] = [];
    if (n > 0) {
      const t = await this.#readTimestamps(tr.qs, n, this.#gpu.device.createCommandEncoder());
      for (let i = 0; i < n; i++) {
        begin.push(Number(t[2 * i] - t[0]) / 1000);
        end.push(Number(t[2 * i + 1] - t[0]) / 1000);
      }
    }
    tr.qs.destroy();
    return { begin, end };
  }

  /**
   * The first `pairs` begin / end pairs of a timestamp query set: resolved at the end of `enc`, which is
   * submitted after `before`, and read back (nanoseconds).
   */
  async #readTimestamps(
    qs: GPUQuerySet,
    pairs: number,
    enc: GPUCommandEncoder,
    before: GPUCommandBuffer[] = [],
  ): Promise<BigUint64Array> {
    const gpu = this.#gpu;
    const resolve = gpu.buffer(16 * pairs, GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, "ts");
    const rb = gpu.buffer(16 * pairs, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "ts read");
    enc.resolveQuerySet(qs, 0, 2 * pairs, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, rb, 0, 16 * pairs);
    gpu.device.queue.submit([...before, enc.finish()]);
    await rb.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(rb.getMappedRange().slice(0));
    rb.unmap();
    gpu.destroy(resolve);
    gpu.destroy(rb);
    return t;
  }

  /**
   * Profiling (benchmarks only): device times of this step's command buffer, by timestamp-query.
   * Overwrites activations and cache rows the step touches. `splits` replaces attentionSplits' choice for
   * a decode step (1..tuning.maxSplits), to time decode attention split differently on the same graph.
   * - `mode: "reps"` (default): each dispatch repeated `reps` times in its own timed pass (weights that fit
   *   the GPU's cache stay there between repeats);
   * - `mode: "single"`: each dispatch once, in its own timed pass, in step order (what one step's
   *   dispatches take cold, without the gaps between them);
   * - `mode: "whole"`: the whole step, `reps` times, each in one timed pass as the decode step encodes it
   *   (boundaries between dispatches included): one entry labelled "step", `us` per step, and `hostUs`,
   *   the host's time to encode one step's command buffer.
   */
  async profile(
    step: StepParams,
    reps = 20,
    options?: { readonly splits?: number; readonly mode?: "reps" | "single" | "whole" },
  ): Promise<{ label: string; grid: number[]; us: number; hostUs?: number }[]> {
    const gpu = this.#gpu;
    if (!gpu.hasTimestamps) {
      throw new LlmError("BACKEND_UNAVAILABLE", "webgpu: the device has no timestamp-query");
    }
    this.#enter();
    try {
      const mode = options?.mode ?? "reps";
      const { slot, shape } = this.#write(step, false, -1, options?.splits);
      const list = this.#dispatches(shape);
      const passes = mode === "whole" ? reps : list.length;
      const qs = gpu.device.createQuerySet({ type: "timestamp", count: 2 * passes });
      const enc = gpu.device.createCommandEncoder();
      const timed = (i: number) => ({
        timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      const cbs: GPUCommandBuffer[] = [];
      let hostMs = 0;
      if (mode === "whole") {
        for (let i = 0; i < reps; i++) {
          const t0 = performance.now();
          cbs.push(this.#encode(slot, shape, undefined, timed(i)));
          hostMs += performance.now() - t0;
        }
      } else {
        list.forEach((d, i) => {
          const pass = enc.beginComputePass(timed(i));
          pass.setBindGroup(1, this.#slotBgs[slot]);
          for (let r = 0; r < (mode === "single" ? 1 : reps); r++) {
            pass.setPipeline(d.pipeline);
            pass.setBindGroup(0, d.group0);
            pass.dispatchWorkgroups(d.x, d.y, d.z);
          }
          pass.end();
        });
      }
      const t = await this.#readTimestamps(qs, passes, enc, cbs);
      qs.destroy();
      gpu.check("profiling");
      const span = (i: number): number => Number(t[2 * i + 1] - t[2 * i]) / 1000;
      if (mode === "whole") {
        const us = Array.from({ length: reps }, (_, i) => span(i));
        return [{
          label: "step",
          grid: [list.length],
          us: us.reduce((a, b) => a + b, 0) / reps,
          hostUs: (hostMs * 1000) / reps,
        }];
      }
      return list.map((d, i) => ({
        label: d.label,
        grid: [d.x, d.y, d.z],
        us: span(i) / (mode === "single" ? 1 : reps),
      }));
    } finally {
      this.#busy = false;
    }
  }

  [Symbol.dispose](): void {
    this.#trace?.qs.destroy();
    this.#trace = undefined;
    this.#encoder[Symbol.dispose]();
    for (const b of [...this.#owned, ...this.#readback, this.#stepBuf, this.#tok]) {
      this.#gpu.destroy(b);
    }
    this.#owned.length = 0;
    this.#cache.clear();
  }
}

const F32_MAX = 3.4028234663852886e38;
/** Slot words per logit row of sampling settings (lib/step.wgsl's samplingAt). */
const SAMPLING_WORDS = 8;

/**
 * A step's sampling rows into its slot (lib/step.wgsl, step[14]): f32 temperature, topK (capped at
 * 2^31 - 1; the kernel treats topK >= the row's width as off), f32 topP, minP, u, and the remainders
 * of topP and u. f32 rounding of the settings and of u is part of the
 * sample kernel's precision rule (kernels/wgsl/sample.wgsl).
 */
function writeSampling(w: Int32Array, at: number, sp: Float64Array, rows: number): void {
  if (sp.length < rows * PICK_PARAMS) {
    throw new LlmError(
      "INTERNAL",
      `webgpu: step.sampling holds ${sp.length} values for ${rows} logit rows (${PICK_PARAMS} per row)`,
    );
  }
  const f = new Float32Array(w.buffer, w.byteOffset, w.length);
  for (let r = 0; r < rows; r++) {
    const i = r * PICK_PARAMS, o = at + r * SAMPLING_WORDS;
    f[o] = Math.min(sp[i], F32_MAX);
    w[o + 1] = Math.min(sp[i + 1], 0x7fffffff);
    f[o + 2] = sp[i + 2];
    f[o + 3] = sp[i + 3];
    f[o + 4] = sp[i + 4];
    // the f32 remainders: topP * z and u * total then carry the settings' f64 values to ~2^-48
    f[o + 5] = sp[i + 2] - f[o + 2];
    f[o + 6] = sp[i + 4] - f[o + 4];
  }
}
