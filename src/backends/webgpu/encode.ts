/**
 * Turning planned nodes into dispatches for one step shape (live rows, logit rows, attention splits).
 * Bind groups and Params uniforms are made once per node and variant and reused by every step of that
 * shape; a matmul node runs as one fused GEMV dispatch when its rows are few (decode), or unfused
 * (norm, gather, GEMM per weight part, silu_mul) otherwise.
 * @module
 */
import type { Tensor } from "../../tensor.ts";
import type { MatOut, Node } from "./program.ts";
import { type KernelName, KERNELS } from "./kernels.ts";
import type { WeightLayout } from "./weights.ts";
import { type Constants, type Gpu, STORAGE } from "./device.ts";
import { EPC, FMT } from "./weights.ts";
import { bufferOf, weightOf, type WgTensor } from "./wg_tensor.ts";
import { LlmError } from "../../errors.ts";

import { gemmPlan, gemmTileBytes, type Tuning } from "./tuning.ts";
import { encodeAttention, encodeRope } from "./encode_attention.ts";

export { DEFAULT_TUNING, type GemvFormat, type Layout, type Tuning } from "./tuning.ts";
export { kvFormat } from "./encode_attention.ts";

/** One dispatch. */
export interface Dispatch {
  /** Kernel and variant, for profiles. */
  readonly label: string;
  readonly pipeline: GPUComputePipeline;
  readonly group0: GPUBindGroup;
  readonly x: number;
  readonly y: number;
  readonly z: number;
}

/** What varies between steps and changes the dispatches. */
export interface StepShape {
  readonly nTokens: number;
  readonly nLogits: number;
  /** Attention splits per row (decode). */
  readonly splits: number;
  /** Every row is of a different sequence (a pure decode step): RoPE + KV write may fold into attention. */
  readonly distinct: boolean;
}

const FMT_NAME = ["f32", "f16", "bf16", "q8", "q4"] as const;

/** Everything a node needs beyond its tensors. */
export interface EncodeContext {
  readonly gpu: Gpu;
  /** f16 kernel variants allowed (the adapter has shader-f16, the self-check passed, not turned off). */
  readonly f16: boolean;
  readonly tuning: Tuning;
  /** The attention split partials (8 rows x heads x maxSplits x (headDim + 2) f32 at most). */
  readonly partials: GPUBuffer;
  /** The RoPE cos/sin table for these frequencies. */
  ropeTable(invFreq: Tensor, headDim: number): GPUBuffer;
  /** W8A8 graphs: the int8 activations (rows x k bytes) and their row scales, shared by the matmuls. */
  readonly actScratch?: { readonly q: GPUBuffer; readonly s: GPUBuffer };
  /** matmul_a8 uses dot4I8Packed (else unpacked integer math). */
  readonly packedDot: boolean;
}

/** What the node encoders of other files (encode_attention.ts) use of a NodeEncoder. */
export interface DispatchSink {
  readonly ctx: EncodeContext;
  /** A 16-byte buffer bound where a kernel reads nothing. */
  readonly dummyR: GPUBuffer;
  /** Six distinct 16-byte buffers bound where a kernel writes nothing. */
  readonly dummyW: readonly GPUBuffer[];
  /** A dispatch of `kernel`: bindings 1.. are `buffers` (binding 0 is the Params uniform). */
  dispatch(
    out: Dispatch[],
    node: Node,
    kernel: KernelName,
    constants: Constants,
    params: Record<string, number>,
    buffers: readonly GPUBuffer[],
    grid: readonly [number, number, number],
    tag?: string,
  ): void;
}

interface Variant {
  readonly bg: GPUBindGroup;
  readonly params?: GPUBuffer;
}

/** Encodes nodes; owns the bind groups and Params buffers it makes. */
export class NodeEncoder implements Disposable {
  #ctx: EncodeContext;
  #cache = new Map<Node, Map<string, Variant>>();
  #dummyR: GPUBuffer;
  #dummyW: GPUBuffer[];
  #sink: DispatchSink;

