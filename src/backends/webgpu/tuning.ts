/**
 * Kernel shape choices of the webgpu backend: the GEMV / W8A8 thread layouts, the GEMM tile, the decode
 * attention splits and the GEMV row limit ({@link Tuning}), with the defaults measured on the H100
 * ({@link DEFAULT_TUNING}). encode.ts applies them (and re-exports these names).
 * @module
 */
/** Weight formats of the GEMV kernels. */
export type GemvFormat = "f32" | "f16" | "bf16" | "q8" | "q4";

/** A GEMV-style thread layout: NR output rows per thread, TK threads along K, TR thread rows. */
export interface Layout {
  readonly NR: number;
  readonly TK: number;
  readonly TR: number;
  /**
   * Benchmarks only (wrong results): the q8 / q4 one-row GEMV without dequantization (1) or also
   * without reading x (2), to split its time into memory and arithmetic (bench/webgpu_gemv_chain.ts).
   */
  readonly probe?: number;
  /**
   * q8 / q4, one row of x: add each output's TK partial sums in two stages (matmul_gemv_q's RED2; used
   * where NR divides TK) instead of one thread adding all of them.
   */
  readonly red2?: boolean;
  /**
   * f16, one row of x: matmul_gemv_q's register path (chunks of the next K step loaded ahead, x read from
   * memory, f32 math) instead of matmul_gemv_f16 (x staged in workgroup memory).
   */
  readonly regs?: boolean;
  /**
   * q8 / q4, one row of x: codes to floats by integer conversion, the code offset taken off per chunk
   * (matmul_gemv_q's I2F) instead of the mask-or-subtract per code.
   */
  readonly i2f?: boolean;
}

/** Kernel shape choices (defaults in {@link DEFAULT_TUNING}). */
export interface Tuning {
  /**
   * GEMV for one row of x (decode at batch 1, what bench/webgpu_gemv_chain.ts times): output rows per
   * thread, threads along K, thread rows, per weight format.
   */
  readonly gemv: Readonly<Record<GemvFormat, Layout>>;
  /** GEMV for 2..gemvMaxRows rows of x (batched decode), per weight format; not swept on a GPU yet. */
  readonly gemvBatch: Readonly<Record<GemvFormat, Layout>>;
  /** matmul_a8 (W8A8) for one row of x, its own layout: it is a different kernel from the q8/q4 GEMV. */
  readonly a8: Layout;
  /** matmul_a8 for more rows (batched decode, prefill row groups of 8). */
  readonly a8Batch: Layout;
  /**
   * GEMM thread tile (TM rows of x by TN weight rows, each 4 or 8; 16 x 16 threads). The shared tiles are
   * f32 (matmul_gemm) where they fit the adapter's workgroup memory, else f16 (matmul_gemm_f16, half the
   * memory; where the f16 variants are on and the weights are not f32), else the tile shrinks to 4 (see
   * gemmPlan). f16Tiles: f16 tiles first (on the H100 they were slower: int8 7B prefill 1,307–1,318
   * tok/s against 1,389 with f32 tiles, 2026-11-26; their f16 -> f32 conversions cost more than the
   * smaller tiles save).
   */
  readonly gemm: { readonly TM: number; readonly TN: number; readonly f16Tiles?: boolean };
  /** Cached positions per attention split when decoding (long contexts: more positions, more splits). */
  readonly splitTokens: number;
  /**
   * Decode attention workgroups to aim for at short contexts (splits x KV heads x rows): without it a
   * LLaMA-7B step had one workgroup per head, 32 on the H100's 132 SMs. WebGPU does not report a GPU's
   * core count; 256 is about 2x the H100's SMs. 0 turns it off (splits from splitTokens only); software
   * adapters (lavapipe) default to 0.
   */
  readonly splitGroups: number;
  /** Fewest cached positions per split when splitting for splitGroups. */
  readonly splitMinTokens: number;
  /** Most attention splits. */
  readonly maxSplits: number;
  /** Most rows a GEMV dispatch takes (more use GEMM). */
  readonly gemvMaxRows: number;
  /**
   * Queued decoding (decodeGreedy): the GPU time one burst of steps aims at, in ms. Each burst ends in
   * one read-back of its tokens; a longer burst leaves more room for the host's work between bursts,
   * and streams tokens in larger groups.
   */
  readonly burstMs: number;
}

