/**
 * Moving a parsed model's tensors onto a backend, one tensor at a time in bounded chunks, so no model
 * is ever held whole in memory. Norm vectors are small and always become f32 so kernels need one
 * norm type; matrices keep their file dtype (quantization is a weight property, not a new model).
 * @module
 */
import type { Backend } from "../backend.ts";
import type { Tensor } from "../tensor.ts";
import type { ModelFile, TensorEntry } from "../format/model_file.ts";
import type { LlamaConfig } from "./config.ts";
import type { ProgressCallback } from "../types.ts";
import { LlmError } from "../errors.ts";
import { dequantize } from "../dtype.ts";
import { requiredTensors } from "../format/model_file.ts";
import { ropeInvFreq } from "./rope.ts";

/** One decoder layer's weights. */
export interface LayerWeights {
  readonly attnNorm: Tensor;
  readonly wq: Tensor;
  readonly wk: Tensor;
  readonly wv: Tensor;
  readonly wo: Tensor;
  readonly ffnNorm: Tensor;
  readonly w1: Tensor;
  readonly w2: Tensor;
  readonly w3: Tensor;
}

/** All weights on a backend. */
export interface LlamaWeights {
  readonly config: LlamaConfig;
  readonly tokEmbd: Tensor;
  readonly layers: readonly LayerWeights[];
  readonly norm: Tensor;
  /** The LM head: `tokEmbd` itself when embeddings are tied. */
  readonly output: Tensor;
  /** RoPE inverse frequencies (headDim/2), f32. */
  readonly invFreq: Tensor;
  /** Every tensor allocated, for freeing. */
  readonly all: readonly Tensor[];
  readonly byteLength: number;
}

const CHUNK = 64 << 20;

/** Upload one entry's bytes in chunks of at most 64 MiB. */
async function uploadEntry(backend: Backend, e: TensorEntry, signal?: AbortSignal): Promise<Tensor> {
  const norm = e.shape.length === 1;
  if (norm && e.dtype !== "f32") {
    const raw = await e.source.read(e.byteOffset, e.byteLength);
    const f = new Float32Array(e.shape[0]);
    dequantize(e.dtype, raw, f);
    const t = backend.alloc("f32", e.shape, "weights", e.name);
    await backend.upload(t, f);
    return t;
  }
  if (!backend.caps.weightDTypes.includes(e.dtype)) {
    throw new LlmError(
      "UNSUPPORTED_DTYPE",
      `tensor ${e.name} is ${e.dtype}, which backend ${backend.name} cannot use ` +
        `(it supports ${
          backend.caps.weightDTypes.join(", ")
        }); pick another --backend or re-quantize the model`,
    );
  }
  const t = backend.alloc(e.dtype, e.shape, "weights", e.name);
  for (let off = 0; off < e.byteLength; off += CHUNK) {
    signal?.throwIfAborted();
    const n = Math.min(CHUNK, e.byteLength - off);
    await backend.upload(t, await e.source.read(e.byteOffset + off, n), { byteOffset: off });
  }
  return t;
}

/** Upload every tensor a model needs. Progress reports bytes done over bytes total. */
export async function uploadWeights(
  backend: Backend,
  model: ModelFile,
  options: { onProgress?: ProgressCallback; signal?: AbortSignal } = {},
): Promise<LlamaWeights> {
  const c = model.config;
  const names = requiredTensors(c);
  const total = names.reduce((s, n) => s + model.tensors.get(n)!.byteLength, 0);
  const all: Tensor[] = [];
  const get = new Map<string, Tensor>();
  let done = 0;
  try {
    for (const name of names) {
      const e = model.tensors.get(name)!;
      const t = await uploadEntry(backend, e, options.signal);
      all.push(t);
      get.set(name, t);
      done += e.byteLength;
      options.onProgress?.({ phase: "upload", done, total, label: name });
    }
    const invFreq = backend.alloc("f32", [c.headDim / 2], "weights", "rope_inv_freq");
    all.push(invFreq);
    await backend.upload(invFreq, ropeInvFreq(c));
    const layers: LayerWeights[] = [];
    for (let i = 0; i < c.nLayers; i++) {
      const g = (n: string): Tensor => get.get(`l${i}.${n}`)!;
      layers.push({
        attnNorm: g("attn_norm"),
        wq: g("wq"),
        wk: g("wk"),
        wv: g("wv"),
        wo: g("wo"),
        ffnNorm: g("ffn_norm"),
        w1: g("w1"),
        w2: g("w2"),
        w3: g("w3"),
      });
    }
    const tokEmbd = get.get("tok_embd")!;
    return {
      config: c,
      tokEmbd,
      layers,
      norm: get.get("norm")!,
      output: c.tiedEmbeddings ? tokEmbd : get.get("output")!,
      invFreq,
      all,
      byteLength: all.reduce((s, t) => s + t.byteLength, 0),
    };
  } catch (e) {
    for (const t of all) backend.free(t);
    throw e;
  }
}