  constructor(ctx: EncodeContext) {
    this.#ctx = ctx;
    this.#dummyR = ctx.gpu.buffer(16, STORAGE, "unused (read)");
    this.#dummyW = [0, 1, 2, 3, 4, 5].map((i) => ctx.gpu.buffer(16, STORAGE, `unused ${i}`));
    this.#sink = {
      ctx,
      dummyR: this.#dummyR,
      dummyW: this.#dummyW,
      dispatch: (out, node, kernel, constants, params, buffers, grid, tag) =>
        this.#dispatch(out, node, kernel, constants, params, buffers, grid, tag),
    };
  }

  /** The dispatches of `nodes` for a step of this shape. */
  encode(nodes: readonly Node[], shape: StepShape): Dispatch[] {
    const out: Dispatch[] = [];
    nodes.forEach((n, i) => this.#node(n, shape, out, nodes[i - 1]));
    return out;
  }

  #variant(node: Node, key: string, make: () => Variant): Variant {
    let m = this.#cache.get(node);
    if (!m) this.#cache.set(node, m = new Map());
    let v = m.get(key);
    if (!v) m.set(key, v = make());
    return v;
  }

  /** A dispatch of `kernel`: bindings 1.. are `buffers` (binding 0 is the Params uniform). */
  #dispatch(
    out: Dispatch[],
    node: Node,
    kernel: KernelName,
    constants: Constants,
    params: Record<string, number>,
    buffers: readonly GPUBuffer[],
    grid: readonly [number, number, number],
    tag = "",
  ): void {
    const gpu = this.#ctx.gpu;
    const p = gpu.pipeline(kernel, constants);
    const key = `${kernel}|${tag}|${JSON.stringify(constants)}`;
    const v = this.#variant(node, key, () => {
      checkAliasing(kernel, buffers);
      const pb = gpu.params(kernel, params, `${kernel} ${tag}`);
      const all = [pb, ...buffers];
      return {
        params: pb,
        bg: gpu.device.createBindGroup({
          label: `${kernel} ${tag}`,
          layout: p.layout,
          entries: all.map((buffer, binding) => ({ binding, resource: { buffer } })),
        }),
      };
    });
    const max = gpu.limits.maxWorkgroups;
    let [x, y, z] = grid;
    if (x === 0 || y === 0 || z === 0) return;
    if (x > max) {
      if (y !== 1) throw new LlmError("INTERNAL", `webgpu: ${kernel} grid (${x}, ${y}) is too large`);
      y = Math.ceil(x / max);
      x = Math.ceil(x / y);
    }
    out.push({ label: `${kernel} ${tag}`, pipeline: p.pipeline, group0: v.bg, x, y, z });
  }

  #live(rows: "tokens" | "logits", s: StepShape): number {
    return rows === "tokens" ? s.nTokens : s.nLogits;
  }

  #node(n: Node, s: StepShape, out: Dispatch[], prev: Node | undefined): void {
    switch (n.kind) {
      case "embed":
        return this.#embed(n, s, out);
      case "rms_norm":
        return this.#norm(n, n.x, n.weight, n.out, n.eps, n.rows, s, out);
      case "matmul":
        return this.#matmul(n, s, out);
      case "matmul_a8":
        return this.#matmulA8(n, s, out, prev);
      case "rope_kv":
        return encodeRope(n, { sink: this.#sink, shape: s, out });
      case "attention":
        return encodeAttention(n, { sink: this.#sink, shape: s, out });
      case "add": {
        const [a, b] = n.out === n.b ? [n.b, n.a] : [n.a, n.b];
        const inplace = n.out === a;
        const len = this.#live(n.rows, s) * (n.out as WgTensor).width;
        const g = Math.ceil(len / 256);
        this.#dispatch(
          out,
          n,
          "add",
          { INPLACE: inplace },
          {
            n: (n.out as WgTensor).width,
            logitRows: n.rows === "logits" ? 1 : 0,
          },
          [inplace ? this.#dummyR : bufferOf(a), bufferOf(b), bufferOf(n.out)],
          [g, 1, 1],
        );
        return;
      }
      case "silu_mul":
        return this.#siluMul(n, n.gate, n.up, n.out, s, out);
      case "gather_rows":
        return this.#gather(n, n.x, n.out, s, out);
      case "argmax":
      case "sample": {
        const buffers = [bufferOf(n.x), bufferOf(n.out)];
        const width = (n.x as WgTensor).width;
        this.#dispatch(out, n, n.kind, {}, { n: width }, buffers, [n.x.shape[0], 1, 1], n.kind);
        return;
      }
    }
  }

  #embed(n: Extract<Node, { kind: "embed" }>, s: StepShape, out: Dispatch[]): void {
    const w = weightOf(n.table);
    w.parts.forEach((part, i) => {
      this.#dispatch(
        out,
        n,
        "embed",
        { FMT: w.fmt, G: w.group || 32 },
        { dim: w.k, KC: w.kc, SW: w.sw, rowStart: part.row0, rows: part.rows },
        [part.q, part.s ?? this.#dummyR, bufferOf(n.out)],
        [Math.ceil(w.kc / 64), s.nTokens, 1],
        `part${i}`,
      );
    });
  }

  #norm(
    node: Node,
    x: Tensor,
    weight: Tensor,
    o: Tensor,
    eps: number,
    rows: "tokens" | "logits",
    s: StepShape,
    out: Dispatch[],
  ): void {
    if (x === o) {
      throw new LlmError("UNSUPPORTED_DTYPE", `webgpu: in-place rms_norm (${x.label}) is not supported`);
    }
    this.#dispatch(
      out,
      node,
      "rms_norm",
      {},
      { n: (x as WgTensor).width, logitRows: rows === "logits" ? 1 : 0, eps },
      [bufferOf(x), bufferOf(weight), bufferOf(o)],
      [this.#live(rows, s), 1, 1],
      "norm",
    );
  }

  #siluMul(node: Node, gate: Tensor, up: Tensor, o: Tensor, s: StepShape, out: Dispatch[]): void {
    const alias = o === gate ? 1 : o === up ? 2 : 0;
    const len = s.nTokens * (o as WgTensor).width;
    this.#dispatch(
      out,
      node,
      "silu_mul",
      { ALIAS: alias },
      { n: (o as WgTensor).width },
      [
        alias === 1 ? this.#dummyR : bufferOf(gate),
        alias === 2 ? this.#dummyR : bufferOf(up),
        bufferOf(o),
      ],
      [Math.ceil(len / 256), 1, 1],
      "silu",
    );
  }

  #gather(node: Node, x: Tensor, o: Tensor, s: StepShape, out: Dispatch[]): void {
    const width = (o as WgTensor).width;
    this.#dispatch(out, node, "gather_rows", {}, { n: width }, [bufferOf(x), bufferOf(o)], [
      Math.ceil(width / 256),
      s.nLogits,
      1,
    ], "gather");
  }

  /** Whether a GEMV of these weights fits workgroup memory, and its constants. */
  #gemvPlan(w: WeightLayout, nt: number, gateup: boolean): { kernel: KernelName; c: Constants } | undefined {
    const ctx = this.#ctx;
    const t = (nt === 1 ? ctx.tuning.gemv : ctx.tuning.gemvBatch)[FMT_NAME[w.fmt]];
    const red = (nr: number): number => (gateup ? 2 : 1) * t.TR * nr * nt * t.TK * 4;
    if (w.fmt >= FMT.q8 || (w.fmt === FMT.f16 && nt === 1 && t.regs)) {
      // matmul_gemv_q: no staged x; NR <= 8 rows per thread, NR * NT <= 16 accumulators; one row of x
      // takes the register path of NR <= 4
      const nr = Math.max(1, Math.min(t.NR, nt === 1 ? 4 : 8, Math.floor(16 / nt)));
      const two = !!t.red2 && nt === 1 && t.TK % nr === 0;
      const red2 = two ? ((gateup ? 2 : 1) * t.TK * t.TR + t.TK) * 4 : 0;
      if (red(nr) + red2 + nt * t.TK * 4 > ctx.gpu.limits.workgroupStorage) return undefined;
      const perRow = w.fmt !== FMT.f16 && w.group === w.k;
      const c: Constants = {
        NT: nt,
        NR: nr,
        TK: t.TK,
        TR: t.TR,
        FMT: w.fmt,
        G: w.group || 32,
        PERROW: perRow,
      };
      if (t.probe && nt === 1) c.PROBE = t.probe;
      if (two) c.RED2 = true;
      if (t.i2f && nt === 1 && w.fmt >= FMT.q8) c.I2F = true;
      return { kernel: "matmul_gemv_q", c };
    }
    const f16 = ctx.f16 && w.fmt === FMT.f16;
    // the kernels hold NR * NT accumulators (<= 16) and prefetch NR <= 4 (f16: 2) rows' chunks
    const nr = Math.max(1, Math.min(t.NR, f16 ? 2 : 4, Math.floor(16 / nt)));
    const xv = (w.kc * EPC[w.fmt]) / 4;
    const bytes = nt * xv * (f16 ? 8 : 16) + red(nr) + 600;
    if (bytes > ctx.gpu.limits.workgroupStorage) return undefined;
    const c: Constants = { NT: nt, NR: nr, TK: t.TK, TR: t.TR, XV: xv };
    if (!f16) Object.assign(c, { FMT: w.fmt, G: w.group || 32 });
    return { kernel: f16 ? "matmul_gemv_f16" : "matmul_gemv", c };
  }

  #matmul(n: Extract<Node, { kind: "matmul" }>, s: StepShape, out: Dispatch[]): void {
    const rows = this.#live(n.rows, s);
    if (rows === 0) return;
    const ws = n.mats.map((m) => weightOf(m.w));
    const nt = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
    const gemv = rows <= this.#ctx.tuning.gemvMaxRows;
    const same = ws.every((w) =>
      w.parts.length === 1 && w.fmt === ws[0].fmt && w.group === ws[0].group && w.kc === ws[0].kc
    );
    if (gemv && same) {
      const plan = this.#gemvPlan(ws[0], nt, !!n.silu);
      if (plan) {
        this.#gemv(n, n.mats, ws, plan, rows, out, "fused");
        return;
      }
    }
    if (gemv && ws.every((w) => this.#gemvPlan(w, nt, false))) {
      // one GEMV per weight part (the norm/gather prologue repeated in each), then silu_mul
      n.mats.forEach((m, i) => {
        const w = ws[i];
        w.parts.forEach((_, pi) => {
          this.#gemv(n, [m], [w], this.#gemvPlan(w, nt, false)!, rows, out, `m${i}p${pi}`, pi);
        });
      });
      if (n.silu) this.#siluMul(n, n.mats[0].out, n.mats[1].out, n.silu, s, out);
      return;
    }
    let input = n.x;
    if (n.gather) {
      this.#gather(n, n.x, n.gather, s, out);
      input = n.gather;
    }
    if (n.norm) {
      this.#norm(n, input, n.norm.weight, n.norm.out, n.norm.eps, n.rows, s, out);
      input = n.norm.out;
    }
    n.mats.forEach((m, i) => this.#gemm(n, input, m, ws[i], n.residual && i === 0, rows, out, `g${i}`));
    if (n.silu) this.#siluMul(n, n.mats[0].out, n.mats[1].out, n.silu, s, out);
  }

  #gemv(
    n: Extract<Node, { kind: "matmul" }>,
    mats: readonly MatOut[],
    ws: readonly WeightLayout[],
    plan: { kernel: KernelName; c: Constants },
    rows: number,
    out: Dispatch[],
    tag: string,
    partIndex?: number,
  ): void {
    // fused: every matrix of the node (single parts) in one dispatch; else one part of one matrix
    const fused = partIndex === undefined;
    const gateup = fused && !!n.silu;
    const residual = n.residual && mats[0] === n.mats[0] && !n.silu;
    const per = Number(plan.c.TR) * Number(plan.c.NR);
    const parts = ws.map((w) => w.parts[partIndex ?? 0]);
    const wg = parts.map((p) => Math.ceil(p.rows / per));
    const total = gateup ? wg[0] : wg.reduce((a, b) => a + b, 0);
    const r = this.#dummyR;
    const oA = gateup ? n.silu! : mats[0].out;
    const buffers = [
      bufferOf(n.x),
      n.norm ? bufferOf(n.norm.weight) : r,
      parts[0].q,
      parts[0].s ?? r,
      parts[1]?.q ?? r,
      parts[1]?.s ?? r,
      parts[2]?.q ?? r,
      parts[2]?.s ?? r,
      bufferOf(oA),
      gateup || !mats[1] ? this.#dummyW[0] : bufferOf(mats[1].out),
      mats[2] ? bufferOf(mats[2].out) : this.#dummyW[1],
    ];
    const width = (t: Tensor): number => (t as WgTensor).width;
    this.#dispatch(
      out,
      n,
      plan.kernel,
      {
        ...plan.c,
        NORM: !!n.norm,
        GATHER: !!n.gather,
        RESIDUAL: residual,
        GATEUP: gateup,
      },
      {
        K: ws[0].k,
        KC: ws[0].kc,
        SW: ws[0].sw,
        mA: parts[0].rows,
        mB: gateup ? parts[0].rows : parts[1]?.rows ?? 0,
        mC: parts[2]?.rows ?? 0,
        wgA: wg[0],
        wgB: gateup ? 0 : wg[1] ?? 0,
        outWA: width(oA),
        outWB: mats[1] ? width(mats[1].out) : 0,
        outWC: mats[2] ? width(mats[2].out) : 0,
        outOffA: parts[0].row0,
        logitRows: n.rows === "logits" ? 1 : 0,
        eps: n.norm?.eps ?? 0,
      },
      buffers,
      [total, 1, 1],
      `${tag} rows${rows > 1 ? "N" : "1"}`,
    );
  }

  /**
   * W8A8: quantize the live rows of x to int8 (act_quant_int8), then the integer matmul per part. The
   * quantization is skipped when the previous node was an int8-activation matmul of the same x, rows and
   * weight layout (Q, K and V; gate and up): the scratch still holds those codes.
   */
  #matmulA8(
    n: Extract<Node, { kind: "matmul_a8" }>,
    s: StepShape,
    out: Dispatch[],
    prev: Node | undefined,
  ): void {
    const ctx = this.#ctx;
    const rows = this.#live(n.rows, s);
    const sc = ctx.actScratch;
    if (rows === 0) return;
    if (!sc) throw new LlmError("INTERNAL", "webgpu: an int8-activation matmul was compiled without scratch");
    const w = weightOf(n.w);
    const logitRows = n.rows === "logits" ? 1 : 0;
    const pw = prev?.kind === "matmul_a8" ? weightOf(prev.w) : undefined;
    const quantized = prev?.kind === "matmul_a8" && prev.x === n.x && prev.rows === n.rows &&
      pw?.fmt === w.fmt && pw.k === w.k;
    if (!quantized) {
      this.#dispatch(
        out,
        n,
        "act_quant_int8",
        { FMT: w.fmt },
        { K: w.k, logitRows },
        [
          bufferOf(n.x),
          sc.q,
          sc.s,
        ],
        [Math.ceil(w.k / 1024), rows, 1],
        "q",
      );
    }
    const nt = rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
    const t = nt === 1 ? ctx.tuning.a8 : ctx.tuning.a8Batch;
    const nr = Math.max(1, Math.min(t.NR, 8, Math.floor(16 / nt)));
    const c = { FMT: w.fmt, NT: nt, NR: nr, TK: t.TK, TR: t.TR, DP4: ctx.packedDot };
    w.parts.forEach((part, pi) => {
      this.#dispatch(
        out,
        n,
        "matmul_a8",
        c,
        { K: w.k, KC: w.kc, SW: w.sw, M: part.rows, outW: w.m, outOff: part.row0, logitRows },
        [sc.q, sc.s, part.q, part.s!, bufferOf(n.out)],
        [Math.ceil(part.rows / (t.TR * nr)), Math.ceil(rows / nt), 1],
        `p${pi}`,
      );
    });
  }

  #gemm(
    n: Node,
    x: Tensor,
    m: MatOut,
    w: WeightLayout,
    residual: boolean,
    rows: number,
    out: Dispatch[],
    tag: string,
  ): void {
    const ctx = this.#ctx;
    const limit = ctx.gpu.limits.workgroupStorage;
    const plan = gemmPlan(limit, ctx.f16 && w.fmt !== FMT.f32, ctx.tuning.gemm);
    if (!plan) {
      throw new LlmError(
        "BACKEND_UNAVAILABLE",
        `webgpu: the adapter's workgroup memory (${limit} bytes) is too small for the prefill GEMM: its ` +
          `smallest tile needs ${gemmTileBytes(4, 4, false)} bytes (${gemmTileBytes(4, 4, true)} with ` +
          `shader-f16, for quantized or 16-bit weights); use another backend (--backend wasm)`,
      );
    }
    const { kernel, TM, TN } = plan;
    const logitRows = "rows" in n && n.rows === "logits" ? 1 : 0;
    w.parts.forEach((part, pi) => {
      this.#dispatch(
        out,
        n,
        kernel,
        { FMT: w.fmt, G: w.group || 32, TM, TN, RESIDUAL: residual },
        { K: w.k, KC: w.kc, SW: w.sw, M: part.rows, outW: w.m, outOff: part.row0, logitRows },
        [bufferOf(x), part.q, part.s ?? this.#dummyR, bufferOf(m.out)],
        [Math.ceil(part.rows / (16 * TN)), Math.ceil(rows / (16 * TM)), 1],
        `${tag}p${pi}`,
      );
    });
  }

  [Symbol.dispose](): void {
    const gpu = this.#ctx.gpu;
    for (const m of this.#cache.values()) for (const v of m.values()) gpu.destroy(v.params);
    this.#cache.clear();
    gpu.destroy(this.#dummyR);
    for (const b of this.#dummyW) gpu.destroy(b);
  }
}

/** A buffer bound writable must not be bound twice in one dispatch (WebGPU forbids the aliasing). */
function checkAliasing(kernel: KernelName, buffers: readonly GPUBuffer[]): void {
  const kinds = KERNELS[kernel].bindings;
  for (let i = 0; i < buffers.length; i++) {
    for (let j = i + 1; j < buffers.length; j++) {
      if (buffers[i] === buffers[j] && (kinds[i + 1] === "rw" || kinds[j + 1] === "rw")) {
        throw new LlmError(
          "UNSUPPORTED_DTYPE",
          `webgpu: ${kernel} would read and write ${buffers[i].label} in one dispatch; this aliasing of op ` +
            `tensors is not supported`,
        );
      }
    }
  }
}
