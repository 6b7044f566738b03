/**
 * Test helpers: seeded RNG, NMSE, the per-dtype tolerance table, paths to the shared test models and a
 * step for graphs without attention.
 * @module
 */
import { existsSync } from "node:fs";
import type { StepParams } from "../src/ops.ts";

/** A step of `n` token rows (all zero: token 0 at position 0 of sequence 0) and no logit rows, for graphs
 * of ops that do not read the KV cache (matmuls, norms, embeddings). */
export function rowsStep(n: number, tokens: Int32Array = new Int32Array(n)): StepParams {
  return {
    nTokens: n,
    tokens,
    positions: new Int32Array(n),
    seqIndex: new Int32Array(n),
    blockTables: new Int32Array(1),
    maxBlocksPerSeq: 1,
    logitRows: new Int32Array(0),
  };
}

/** Mulberry32: a tiny deterministic PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [-scale, scale). */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Normalised mean squared error: sum((a-b)^2) / sum(b^2). */
export function nmse(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`nmse: lengths differ (${a.length} vs ${b.length})`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) return Infinity;
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return den === 0 ? num : num / den;
}

/** Rows of one length concatenated into one array (e.g. the rows Engine.logitsFor returns). */
export function flatten(rows: Float32Array[]): Float32Array {
  const out = new Float32Array(rows.length * rows[0].length);
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}

/**
 * Runs `fn`, which may set or delete environment variable `key` (the CUDA library reads its A/B switches at
 * each launch), then puts `key` back as it was before, set or unset.
 */
export async function restoringEnv<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const before = Deno.env.get(key);
  try {
    return await fn();
  } finally {
    if (before === undefined) Deno.env.delete(key);
    else Deno.env.set(key, before);
  }
}

/** One NMSE bound per weight dtype, used by every parity test. */
export const NMSE_TOLERANCE: Record<string, number> = {
  f32: 1e-10,
  f16: 1e-5,
  bf16: 1e-4,
  q8_0: 1e-3,
  q4_0: 2e-2,
  q4_1: 2e-2,
  q4_k: 2e-2,
  q6_k: 2e-3,
};

/** Where the shared test models live (env LLAMA_TS_MODELS overrides). */
export const MODELS_DIR: string = Deno.env.get("LLAMA_TS_MODELS") ??
  new URL("../../shared/models", import.meta.url).pathname;

/** Path of a shared model file, or undefined (with a visible message) when absent. */
export function sharedModel(file: string): string | undefined {
  const p = `${MODELS_DIR}/${file}`;
  if (existsSync(p)) return p;
  console.warn(`SKIP: ${p} not found (set LLAMA_TS_MODELS to the shared models folder)`);
  return undefined;
}
