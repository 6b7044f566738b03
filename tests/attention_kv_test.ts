/**
 * KV write + attention op sequences on every backend against the ref backend, per KV cache dtype and
 * head dim 16..128: two sequences over shuffled paged blocks, a mixed prefill step (both sequences), decode
 * steps (one row per sequence, positions up to 29), a decode-sized step of three rows of one sequence and a
 * prefill-sized continuation; with GQA, with and without RoPE ahead of the write (the webgpu backend folds
 * a rope + kv_write into its decode attention, and runs a kv_write without rope as its own node; the int8
 * cache quantizes per (row, kv head), so the head dim must reach that node: found broken at head dims
 * 16..64 on 2026-11-25). WebGPU also runs with its decode attention split as on a GPU (short rows too),
 * every 8 positions, and one position per workgroup (flash decoding).
 */
import assert from "node:assert/strict";
import type { Backend } from "../src/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import type { KvLayer, Op, StepParams } from "../src/ops.ts";
import type { RopeStyle } from "../src/model/config.ts";
import type { DType } from "../src/types.ts";
import { pickBackend } from "../mod.ts";
import { createWebGpuBackend, webGpuInfo } from "../src/backends/webgpu/webgpu.ts";
import { DEFAULT_TUNING } from "../src/backends/webgpu/encode.ts";
import { nmse, randn } from "./_util.ts";
import { forEachBackend } from "./_backends.ts";

type Variant = "kv_write" | RopeStyle;

interface Case {
  readonly kvDtype: DType;
  readonly hd: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly variant: Variant;
}

const BLOCK = 4, BLOCKS = 16, MAX_ROWS = 37, PER_SEQ = 8;
/** Physical blocks of sequence 0 (row 0) and 1 (row 1), shuffled. */
const TABLES = Int32Array.of(5, 0, 12, 3, 9, 14, 1, 7, 2, 11, 6, 15, 4, 8, 10, 13);

/** The steps: (sequence, position) per row. */
const STEPS: { seq: number; pos: number }[][] = [
  // prefill: sequence 0 positions 0..19 and sequence 1 positions 0..16 in one step (webgpu's prefill
  // kernel: two blocks of 32 rows, the first with both sequences; sequence 1 ends one position into a
  // second tile of 16 positions)
  [
    ...Array.from({ length: 20 }, (_, p) => ({ seq: 0, pos: p })),
    ...Array.from({ length: 17 }, (_, p) => ({ seq: 1, pos: p })),
  ],
  // decode: one row per sequence
  ...Array.from({ length: 4 }, (_, i) => [{ seq: 0, pos: 20 + i }, { seq: 1, pos: 17 + i }]),
  // three rows of one sequence in a decode-sized step
  [{ seq: 0, pos: 24 }, { seq: 0, pos: 25 }, { seq: 0, pos: 26 }],
  // a prefill-sized continuation of sequence 1 and one decode row of sequence 0
  [...Array.from({ length: 9 }, (_, i) => ({ seq: 1, pos: 21 + i })), { seq: 0, pos: 27 }],
];

