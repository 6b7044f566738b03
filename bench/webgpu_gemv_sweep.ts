/**
 * GEMV shape sweep: the decode matmuls (one row of x) of a LLaMA-7B layer, fused as the model runs them,
 * in each weight format the 7B bench uses (f16; int8 and int4 quantized at load from f16), for every GEMV thread layout
 * (NR rows per thread, TK threads along K, TR thread rows), timed with timestamp queries; and the prefill
 * GEMM's thread tiles on 512 rows. Prints tables and writes the best layouts as a tuning file for
 * bench/webgpu_7b.ts --tuning.
 * Its timings are of single ops repeated over weights the GPU's cache partly holds, between idle gaps
 * in which the H100's SM clock drops (1,980 -> 345 MHz within seconds; bench/RESULTS.md, 2026-11-26):
 * rank one-row GEMV layouts with bench/webgpu_gemv_chain.ts instead, which chains 8 layers and keeps the
 * clock up. This sweep stays for the prefill GEMM tiles.
 *
 *   deno run -A bench/webgpu_gemv_sweep.ts [--out tuning.json] [--json sweep.json] [--quick] [--scale 8]
 *        [--formats f16,q8,q4] [--no-gemm]
 */
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend.ts";
import type { Op } from "../src/ops.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Tuning } from "../src/backends/webgpu/encode.ts";
import { DEFAULT_TUNING } from "../src/backends/webgpu/encode.ts";
import { createWebGpuBackend } from "../src/backends/webgpu/webgpu.ts";
import { type Profiled, randomF16 } from "./_webgpu_bench.ts";
import { rowsStep } from "../tests/_util.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string" },
    json: { type: "string" },
    quick: { type: "boolean", default: false },
    scale: { type: "string", default: "1" },
    formats: { type: "string", default: "f16,q8,q4" },
    "no-gemm": { type: "boolean", default: false },
  },
});
// --scale N divides the shapes (rounded to multiples of 128) for a quick try on a slow adapter
const div = (n: number): number => Math.max(128, Math.round(n / Number(f.scale) / 128) * 128);

// 7B decode per layer, as the model runs it (bench/webgpu_7b.ts): QKV (3 x 4096 x 4096 on one x, one
// fused dispatch), wo (4096 x 4096), gate-up (2 x 11008 x 4096 with silu, one fused dispatch that reads
// both matrices per thread: twice the registers of a plain GEMV) and w2 (4096 x 11008). A layout's score
// is the sum: the layer's GEMV time. (Timing single matrices only chose q4 NR8 TK64 TR1 once, which the
// gate-up fusion made 4x slower than NR2 TK16 TR4 in the 7B step.)
const SHAPES = [
  { name: "qkv", m: div(4096), k: div(4096), n: 3 },
  { name: "wo", m: div(4096), k: div(4096), n: 1 },
  { name: "gateup", m: div(11008), k: div(4096), n: 2 },
  { name: "w2", m: div(4096), k: div(11008), n: 1 },
];
const FORMATS = [
  { name: "f16" as const, quant: undefined },
  { name: "q8" as const, quant: "int8" as const },
  { name: "q4" as const, quant: "int4" as const },
].filter((x) => f.formats!.split(",").includes(x.name));
/** Thread layouts per format (one row of x: matmul_gemv_q takes up to 4 rows per thread). */
function layouts(q: boolean): { NR: number; TK: number; TR: number }[] {
  const out: { NR: number; TK: number; TR: number }[] = [];
  for (const NR of q ? [1, 2, 4] : [1, 2, 4]) {
    for (const TK of [16, 32, 64]) {
      for (const TR of [1, 2, 4, 8]) {
        const wg = TK * TR;
        if (wg >= 64 && wg <= 512 && (!f.quick || (TK === 32 && NR <= 4))) out.push({ NR, TK, TR });
      }
    }
  }
  return out;
}