/**
 * The default tuning, from the H100 runs (NVIDIA H100 80GB HBM3 over Vulkan; bench/RESULTS.md). One row of
 * x (2026-11-26, bench/webgpu_gemv_chain.ts: 8 chained 7B layers, clocks held up): f16 NR4 TK128 TR1 on
 * matmul_gemv_q's register path with the two-stage reduction, 162 us per layer against matmul_gemv_f16's
 * 374 (NR1 TK32 TR8); q8 NR4 TK128 TR1 with the two-stage reduction, 112 against 118 (NR4 TK64 TR2) (107
 * with I2F in the chain, but the 7B int8 step ran 7% slower with it: not on for q8); q4 NR4 TK64 TR2 with
 * the two-stage reduction and I2F, 118 against 129 (NR4 TK32 TR4; the 7B int4 step 5% faster with I2F).
 * Batched rows keep the earlier defaults (run 1 put more rows per thread 4-5x slower in an isolated sweep
 * that, as found later, ran at idle clocks). matmul_a8, one row: NR1 TK32 TR4 (3,826 us per W8A8 decode
 * step in run 1, 7,716 us with run 2's q8 NR4 TK64 TR2); more rows: NR4 TK64 TR2 (W8A8 prefill 398 tok/s
 * in run 2, 313 with NR1 TK32 TR4 in run 1). GEMM tile 8 x 8 (2.2x the 4 x 4 one). Decode attention
 * splits its positions until a step has ~256 workgroups, at least 32 positions each: run 3 measured splits
 * of >= 8 positions against one split per row (attention + combine per 32-layer step): 511 against 432 us
 * at position 16 (3 splits: the combine dispatch costs ~9 us per layer), 931 against 1,043 at 80, 1,073
 * against 1,647 at 143 (8 splits each).
 */
export const DEFAULT_TUNING: Tuning = {
  gemv: {
    f32: { NR: 1, TK: 32, TR: 8 },
    f16: { NR: 4, TK: 128, TR: 1, regs: true, red2: true },
    bf16: { NR: 1, TK: 32, TR: 8 },
    q8: { NR: 4, TK: 128, TR: 1, red2: true },
    q4: { NR: 4, TK: 64, TR: 2, red2: true, i2f: true },
  },
  gemvBatch: {
    f32: { NR: 1, TK: 32, TR: 8 },
    f16: { NR: 1, TK: 32, TR: 8 },
    bf16: { NR: 1, TK: 32, TR: 8 },
    q8: { NR: 1, TK: 32, TR: 4 },
    q4: { NR: 2, TK: 16, TR: 4 },
  },
  a8: { NR: 1, TK: 32, TR: 4 },
  a8Batch: { NR: 4, TK: 64, TR: 2 },
  gemm: { TM: 8, TN: 8 },
  splitTokens: 256,
  splitGroups: 256,
  splitMinTokens: 32,
  maxSplits: 32,
  gemvMaxRows: 8,
  burstMs: 15,
};

/** Workgroup memory of a GEMM tile: x (32 k by 4 TM + 1 vec4, padded) and weights (32 k by 4 TN vec4). */
export function gemmTileBytes(TM: number, TN: number, f16: boolean): number {
  return 32 * (4 * TM + 1 + 4 * TN) * (f16 ? 8 : 16);
}

/**
 * The prefill GEMM's kernel and tile for an adapter's workgroup memory (`limit` bytes): the tuned tile
 * with f32 tiles, then with f16 tiles (only where `f16` allows them: f16 variants on, weights not f32;
 * first where `gemm.f16Tiles`), then TN, TM or both down to 4. Undefined when not even a 4 x 4 tile fits.
 */
export function gemmPlan(
  limit: number,
  f16: boolean,
  gemm: Tuning["gemm"],
): { kernel: "matmul_gemm" | "matmul_gemm_f16"; TM: number; TN: number } | undefined {
  const kinds = !f16 ? [false] : gemm.f16Tiles ? [true, false] : [false, true];
  for (const [TM, TN] of [[gemm.TM, gemm.TN], [gemm.TM, 4], [4, gemm.TN], [4, 4]]) {
    for (const h of kinds) {
      if (gemmTileBytes(TM, TN, h) <= limit) return { kernel: h ? "matmul_gemm_f16" : "matmul_gemm", TM, TN };
    }
  }
  return undefined;
}
