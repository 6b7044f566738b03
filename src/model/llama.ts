/**
 * The LLaMA decoder as one graph, read top-down like llama2.c's `forward()`. It is built once for a
 * maximum number of rows per step (T) and of logit rows (R) and run per step; which tokens, positions
 * and cache slots a step covers arrive as StepParams. T rows may be one sequence's prompt chunk
 * (prefill), one token of each of many sequences (batched decode), or a mix.
 * @module
 */
import type { Backend } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import type { Op } from "../ops.ts";
import type { LlamaWeights } from "./weights.ts";
import type { KvCache } from "./kv_cache.ts";
import { GraphBuilder } from "../graph.ts";
import { kvDim } from "./config.ts";

/** A built decoder graph. */
export interface LlamaGraph {
  readonly ops: readonly Op[];
  /** (R, vocabSize) f32: logits of step.logitRows, in order. */
  readonly logits: Tensor;
  readonly maxTokens: number;
  readonly maxLogitRows: number;
  /**
   * Where the backend can pick tokens on the device: the same ops plus a `sample` op (or, on backends
   * without it, an `argmax`) of the logits into `ids` ((R) i32), so a step reads back R token ids
   * instead of R x vocabSize logits. `sampling`: the op is `sample`, so rows may carry sampling
   * settings (`StepParams.sampling`); otherwise only greedy rows can use it.
   */
  readonly greedy?: { readonly ops: readonly Op[]; readonly ids: Tensor; readonly sampling: boolean };
  /** Free the graph's activations. */
  free(): void;
}

/** Build the decoder graph over uploaded weights and a KV cache. */
export function buildLlamaGraph(
  backend: Backend,
  w: LlamaWeights,
  kv: KvCache,
  options: { maxTokens: number; maxLogitRows: number; deviceSampling?: boolean },
): LlamaGraph {
  const c = w.config;
  const T = options.maxTokens, R = options.maxLogitRows;
  const qDim = c.nHeads * c.headDim, kd = kvDim(c);
  const g = new GraphBuilder(backend);
  // SmoothQuant W8A8: the decoder layers' matmuls over integer weights take per-token int8 activations
  // (a matrix whose rows are not whole 32-blocks stays float in the file, and float x float); not the LM head
  const aq = (t: Tensor): "int8" | undefined =>
    c.activationQuant && (t.dtype === "q8_0" || t.dtype === "q4_0") ? c.activationQuant : undefined;

  // activations, reused by every layer
  const x = g.act("x", [T, c.dim]); // residual stream
  const xb = g.act("xb", [T, c.dim]); // normed input of a sub-block
  const q = g.act("q", [T, qDim]);
  const k = g.act("k", [T, kd]);
  const v = g.act("v", [T, kd]);
  const att = g.act("att", [T, qDim]); // attention output, before wo
  const xb2 = g.act("xb2", [T, c.dim]); // a sub-block's output
  const hb = g.act("hb", [T, c.hiddenDim]); // FFN gate, then silu(gate) * up
  const hb2 = g.act("hb2", [T, c.hiddenDim]); // FFN up
  const xl = g.act("x_last", [R, c.dim]); // rows that need logits
  const xlNorm = g.act("x_last_norm", [R, c.dim]);
  const logits = g.act("logits", [R, c.vocabSize]);

  g.push({ op: "embed", table: w.tokEmbd, out: x }); // x = tok_embd[tokens]            (T, dim)
  for (let l = 0; l < c.nLayers; l++) {
    const L = w.layers[l], cache = kv.layers[l];
    // attention
    g.push({ op: "rms_norm", x, weight: L.attnNorm, out: xb, eps: c.normEps, rows: "tokens" }); // (T, dim)
    g.push({ op: "matmul", x: xb, w: L.wq, out: q, rows: "tokens", actQuant: aq(L.wq) }); // (T, nHeads*headDim)
    g.push({ op: "matmul", x: xb, w: L.wk, out: k, rows: "tokens", actQuant: aq(L.wk) }); // (T, kvDim)
    g.push({ op: "matmul", x: xb, w: L.wv, out: v, rows: "tokens", actQuant: aq(L.wv) }); // (T, kvDim)
    g.push({
      op: "rope",
      x: q,
      nHeads: c.nHeads,
      headDim: c.headDim,
      style: c.ropeStyle,
      invFreq: w.invFreq,
    });
    g.push({
      op: "rope",
      x: k,
      nHeads: c.nKvHeads,
      headDim: c.headDim,
      style: c.ropeStyle,
      invFreq: w.invFreq,
    });
    g.push({ op: "kv_write", k, v, cache }); //                                              cache[slot(pos)] = k, v
    g.push({
      op: "attention",
      q,
      cache,
      out: att,
      nHeads: c.nHeads,
      nKvHeads: c.nKvHeads,
      headDim: c.headDim,
      scale: 1 / Math.sqrt(c.headDim),
    }); //                                                                                    (T, nHeads*headDim)
    g.push({ op: "matmul", x: att, w: L.wo, out: xb2, rows: "tokens", actQuant: aq(L.wo) }); // (T, dim)
    g.push({ op: "add", a: x, b: xb2, out: x, rows: "tokens" }); //                          x += attn
    // feed-forward (SwiGLU)
    g.push({ op: "rms_norm", x, weight: L.ffnNorm, out: xb, eps: c.normEps, rows: "tokens" }); // (T, dim)
    g.push({ op: "matmul", x: xb, w: L.w1, out: hb, rows: "tokens", actQuant: aq(L.w1) }); // (T, hiddenDim)
    g.push({ op: "matmul", x: xb, w: L.w3, out: hb2, rows: "tokens", actQuant: aq(L.w3) }); // (T, hiddenDim)
    g.push({ op: "silu_mul", gate: hb, up: hb2, out: hb }); //                               (T, hiddenDim)
    g.push({ op: "matmul", x: hb, w: L.w2, out: xb2, rows: "tokens", actQuant: aq(L.w2) }); // (T, dim)
    g.push({ op: "add", a: x, b: xb2, out: x, rows: "tokens" }); //                          x += ffn
  }
  g.push({ op: "gather_rows", x, out: xl }); //                                               (R, dim)
  g.push({ op: "rms_norm", x: xl, weight: w.norm, out: xlNorm, eps: c.normEps, rows: "logits" }); // (R, dim)
  g.push({ op: "matmul", x: xlNorm, w: w.output, out: logits, rows: "logits" }); //          (R, vocabSize)

  const ops = [...g.ops];
  const ids = g.act("ids", [R], "i32");
  const sample = { op: "sample", x: logits, out: ids } as const;
  const argmax = { op: "argmax", x: logits, out: ids } as const;
  const greedy = options.deviceSampling !== false && backend.supportsOp(sample)
    ? { ops: [...ops, sample], ids, sampling: true }
    : backend.supportsOp(argmax)
    ? { ops: [...ops, argmax], ids, sampling: false }
    : undefined;
  return { ops, logits, maxTokens: T, maxLogitRows: R, greedy, free: () => g.free() };
}
