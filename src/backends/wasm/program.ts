/**
 * Compiles a graph into a program for the wasm runtime (kernels/wasm/runtime.c): one fixed-size record
 * of 32-bit words per op (argument order documented at the top of each kernel file), scratch buffers
 * sized from the graph, and per-step input areas (StepParams, RoPE cos/sin tables) written before each
 * run. Every index a kernel will use is checked here first, so a bad step is an LlmError, never a trap.
 * @module
 */
import type { Op, StepParams } from "../../ops.ts";
import type { Tensor } from "../../tensor.ts";
import { kvTensors } from "../../fusion.ts";
import { LlmError } from "../../errors.ts";

/** What the program needs to know about a tensor in wasm memory. */
export interface WasmTensorRef extends Tensor {
  /** Data (for quantized weights: the quants). */
  readonly ptr: number;
  /** Weight format (WF), scales, q8 block biases, scale group; 0 for plain tensors. */
  readonly fmt: number;
  readonly scales: number;
  readonly bias: number;
  readonly group: number;
}

/** kernels/wasm/llama_ts_wasm.h weight formats. */
export const WF = { f32: 0, f16: 1, bf16: 2, q8: 3, q4: 4 } as const;
const OP = {
  embed: 1,
  rms_norm: 2,
  matmul: 3,
  rope: 4,
  kv_write: 5,
  attention: 6,
  add: 7,
  silu_mul: 8,
  gather_rows: 9,
  argmax: 10,
} as const;
const REC_WORDS = 24;
const KV_FMT: Record<string, number> = { f32: 0, f16: 1, i8: 2 };

/** A compiled program placed in wasm memory. */
export interface WasmProgram {
  /** Address of the first record. */
  readonly ptr: number;
  /** Write a step's inputs into wasm memory; returns the Step struct's address. */
  prepare(step: StepParams): number;
  /** Free the program's memory. */
  free(): void;
}

/** Memory services the program needs from the backend. */
export interface ProgramMemory {
  alloc(bytes: number, label: string): number;
  free(ptr: number): void;
  /** Current views of the whole memory. */
  views(): { i32: Int32Array; f32: Float32Array; f64: Float64Array };
}

const width = (t: Tensor): number => t.shape[t.shape.length - 1];

/** Compile `graph` for `threads` threads. */
export function compileProgram(graph: readonly Op[], mem: ProgramMemory, threads: number): WasmProgram {
  const words = new Int32Array((graph.length + 1) * REC_WORDS);
  const owned: number[] = [];
  const alloc = (bytes: number, label: string): number => {
    const p = mem.alloc(bytes, label);
    owned.push(p);
    return p;
  };
  try {
    return build(graph, words, mem, alloc, owned, threads);
  } catch (e) {
    for (const p of owned) mem.free(p);
    throw e;
  }
}