const GEMM_TILES = [{ TM: 4, TN: 4 }, { TM: 4, TN: 8 }, { TM: 8, TN: 4 }, { TM: 8, TN: 8 }];
const gemmUs = new Map<string, number>();
const gemmRows: { format: string; tile: string; us: number; tflops: number }[] = [];

const step = rowsStep(1);

const rows: { format: string; shape: string; layout: string; us: number; gbps: number }[] = [];
const layerRows: { format: string; layout: string; us: number }[] = [];
const best: Partial<Record<"f16" | "q8" | "q4", { NR: number; TK: number; TR: number }>> = {};
let device = "";
for (const fmt of FORMATS) {
  const backend = await createWebGpuBackend({ weightQuant: fmt.quant }) as Backend & { tuning: Tuning };
  device = backend.caps.device;
  const mats = [];
  for (const s of SHAPES) {
    const ws: Tensor[] = [], outs: Tensor[] = [];
    for (let i = 0; i < s.n; i++) {
      const w = backend.alloc("f16", [s.m, s.k], "weights", `${s.name}${i}`);
      await backend.upload(w, randomF16(s.m * s.k, s.m + s.k + i, 1 / Math.sqrt(s.k)));
      ws.push(w);
      outs.push(backend.alloc("f32", [1, s.m], "compute", `${s.name}o${i}`));
    }
    const x = backend.alloc("f32", [1, s.k], "compute", "x");
    await backend.upload(x, new Float32Array(s.k).fill(0.5));
    const ops: Op[] = ws.map((w, i) => ({ op: "matmul", x, w, out: outs[i], rows: "tokens" }));
    if (s.name === "gateup") {
      const h = backend.alloc("f32", [1, s.m], "compute", "h");
      ops.push({ op: "silu_mul", gate: outs[0], up: outs[1], out: h });
    }
    // bytes one call reads: chunks plus scales, as the device stores them
    const bytesPerRow = fmt.name === "f16"
      ? s.k * 2
      : fmt.name === "q8"
      ? s.k + 4
      : s.k / 2 + (s.k / 128 / 2) * 4;
    mats.push({ ...s, w: ws[0], x, ops, bytes: s.n * s.m * bytesPerRow });
  }
  let bestScore = Infinity;
  for (const layout of layouts(fmt.name !== "f16")) {
    backend.tuning = { ...DEFAULT_TUNING, gemv: { ...DEFAULT_TUNING.gemv, [fmt.name]: layout } };
    let score = 0;
    for (const m of mats) {
      using g = backend.compile(m.ops);
      await g.run(step);
      const prof = await (g as unknown as Profiled).profile(step, 20);
      const us = prof.reduce((a, p) => a + p.us, 0);
      score += us;
      rows.push({
        format: fmt.name,
        shape: `${m.name} ${m.n > 1 ? `${m.n} x ` : ""}${m.m} x ${m.k}`,
        layout: `NR${layout.NR} TK${layout.TK} TR${layout.TR}`,
        us,
        gbps: m.bytes / (us * 1e3),
      });
    }
    layerRows.push({ format: fmt.name, layout: `NR${layout.NR} TK${layout.TK} TR${layout.TR}`, us: score });
    if (score < bestScore) {
      bestScore = score;
      best[fmt.name] = layout;
    }
  }
  // prefill GEMM tiles (512 rows of x) on the square shape, summed over the formats
  const x512 = backend.alloc("f32", [512, mats[0].k], "compute", "x512");
  await backend.upload(x512, new Float32Array(512 * mats[0].k).fill(0.25));
  const o512 = backend.alloc("f32", [512, mats[0].m], "compute", "o512");
  const step512 = {
    ...step,
    nTokens: 512,
    tokens: new Int32Array(512),
    positions: new Int32Array(512),
    seqIndex: new Int32Array(512),
  };
  for (const gemm of f["no-gemm"] ? [] : GEMM_TILES) {
    backend.tuning = { ...DEFAULT_TUNING, gemm };
    using g = backend.compile([{ op: "matmul", x: x512, w: mats[0].w, out: o512, rows: "tokens" }]);
    await g.run(step512);
    const us = (await (g as unknown as Profiled).profile(step512, 5)).reduce((a, p) => a + p.us, 0);
    const key = `TM${gemm.TM} TN${gemm.TN}`;
    gemmUs.set(key, (gemmUs.get(key) ?? 0) + us);
    gemmRows.push({
      format: fmt.name,
      tile: key,
      us,
      tflops: (2 * 512 * mats[0].m * mats[0].k) / (us * 1e6),
    });
  }
  backend[Symbol.dispose]();
  console.error(`${fmt.name}: best ${JSON.stringify(best[fmt.name])}`);
}
const bestTile = [...gemmUs].sort((a, b) => a[1] - b[1])[0]?.[0];
const gemmBest = GEMM_TILES.find((t) => `TM${t.TM} TN${t.TN}` === bestTile) ?? DEFAULT_TUNING.gemm;