async function put(
  b: Backend,
  shape: number[],
  data: Float32Array,
  kind: "compute" | "weights",
): Promise<Tensor> {
  const t = b.alloc("f32", shape, kind, "t");
  await b.upload(t, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return t;
}

/** Every step's attention output (live rows only), concatenated. */
async function runCase(b: Backend, c: Case): Promise<Float32Array> {
  const { hd, nHeads, nKvHeads, kvDtype } = c;
  const qd = nHeads * hd, kd = nKvHeads * hd, rows = BLOCKS * BLOCK;
  const owned: Tensor[] = [];
  const alloc = (
    dtype: DType,
    shape: number[],
    kind: "compute" | "kv" | "weights",
    label: string,
  ): Tensor => {
    const t = b.alloc(dtype, shape, kind, label);
    owned.push(t);
    return t;
  };
  try {
    const cache: KvLayer = {
      k: alloc(kvDtype, [rows, kd], "kv", "ck"),
      v: alloc(kvDtype, [rows, kd], "kv", "cv"),
      ...(kvDtype === "i8"
        ? {
          kScale: alloc("f32", [rows, nKvHeads], "kv", "ks"),
          vScale: alloc("f32", [rows, nKvHeads], "kv", "vs"),
        }
        : {}),
      blockSize: BLOCK,
    };
    const q = alloc("f32", [MAX_ROWS, qd], "compute", "q");
    const k = alloc("f32", [MAX_ROWS, kd], "compute", "k");
    const v = alloc("f32", [MAX_ROWS, kd], "compute", "v");
    const out = alloc("f32", [MAX_ROWS, qd], "compute", "out");
    const ops: Op[] = [];
    if (c.variant !== "kv_write") {
      const inv = Float32Array.from({ length: hd / 2 }, (_, j) => 10000 ** (-2 * j / hd));
      const invFreq = await put(b, [hd / 2], inv, "weights");
      owned.push(invFreq);
      ops.push(
        { op: "rope", x: q, nHeads, headDim: hd, style: c.variant, invFreq },
        { op: "rope", x: k, nHeads: nKvHeads, headDim: hd, style: c.variant, invFreq },
      );
    }
    ops.push(
      { op: "kv_write", k, v, cache },
      { op: "attention", q, cache, out, nHeads, nKvHeads, headDim: hd, scale: 1 / Math.sqrt(hd) },
    );
    using g = b.compile(ops);
    const got: number[] = [];
    for (const [si, rowsOf] of STEPS.entries()) {
      const n = rowsOf.length;
      const fill = (w: number, seed: number): Float32Array => {
        const x = new Float32Array(MAX_ROWS * w);
        x.set(randn(n * w, seed));
        return x;
      };
      for (const [t, w, seed] of [[q, qd, 100], [k, kd, 200], [v, kd, 300]] as const) {
        await b.upload(t, new Uint8Array(fill(w, seed + si).buffer));
      }
      const step: StepParams = {
        nTokens: n,
        tokens: new Int32Array(n),
        positions: Int32Array.from(rowsOf, (r) => r.pos),
        seqIndex: Int32Array.from(rowsOf, (r) => r.seq),
        blockTables: TABLES,
        maxBlocksPerSeq: PER_SEQ,
        logitRows: new Int32Array(0),
      };
      await g.run(step);
      got.push(...new Float32Array(await b.download(out)).subarray(0, n * qd));
    }
    return Float32Array.from(got);
  } finally {
    for (const t of owned) b.free(t);
  }
}

const CASES: Case[] = [];
for (const hd of [16, 32, 64, 128]) {
  // NG 4 at the smaller head dims (up to 8 query heads per KV head), 3 at 128
  const [nHeads, nKvHeads] = hd === 16 ? [16, 2] : hd === 128 ? [6, 2] : [8, 2];
  for (const variant of ["kv_write", "interleaved", "half"] as const) {
    CASES.push({ kvDtype: "i8", hd, nHeads, nKvHeads, variant });
  }
  CASES.push({ kvDtype: "f16", hd, nHeads, nKvHeads, variant: "half" });
}
CASES.push({ kvDtype: "f32", hd: 64, nHeads: 8, nKvHeads: 2, variant: "kv_write" });

const info = await webGpuInfo();

for (const c of CASES) {
  Deno.test(
    `kv_write + attention, ${c.kvDtype} cache, headDim ${c.hd}, ${c.nHeads}/${c.nKvHeads} heads, ` +
      `${c.variant === "kv_write" ? "no rope" : `${c.variant} rope`}: decode and prefill steps match ref`,
    async () => {
      let want: Float32Array;
      {
        using ref = await pickBackend("ref");
        want = await runCase(ref, c);
      }
      assert.ok(want.every(Number.isFinite));
      // the same quantized cache on both sides: only summation order (and RoPE's table rounding, which
      // may move an int8 code by one where x / scale lies on a half) remains
      const bound = c.kvDtype === "f32"
        ? 1e-10
        : c.kvDtype === "f16" || c.variant === "kv_write"
        ? 1e-9
        : 1e-6;
      const check = (name: string, got: Float32Array): void => {
        const e = nmse(got, want);
        assert.ok(e < bound, `${name}: nmse ${e.toExponential(2)} >= ${bound}`);
      };
      await forEachBackend(async (b) => {
        if (b.name === "ref" || !b.caps.kvDTypes.includes(c.kvDtype)) return;
        check(b.name, await runCase(b, c));
      });
      if (info.available) {
        // forEachBackend above ran the adapter's default (one split per row on lavapipe, where splitGroups
        // defaults to 0); then a GPU's default splits of short rows; splits of 8 positions; one position
        // per split (up to 32 splits: the 3-row step leaves splits empty)
        for (
          const [name, tuning] of [
            ["GPU default splits", { splitGroups: DEFAULT_TUNING.splitGroups }],
            ["splits of 8 positions", { splitTokens: 8, splitGroups: 0 }],
            ["one position per split", { splitMinTokens: 1, splitGroups: 1 << 16 }],
          ] as const
        ) {
          using b = await createWebGpuBackend({ tuning });
          check(`webgpu, ${name}`, await runCase(b, c));
        }
      }
    },
  );
}
