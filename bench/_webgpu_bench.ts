/**
 * Shared by the webgpu GEMV benchmarks (bench/webgpu_gemv_sweep.ts, bench/webgpu_gemv_chain.ts): random
 * f16 weights, the one-row decode step they run, and the profiling view of a compiled graph.
 * @module
 */
import { f32ToF16 } from "../src/dtype.ts";

/** `n` f16 values uniform in (-scale, scale), drawn from a 4,096-entry table by an xorshift (fast). */
export function randomF16(n: number, seed: number, scale: number): Uint16Array {
  const out = new Uint16Array(n), table = new Uint16Array(4096);
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  for (let i = 0; i < table.length; i++) table[i] = f32ToF16(((next() / 2 ** 32) * 2 - 1) * scale);
  for (let i = 0; i < n; i++) out[i] = table[next() & 4095];
  return out;
}

/** A step of one row of x, no attention, no logit rows. */
export const ONE_ROW_STEP = {
  nTokens: 1,
  tokens: new Int32Array(1),
  positions: new Int32Array(1),
  seqIndex: new Int32Array(1),
  blockTables: new Int32Array(1),
  maxBlocksPerSeq: 1,
  logitRows: new Int32Array(0),
};

/** WgGraph's profiling method (benchmarks only). */
export type Profiled = {
  profile(
    s: unknown,
    r: number,
    o?: { mode?: "reps" | "single" | "whole" },
  ): Promise<{ label: string; us: number }[]>;
};
