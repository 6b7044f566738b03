/**
 * Shared by the webgpu GEMV benchmarks (bench/webgpu_gemv_sweep.ts, bench/webgpu_gemv_chain.ts): random
 * f16 weights and the profiling view of a compiled graph (their one-row step is tests/_util.ts rowsStep(1)).
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

/** WgGraph's profiling method (benchmarks only). */
export type Profiled = {
  profile(
    s: unknown,
    r: number,
    o?: { mode?: "reps" | "single" | "whole" },
  ): Promise<{ label: string; us: number }[]>;
};
