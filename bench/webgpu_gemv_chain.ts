/**
 * The decode GEMVs of LLaMA-7B layers as the model chains them, per thread layout: L layers (default 8)
 * of distinct weights, each layer's QKV (3 x 4096 x 4096, one fused dispatch) -> wo (4096 x 4096) ->
 * gate-up with silu (2 x 11008 x 4096, one dispatch) -> w2 (4096 x 11008) -> the next layer's QKV, each
 * dispatch reading the previous one's output. Timed as the decode step runs (WgGraph.profile "whole": the
 * L layers in one pass, boundaries included; the weights, 1.6 GB in int8, do not fit the GPU's cache),
 * and per dispatch cold ("single"). bench/webgpu_gemv_sweep.ts times each fused op alone, repeated over
 * the same weights, which the cache partly holds; its rankings did not carry over to the 7B step.
 * `probe` layouts (q8 / q4 only; wrong results) drop the dequantization (1) and also the reads of x (2):
 * the ladder from the kernel to its weight reads alone. After every layout the default layout's graph,
 * compiled at the start, is timed again ("default now"): the H100's first run of this script saw every
 * layout after the sixth 3-4x slower; nvidia-smi showed the SM clock down at 345 MHz (GPU idle between
 * the short timed bursts). Every timing now follows ~0.1 s of back-to-back work (warm), and this column
 * shows whether the clock held.
 *
 *   deno run -A bench/webgpu_gemv_chain.ts [--formats q8,q4,f16] [--layers 8] [--quick]
 *        [--layouts '{"q8":[{"NR":4,"TK":64,"TR":2}]}' | --layouts-file F] [--json out.json] [--scale 8]
 */
import { parseArgs } from "node:util";
import type { Backend } from "../src/backend.ts";
import type { Op } from "../src/ops.ts";
import type { Tensor } from "../src/tensor.ts";
import type { Layout, Tuning } from "../src/backends/webgpu/encode.ts";
import { DEFAULT_TUNING } from "../src/backends/webgpu/encode.ts";
import { createWebGpuBackend } from "../src/backends/webgpu/webgpu.ts";
import { type Profiled, randomF16 } from "./_webgpu_bench.ts";
import { rowsStep } from "../tests/_util.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    formats: { type: "string", default: "q8,q4,f16" },
    layers: { type: "string", default: "8" },
    layouts: { type: "string" },
    "layouts-file": { type: "string" },
    json: { type: "string" },
    quick: { type: "boolean", default: false },
    scale: { type: "string", default: "1" },
  },
});
const div = (n: number): number => Math.max(128, Math.round(n / Number(f.scale) / 128) * 128);
const DIM = div(4096), HIDDEN = div(11008), L = Number(f.layers);
type Fmt = "f16" | "q8" | "q4";
const QUANT: Record<Fmt, "int8" | "int4" | undefined> = { f16: undefined, q8: "int8", q4: "int4" };
/** Bytes of one row of k weights as the device stores them (chunks plus scales). */
const rowBytes = (fmt: Fmt, k: number): number =>
  fmt === "f16" ? k * 2 : fmt === "q8" ? k + 4 : k / 2 + (k / 128 / 2) * 4;
const layerBytes = (fmt: Fmt): number =>
  4 * DIM * rowBytes(fmt, DIM) + 2 * HIDDEN * rowBytes(fmt, DIM) + DIM * rowBytes(fmt, HIDDEN);

function defaultLayouts(fmt: Fmt): Layout[] {
  const d = DEFAULT_TUNING.gemv[fmt];
  const out: Layout[] = [d];
  if (fmt !== "f16") out.push({ ...d, probe: 1 }, { ...d, probe: 2 });
  if (f.quick) return out;
  for (const NR of fmt === "f16" ? [1, 2] : [1, 2, 4]) {
    for (const TK of [32, 64, 128]) {
      for (const TR of [1, 2, 4, 8]) {
        const wg = TK * TR;
        const same = NR === d.NR && TK === d.TK && TR === d.TR;
        if (wg >= 64 && wg <= 512 && !same) out.push({ NR, TK, TR });
      }
    }
  }
  return out;
}

const step = rowsStep(1);
/**
 * About 0.1-0.2 s of back-to-back GPU work before a timing: with idle gaps between short timed bursts
 * the H100's SM clock fell from 1,980 to 345 MHz within seconds (nvidia-smi, reason "GPU idle") and every
 * GEMV ran 3-4x slower, the drift that misled earlier sweeps.
 */
async function warm(g: unknown): Promise<void> {
  await (g as Profiled).profile(step, 100, { mode: "whole" });
}
const layoutsText = f["layouts-file"] ? await Deno.readTextFile(f["layouts-file"]) : f.layouts;
const given = layoutsText ? JSON.parse(layoutsText) as Partial<Record<Fmt, Layout[]>> : undefined;
const name = (l: Layout): string =>
  `NR${l.NR} TK${l.TK} TR${l.TR}${l.regs ? " regs" : ""}${l.red2 ? " red2" : ""}${l.i2f ? " i2f" : ""}${
    l.probe ? ` probe${l.probe}` : ""
  }`;
