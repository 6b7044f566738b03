/**
 * GEMV shape sweep: the decode matmul (one row of x) of the LLaMA-7B matrix shapes, in each weight format
 * the 7B bench uses (f16; int8 and int4 quantized at load from f16), for every GEMV thread layout
 * (NR rows per thread, TK threads along K, TR thread rows), timed with timestamp queries; and the prefill
 * GEMM's thread tiles on 512 rows. Prints tables and writes the best layouts as a tuning file for
 * bench/webgpu_7b.ts --tuning.
 *
 *   deno run -A bench/webgpu_gemv_sweep.ts [--out tuning.json] [--json sweep.json] [--quick] [--scale 8]
 *        [--formats f16,q8,q4] [--no-gemm]
 */
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend.ts";
import type { Tuning } from "../src/backends/webgpu/encode.ts";
import { DEFAULT_TUNING } from "../src/backends/webgpu/encode.ts";
import { createWebGpuBackend } from "../src/backends/webgpu/webgpu.ts";
import { f32ToF16 } from "../src/dtype.ts";

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

// 7B decode per layer: QKV (3 x 4096 x 4096, one dispatch), wo (4096 x 4096), gate-up (2 x 11008 x 4096,
// one dispatch), w2 (4096 x 11008): weights per matrix shape
const SHAPES = [
  { m: div(4096), k: div(4096), weight: 4 },
  { m: div(11008), k: div(4096), weight: 2 },
  { m: div(4096), k: div(11008), weight: 1 },
];
const FORMATS = [
  { name: "f16" as const, quant: undefined },
  { name: "q8" as const, quant: "int8" as const },
  { name: "q4" as const, quant: "int4" as const },
].filter((x) => f.formats!.split(",").includes(x.name));
/** Thread layouts per format: the quantized kernel (matmul_gemv_q) takes up to 8 rows per thread. */
function layouts(q: boolean): { NR: number; TK: number; TR: number }[] {
  const out: { NR: number; TK: number; TR: number }[] = [];
  for (const NR of q ? [1, 2, 4, 8] : [1, 2, 4]) {
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

type Profiled = { profile(s: unknown, r: number): Promise<{ us: number }[]> };
const step = {
  nTokens: 1,
  tokens: new Int32Array(1),
  positions: new Int32Array(1),
  seqIndex: new Int32Array(1),
  blockTables: new Int32Array(1),
  maxBlocksPerSeq: 1,
  logitRows: new Int32Array(0),
};

function randomF16(n: number, seed: number, scale: number): Uint16Array {
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

const rows: { format: string; m: number; k: number; layout: string; us: number; gbps: number }[] = [];
const best: Partial<Record<"f16" | "q8" | "q4", { NR: number; TK: number; TR: number }>> = {};
let device = "";
for (const fmt of FORMATS) {
  const backend = await createWebGpuBackend({ weightQuant: fmt.quant }) as Backend & { tuning: Tuning };
  device = backend.caps.device;
  const mats = [];
  for (const s of SHAPES) {
    const w = backend.alloc("f16", [s.m, s.k], "weights", `w${s.m}x${s.k}`);
    await backend.upload(w, randomF16(s.m * s.k, s.m + s.k, 1 / Math.sqrt(s.k)));
    const x = backend.alloc("f32", [1, s.k], "compute", "x");
    await backend.upload(x, new Float32Array(s.k).fill(0.5));
    const out = backend.alloc("f32", [1, s.m], "compute", "out");
    // bytes one call reads: chunks plus scales, as the device stores them
    const bytesPerRow = fmt.name === "f16"
      ? s.k * 2
      : fmt.name === "q8"
      ? s.k + 4
      : s.k / 2 + (s.k / 128 / 2) * 4;
    mats.push({ ...s, w, x, out, bytes: s.m * bytesPerRow });
  }
  let bestScore = Infinity;
  for (const layout of layouts(fmt.name !== "f16")) {
    backend.tuning = { ...DEFAULT_TUNING, gemv: { ...DEFAULT_TUNING.gemv, [fmt.name]: layout } };
    let score = 0;
    for (const m of mats) {
      using g = backend.compile([{ op: "matmul", x: m.x, w: m.w, out: m.out, rows: "tokens" }]);
      await g.run(step);
      const prof = await (g as unknown as Profiled).profile(step, 20);
      const us = prof.reduce((a, p) => a + p.us, 0);
      score += us * m.weight;
      rows.push({
        format: fmt.name,
        m: m.m,
        k: m.k,
        layout: `NR${layout.NR} TK${layout.TK} TR${layout.TR}`,
        us,
        gbps: m.bytes / (us * 1e3),
      });
    }
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
console.log(`GEMV sweep on ${device} (one row of x; device time per call; * = default layout)`);
console.log("| format | m x k | layout | us | GB/s |");
console.log("| --- | --- | --- | --- | --- |");
for (const fmt of FORMATS) {
  for (const s of SHAPES) {
    const rs = rows.filter((r) => r.format === fmt.name && r.m === s.m && r.k === s.k).sort((a, b) =>
      a.us - b.us
    );
    const show = [
      ...rs.slice(0, 3),
      ...rs.filter((r) => isDefault(fmt.name, r.layout) && !rs.slice(0, 3).includes(r)),
    ];
    for (const r of show) {
      console.log(
        `| ${r.format} | ${r.m} x ${r.k} | ${r.layout}${isDefault(r.format, r.layout) ? " *" : ""} | ${
          r.us.toFixed(1)
        } | ${r.gbps.toFixed(r.gbps < 10 ? 2 : 0)} |`,
      );
    }
  }
}
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
const tuning: Partial<Tuning> = { gemv: { ...def, ...best }, gemm: gemmBest };
if (f.out) await Deno.writeTextFile(f.out, JSON.stringify(tuning, null, 2));
if (f.json) {
  await Deno.writeTextFile(f.json, JSON.stringify({ device, rows, best, gemmRows, gemmBest }, null, 2));
}