function build(
  graph: readonly Op[],
  words: Int32Array,
  mem: ProgramMemory,
  alloc: (bytes: number, label: string) => number,
  owned: number[],
  threads: number,
): WasmProgram {
  // capacities from the graph's own tensors
  let maxTokens = Infinity, maxLogits = Infinity, vocab = Infinity, actBytes = 0, actRows = 0, scratch = 0;
  let cache: { rows: number; blockSize: number } | undefined;
  const gathers = graph.some((o) => o.op === "gather_rows");
  const ropes: { rec: number; invFreq: WasmTensorRef; headDim: number; rows: number }[] = [];
  for (const o of graph) {
    const rowsT = (t: Tensor): void => void (maxTokens = Math.min(maxTokens, t.shape[0]));
    switch (o.op) {
      case "embed":
        vocab = Math.min(vocab, o.table.shape[0]);
        rowsT(o.out);
        break;
      case "matmul": {
        const x = o.x as WasmTensorRef, w = o.w as WasmTensorRef;
        if (o.rows === "tokens") rowsT(x);
        else maxLogits = Math.min(maxLogits, x.shape[0]);
        if (w.fmt === WF.q8 || w.fmt === WF.q4) {
          actRows = Math.max(actRows, x.shape[0]);
          // per row (times actRows below): q8 k int16 + an f32 scale per 32-block (W8A8: per row); q4 144
          // bytes per 32-block (kernels/wasm/matmul.h Q4_ACT_BLOCK: splat chunks, scale, bias)
          const perRow = w.fmt === WF.q4
            ? width(x) * 144 / 32
            : width(x) * 2 + (o.actQuant === "int8" ? 4 : width(x) / 32 * 4);
          actBytes = Math.max(actBytes, perRow);
        } else if (o.actQuant === "int8") {
          throw new LlmError("INTERNAL", `wasm: int8 activations need q8_0 or q4_0 weights (${o.w.dtype})`);
        }
        break;
      }
      case "rope":
        rowsT(o.x);
        break;
      case "kv_write":
      case "attention": {
        const c = { rows: o.cache.k.shape[0], blockSize: o.cache.blockSize };
        if (cache && (cache.rows !== c.rows || cache.blockSize !== c.blockSize)) {
          throw new LlmError("INTERNAL", "wasm: one program's KV layers must share one shape and block size");
        }
        cache = c;
        rowsT(o.op === "attention" ? o.q : o.k);
        if (o.op === "attention") scratch = Math.max(scratch, c.rows);
        break;
      }
      case "gather_rows":
        maxLogits = Math.min(maxLogits, o.out.shape[0]);
        break;
      default:
        break;
    }
  }
  // one activation buffer per thread: each quantizes x itself, so no barrier follows quantization
  const actPerThread = Math.ceil((actRows * actBytes + 64) / 64) * 64;
  const act = actBytes ? alloc(actPerThread * threads, "activation quants") : 0;
  const scores = scratch ? alloc(scratch * 4 * threads + 64, "attention scratch") : 0;

  // records
  let prev: { x: Tensor; fmt: number; rows: string; a8: number } | undefined;
  graph.forEach((o, i) => {
    const r = i * REC_WORDS, a = (k: number, v: number): void => void (words[r + 2 + k] = v);
    const f32bits = (v: number): number => new Int32Array(Float32Array.of(v).buffer)[0];
    if (o.op === "sample") {
      throw new LlmError("INTERNAL", "wasm: the sample op has no kernel (supportsOp says so)");
    }
    words[r] = OP[o.op];
    words[r + 1] = "rows" in o && o.rows === "logits" ? 1 : 0;
    const p = (t: Tensor): number => (t as WasmTensorRef).ptr;
    let quantMatmul: typeof prev = undefined;
    switch (o.op) {
      case "embed": {
        const t = o.table as WasmTensorRef;
        [t.ptr, t.scales, t.fmt, t.group, width(o.table), p(o.out)].forEach((v, k) => a(k, v));
        break;
      }
      case "rms_norm":
        [p(o.x), p(o.weight), p(o.out), width(o.x), f32bits(o.eps)].forEach((v, k) => a(k, v));
        break;
      case "matmul": {
        const w = o.w as WasmTensorRef, [m, k] = o.w.shape;
        const quant = w.fmt === WF.q8 || w.fmt === WF.q4, a8 = o.actQuant === "int8" ? 1 : 0;
        const reuse = quant && prev !== undefined && prev.x === o.x && prev.fmt === w.fmt &&
          prev.rows === o.rows && prev.a8 === a8;
        [
          p(o.x),
          p(o.out),
          k,
          m,
          w.fmt,
          w.ptr,
          w.scales,
          w.bias,
          w.group,
          act,
          reuse ? 1 : 0,
          actRows,
          actPerThread,
          a8,
        ]
          .forEach((v, j) => a(j, v));
        if (quant) quantMatmul = { x: o.x, fmt: w.fmt, rows: o.rows, a8 };
        break;
      }
      case "rope":
        [p(o.x), width(o.x), o.nHeads, o.headDim, o.style === "half" ? 1 : 0, 0].forEach((v, k) => a(k, v));
        ropes.push({ rec: r, invFreq: o.invFreq as WasmTensorRef, headDim: o.headDim, rows: o.x.shape[0] });
        break;
      case "kv_write": {
        const c = o.cache;
        [
          p(o.k),
          p(o.v),
          width(o.k),
          p(c.k),
          p(c.v),
          c.kScale ? p(c.kScale) : 0,
          c.vScale ? p(c.vScale) : 0,
          KV_FMT[c.k.dtype],
          c.blockSize,
          c.kScale ? width(c.kScale) : 1,
        ].forEach((v, k) => a(k, v));
        break;
      }
      case "attention": {
        const c = o.cache;
        [
          p(o.q),
          p(o.out),
          o.nHeads,
          o.nKvHeads,
          o.headDim,
          f32bits(o.scale),
          p(c.k),
          p(c.v),
          c.kScale ? p(c.kScale) : 0,
          c.vScale ? p(c.vScale) : 0,
          KV_FMT[c.k.dtype],
          c.blockSize,
          scores,
          scratch,
        ].forEach((v, k) => a(k, v));
        break;
      }
      case "add":
        [p(o.a), p(o.b), p(o.out), width(o.a)].forEach((v, k) => a(k, v));
        break;
      case "silu_mul":
        [p(o.gate), p(o.up), p(o.out), width(o.gate)].forEach((v, k) => a(k, v));
        break;
      case "gather_rows":
        [p(o.x), p(o.out), width(o.x)].forEach((v, k) => a(k, v));
        break;
      case "argmax":
        [p(o.x), p(o.out), width(o.x)].forEach((v, k) => a(k, v));
        break;
    }
    prev = quantMatmul;
  });

  barriers(graph).forEach((b, i) => void (words[i * REC_WORDS] |= b ? 0x100 : 0));

  // RoPE tables: one per (invFreq, headDim), (rows, headDim/2, cos|sin) in f64
  const tables = new Map<string, { ptr: number; invFreq: WasmTensorRef; headDim: number; rows: number }>();
  for (const rp of ropes) {
    const key = `${rp.invFreq.ptr}:${rp.headDim}`;
    let t = tables.get(key);
    if (!t) {
      t = { ptr: 0, invFreq: rp.invFreq, headDim: rp.headDim, rows: rp.rows };
      t.ptr = alloc(rp.rows * rp.headDim * 8, "rope table");
      tables.set(key, t);
    }
    words[rp.rec + 2 + 5] = t.ptr;
  }

  const ptr = alloc(words.byteLength, "program");
  mem.views().i32.set(words, ptr >>> 2);
  let stepPtr = 0, stepCap = 0;
  return {
    ptr,
    prepare(step: StepParams): number {
      const nT = step.nTokens, nL = step.logitRows.length, bt = step.blockTables;
      checkStep(step, { maxTokens, maxLogits, vocab, cache, needsTokens: vocab !== Infinity, gathers });
      const ints = 12 + 3 * nT + nL + bt.length;
      if (ints > stepCap) {
        if (stepPtr) mem.free(stepPtr);
        stepPtr = 0;
        stepCap = Math.max(ints, 2 * stepCap, 256);
        stepPtr = mem.alloc(stepCap * 4, "step inputs");
      }
      const { i32, f32, f64 } = mem.views();
      const base = stepPtr >>> 2,
        tok = base + 12,
        pos = tok + nT,
        seq = pos + nT,
        lr = seq + nT,
        bts = lr + nL;
      i32.set([nT, nL, step.maxBlocksPerSeq, 0, tok * 4, pos * 4, seq * 4, bts * 4, lr * 4], base);
      i32.set(step.tokens.subarray(0, nT), tok);
      i32.set(step.positions.subarray(0, nT), pos);
      i32.set(step.seqIndex.subarray(0, nT), seq);
      i32.set(step.logitRows, lr);
      i32.set(bt, bts);
      for (const t of tables.values()) {
        const half = t.headDim / 2, inv = f32.subarray(t.invFreq.ptr >>> 2, (t.invFreq.ptr >>> 2) + half);
        const out = t.ptr >>> 3;
        for (let r = 0; r < nT; r++) {
          const p = step.positions[r];
          for (let j = 0; j < half; j++) {
            const angle = p * inv[j];
            f64[out + r * t.headDim + 2 * j] = Math.cos(angle);
            f64[out + r * t.headDim + 2 * j + 1] = Math.sin(angle);
          }
        }
      }
      return stepPtr;
    },
    free(): void {
      for (const p of owned) mem.free(p);
      owned.length = 0;
      if (stepPtr) mem.free(stepPtr);
      stepPtr = 0;
    },
  };
}