const rows: {
  format: Fmt;
  layout: string;
  layerUs: number;
  gbps: number;
  perOp: Record<string, number>;
  /** The default layout's graph compiled at the format's start, timed right after this layout. */
  ctl: number;
  /** Seconds since the start. */
  at: number;
}[] = [];
const t0 = performance.now();
let device = "";
for (const fmt of f.formats!.split(",") as Fmt[]) {
  if (!(fmt in QUANT)) throw new Error(`unknown format ${fmt}; known: f16, q8, q4`);
  const backend = await createWebGpuBackend({ weightQuant: QUANT[fmt] }) as Backend & { tuning: Tuning };
  device = backend.caps.device;
  const pool = new Map<string, Uint16Array>();
  const weight = async (m: number, k: number, label: string): Promise<Tensor> => {
    const key = `${m}x${k}`;
    if (!pool.has(key)) pool.set(key, randomF16(m * k, m + k, 1 / Math.sqrt(k)));
    const w = backend.alloc("f16", [m, k], "weights", label);
    await backend.upload(w, pool.get(key)!);
    return w;
  };
  const act = (n: number, label: string): Tensor => backend.alloc("f32", [1, n], "compute", label);
  const x0 = act(DIM, "x0");
  await backend.upload(x0, new Float32Array(DIM).fill(0.5));
  const ops: Op[] = [];
  const kinds: string[] = []; // per dispatch, in order
  let x = x0;
  for (let l = 0; l < L; l++) {
    const q = act(DIM, `q${l}`), k = act(DIM, `k${l}`), v = act(DIM, `v${l}`);
    for (const [o, n] of [[q, "wq"], [k, "wk"], [v, "wv"]] as const) {
      ops.push({ op: "matmul", x, w: await weight(DIM, DIM, `${n}${l}`), out: o, rows: "tokens" });
    }
    const a = act(DIM, `a${l}`);
    ops.push({ op: "matmul", x: q, w: await weight(DIM, DIM, `wo${l}`), out: a, rows: "tokens" });
    const g = act(HIDDEN, `g${l}`), u = act(HIDDEN, `u${l}`), h = act(HIDDEN, `h${l}`);
    ops.push({ op: "matmul", x: a, w: await weight(HIDDEN, DIM, `w1${l}`), out: g, rows: "tokens" });
    ops.push({ op: "matmul", x: a, w: await weight(HIDDEN, DIM, `w3${l}`), out: u, rows: "tokens" });
    ops.push({ op: "silu_mul", gate: g, up: u, out: h });
    const y = act(DIM, `y${l}`);
    ops.push({ op: "matmul", x: h, w: await weight(DIM, HIDDEN, `w2${l}`), out: y, rows: "tokens" });
    kinds.push("qkv", "wo", "gateup", "w2");
    x = y;
  }
  console.error(`${fmt}: ${L} layers uploaded (${(L * layerBytes(fmt) / 1e9).toFixed(2)} GB on the device)`);
  // the default layout's graph, compiled once and timed again after every layout: a drift over the run
  // (device state, not layouts) shows up in it
  backend.tuning = { ...DEFAULT_TUNING };
  using control = backend.compile(ops);
  await control.run(step);
  // a graph's chained pass per layer, after a warm-up
  const layerUsOf = async (g: unknown): Promise<number> => {
    await warm(g);
    return (await (g as Profiled).profile(step, 5, { mode: "whole" }))[0].us / L;
  };
  for (const layout of given?.[fmt] ?? defaultLayouts(fmt)) {
    backend.tuning = { ...DEFAULT_TUNING, gemv: { ...DEFAULT_TUNING.gemv, [fmt]: layout } };
    using g = backend.compile(ops);
    await g.run(step);
    const layerUs = await layerUsOf(g);
    const single = await (g as unknown as Profiled).profile(step, 1, { mode: "single" });
    if (single.length !== kinds.length) {
      throw new Error(`${single.length} dispatches, expected ${kinds.length}: ${single.map((s) => s.label)}`);
    }
    const perOp: Record<string, number> = {};
    single.forEach((s, i) => perOp[kinds[i]] = (perOp[kinds[i]] ?? 0) + s.us / L);
    const ctl = await layerUsOf(control);
    const at = (performance.now() - t0) / 1000;
    rows.push({
      format: fmt,
      layout: name(layout),
      layerUs,
      gbps: layerBytes(fmt) / (layerUs * 1e3),
      perOp,
      ctl,
      at,
    });
    console.error(
      `[${at.toFixed(1)} s] ${fmt} ${name(layout)}: ${layerUs.toFixed(1)} us per layer (default layout, ` +
        `compiled at the start, now: ${ctl.toFixed(1)})`,
    );
  }
  backend[Symbol.dispose]();
}

console.log(
  `GEMV chain on ${device}: ${L} LLaMA-7B layers (dim ${DIM}, hidden ${HIDDEN}), one row of x, in one pass; ` +
    `per layer: the chained step, and each dispatch alone (cold, no boundaries)`,
);
console.log(
  "| format | layout | us per layer | GB/s | qkv | wo | gateup | w2 | sum alone | default now | s |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows.toSorted((a, b) => a.format.localeCompare(b.format) || a.layerUs - b.layerUs)) {
  const o = r.perOp;
  const sum = o.qkv + o.wo + o.gateup + o.w2;
  console.log(
    `| ${r.format} | ${r.layout} | ${r.layerUs.toFixed(1)} | ${r.gbps.toFixed(0)} | ${o.qkv.toFixed(1)} | ${
      o.wo.toFixed(1)
    } | ${o.gateup.toFixed(1)} | ${o.w2.toFixed(1)} | ${sum.toFixed(1)} | ${r.ctl.toFixed(1)} | ${
      r.at.toFixed(0)
    } |`,
  );
}
if (f.json) {
  await Deno.writeTextFile(f.json, JSON.stringify({ device, dim: DIM, hidden: HIDDEN, layers: L, rows }));
}