const def = DEFAULT_TUNING.gemv;
const isDefault = (fmt: string, l: string): boolean => {
  const d = def[fmt as "f16"];
  return l === `NR${d.NR} TK${d.TK} TR${d.TR}`;
};
console.log(
  `GEMV sweep on ${device} (one row of x; device time per call, fused as in the 7B step; * = default layout)`,
);
console.log("| format | op m x k | layout | us | GB/s |");
console.log("| --- | --- | --- | --- | --- |");
for (const fmt of FORMATS) {
  for (const s of SHAPES) {
    const rs = rows.filter((r) => r.format === fmt.name && r.shape.startsWith(`${s.name} `)).sort((a, b) =>
      a.us - b.us
    );
    const show = [
      ...rs.slice(0, 3),
      ...rs.filter((r) => isDefault(fmt.name, r.layout) && !rs.slice(0, 3).includes(r)),
    ];
    for (const r of show) {
      console.log(
        `| ${r.format} | ${r.shape} | ${r.layout}${isDefault(r.format, r.layout) ? " *" : ""} | ${
          r.us.toFixed(1)
        } | ${r.gbps.toFixed(r.gbps < 10 ? 2 : 0)} |`,
      );
    }
  }
}
console.log("");
console.log("One layer's GEMVs (qkv + wo + gateup + w2), the score; best 3 and the default per format");
console.log("| format | layout | us per layer | us per 32 layers |");
console.log("| --- | --- | --- | --- |");
for (const fmt of FORMATS) {
  const rs = layerRows.filter((r) => r.format === fmt.name).sort((a, b) => a.us - b.us);
  for (const r of [...rs.slice(0, 3), ...rs.slice(3).filter((r) => isDefault(fmt.name, r.layout))]) {
    const star = isDefault(r.format, r.layout) ? " *" : "";
    console.log(`| ${r.format} | ${r.layout}${star} | ${r.us.toFixed(1)} | ${(32 * r.us).toFixed(0)} |`);
  }
}
if (gemmRows.length) {
  console.log("");
  console.log(
    `Prefill GEMM (512 x ${SHAPES[0].m} x ${
      SHAPES[0].k
    }) tiles; * = default, best over the formats: ${bestTile}`,
  );
  console.log("| format | tile | us | TFLOP/s |");
  console.log("| --- | --- | --- | --- |");
  for (const r of gemmRows) {
    const d = DEFAULT_TUNING.gemm;
    const star = r.tile === `TM${d.TM} TN${d.TN}` ? " *" : "";
    console.log(`| ${r.format} | ${r.tile}${star} | ${r.us.toFixed(0)} | ${r.tflops.toFixed(1)} |`);
  }
}
const tuning: Partial<Tuning> = { gemv: { ...def, ...best }, gemm: gemmBest };
if (f.out) await Deno.writeTextFile(f.out, JSON.stringify(tuning, null, 2));
if (f.json) {
  await Deno.writeTextFile(
    f.json,
    JSON.stringify({ device, rows, layerRows, best, gemmRows, gemmBest }, null, 2),
  );
}