/** How an op splits its work over threads (kernels/wasm/llama_ts_wasm.h); "all" reads everything. */
type Part = "rows" | "cols" | "heads" | "dup" | "all";

function access(o: Op): { reads: [Tensor, Part][]; writes: [Tensor, Part][] } {
  switch (o.op) {
    case "embed":
      return { reads: [], writes: [[o.out, "dup"]] };
    case "rms_norm":
      return { reads: [[o.x, "all"]], writes: [[o.out, "dup"]] };
    case "matmul":
      return { reads: [[o.x, "all"]], writes: [[o.out, "cols"]] };
    case "rope":
      return { reads: [[o.x, "rows"]], writes: [[o.x, "rows"]] };
    case "kv_write":
      return { reads: [[o.k, "rows"], [o.v, "rows"]], writes: kvTensors(o.cache).map((t) => [t, "rows"]) };
    case "attention":
      return {
        reads: [[o.q, "all"], ...kvTensors(o.cache).map((t): [Tensor, Part] => [t, "all"])],
        writes: [[o.out, "heads"]],
      };
    case "add":
      return { reads: [[o.a, "cols"], [o.b, "cols"]], writes: [[o.out, "cols"]] };
    case "silu_mul":
      return { reads: [[o.gate, "cols"], [o.up, "cols"]], writes: [[o.out, "cols"]] };
    case "gather_rows":
    case "argmax":
    case "sample":
      return { reads: [[o.x, "all"]], writes: [[o.out, "dup"]] };
  }
}

/**
 * Which ops must wait at a barrier first: those that read data another thread wrote since the last
 * barrier, or overwrite data another thread wrote or may still be reading. Work split the same way on
 * both sides (rows, cols, heads) stays on one thread; "dup" data is complete on every thread.
 */
export function barriers(graph: readonly Op[]): boolean[] {
  let written = new Map<Tensor, Set<Part>>(), read = new Map<Tensor, Set<Part>>();
  const local = (a: Part, b: Part): boolean => a === b && a !== "dup" && a !== "all";
  return graph.map((o) => {
    const { reads, writes } = access(o);
    const conflict = reads.some(([t, p]) =>
      [...(written.get(t) ?? [])].some((w) => w !== "dup" && !local(w, p))
    ) ||
      writes.some(([t, p]) => [...(read.get(t) ?? []), ...(written.get(t) ?? [])].some((x) => !local(x, p)));
    if (conflict) {
      written = new Map();
      read = new Map();
    }
    for (const [t, p] of reads) read.set(t, (read.get(t) ?? new Set()).add(p));
    for (const [t, p] of writes) written.set(t, (written.get(t) ?? new Set()).add(p));
    return conflict;
  });
}

/** Everything a kernel will index, checked against what the program was compiled for. */
function checkStep(
  step: StepParams,
  cap: {
    maxTokens: number;
    maxLogits: number;
    vocab: number;
    cache?: { rows: number; blockSize: number };
    needsTokens: boolean;
    /** gather_rows reads x at the logit rows, so they must be step rows. */
    gathers: boolean;
  },
): void {
  const nT = step.nTokens, nL = step.logitRows.length;
  const bad = (why: string): never => {
    throw new LlmError("INTERNAL", `wasm: bad step: ${why}`);
  };
  if (!Number.isInteger(nT) || nT < 0 || nT > cap.maxTokens) bad(`${nT} tokens, room for ${cap.maxTokens}`);
  if (step.tokens.length < nT || step.positions.length < nT || step.seqIndex.length < nT) bad("short arrays");
  if (nL > cap.maxLogits) bad(`${nL} logit rows, room for ${cap.maxLogits}`);
  if (cap.gathers) {
    for (const r of step.logitRows) {
      if (!(r >= 0 && r < nT)) bad(`logit row ${r} of ${nT}`);
    }
  }
  if (cap.needsTokens) {
    for (let r = 0; r < nT; r++) {
      const id = step.tokens[r];
      if (!(id >= 0 && id < cap.vocab)) {
        throw new LlmError("BAD_REQUEST", `token id ${id} is outside the vocabulary (0..${cap.vocab - 1})`);
      }
    }
  }
  if (!cap.cache) return;
  // every block a row's attention reads (its sequence's blocks 0..pos / blockSize) must be real;
  // unused table entries (the scheduler pads with -1) are never read
  const { rows, blockSize } = cap.cache, nBlocks = rows / blockSize, mb = step.maxBlocksPerSeq;
  const lastBlock = new Map<number, number>(); // sequence -> highest logical block read
  for (let r = 0; r < nT; r++) {
    const pos = step.positions[r], seq = step.seqIndex[r];
    if (!(pos >= 0) || Math.floor(pos / blockSize) >= mb || pos >= rows) {
      throw new LlmError("INTERNAL", `position ${pos} is past the block table (${mb} blocks)`);
    }
    if (!(seq >= 0) || (seq + 1) * mb > step.blockTables.length) bad(`sequence ${seq}`);
    lastBlock.set(seq, Math.max(lastBlock.get(seq) ?? 0, Math.floor(pos / blockSize)));
  }
  for (const [seq, last] of lastBlock) {
    for (let l = 0; l <= last; l++) {
      const b = step.blockTables[seq * mb + l];
      if (!(b >= 0 && b < nBlocks)) bad(`block ${b} of ${nBlocks} (sequence ${seq}, logical block ${l})`);
    }
  }
}
