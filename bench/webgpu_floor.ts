/**
 * The decode floor that WebGPU's dispatch boundaries set, from a bench/webgpu_bandwidth.ts result (no GPU
 * needed here): a batch-1 decode step of the LLaMA-7B shape runs at least one dispatch per GEMV that the
 * layer's data dependencies separate (QKV, wo, gate-up, w2; then the LM head), plus the attention and its
 * combine. Each GEMV dispatch is given the time the bandwidth run measured for a dispatch that only reads
 * that many bytes (`bytesPerDispatch`, interpolated linearly between its windows of 4-256 MiB), each
 * attention dispatch the empty dispatch's time. Against the read roofline (the step's bytes at the best read
 * bandwidth, as bench/webgpu_7b.ts counts them) that gives the highest fraction any kernels could reach
 * while each dispatch reads its own weights (not when a dispatch pulls a later matrix into the L2 cache).
 *
 *   deno run -A bench/webgpu_floor.ts --bandwidth DIR/bandwidth.json [--shape llama7B]
 */
import { parseArgs } from "node:util";
import { expectedShape } from "../src/format/model_file.ts";
import { EPC, planFormat } from "../src/backends/webgpu/weights.ts";
import { SHAPES } from "./_synth_gguf.ts";

/** A bench/webgpu_bandwidth.ts result (the fields the floor needs). */
export interface BandwidthRun {
  adapter: string;
  bestReadGBps: number;
  emptyDispatchUs: number;
  bytesPerDispatch: { mib: number; usPerDispatch: number }[];
}

/** The floor table (markdown lines) for a bandwidth run and a model shape. */
export function floorTable(bw: BandwidthRun, shape: keyof typeof SHAPES = "llama7B"): string[] {
  const c = SHAPES[shape];
  const pts = [...bw.bytesPerDispatch].sort((a, b) => a.mib - b.mib);
  if (pts.length < 2) throw new Error("bytesPerDispatch needs at least two windows");

  /** µs of a dispatch that reads `bytes`: linear between the measured windows, extended past the ends. */
  const readUs = (bytes: number): number => {
    const mib = bytes / 2 ** 20;
    let i = pts.findIndex((p) => p.mib >= mib);
    i = i <= 0 ? (i === 0 ? 1 : pts.length - 1) : i;
    const a = pts[i - 1], b = pts[i];
    return a.usPerDispatch + (b.usPerDispatch - a.usPerDispatch) * (mib - a.mib) / (b.mib - a.mib);
  };

  /** Device bytes of one weight matrix in the variant's layout (as bench/webgpu_7b.ts counts them). */
  const matBytes = (name: string, variant: "f16" | "int8" | "int4"): number => {
    const [m, k] = expectedShape(c, name);
    const { fmt, group } = planFormat("f16", k, variant === "f16" ? undefined : variant);
    return m * (Math.ceil(k / EPC[fmt]) * 16 + (group ? Math.ceil(k / group / 2) * 4 : 0));
  };

  const lines = [
    `Decode floor of one dispatch per dependent GEMV (${shape}; bench/webgpu_floor.ts: each GEMV dispatch ` +
    `at the read-only time of its bytes, the attention's two dispatches at ${
      bw.emptyDispatchUs.toFixed(2)
    } us ` +
    `each):`,
    "",
    "| weights | GEMV dispatches per layer, MiB | floor us per layer | floor us per step | " +
    "roofline us per step | highest fraction |",
    "| --- | --- | --- | --- | --- | --- |",
  ];
  for (const v of ["int8", "int4", "f16"] as const) {
    const groups = [["wq", "wk", "wv"], ["wo"], ["w1", "w3"], ["w2"]];
    const sizes = groups.map((g) => g.reduce((s, n) => s + matBytes(`l0.${n}`, v), 0));
    const layerUs = sizes.reduce((s, b) => s + readUs(b), 0) + 2 * bw.emptyDispatchUs;
    const head = matBytes("output", v);
    const stepUs = c.nLayers * layerUs + readUs(head);
    const norms = (2 * c.nLayers + 1) * c.dim * 4;
    const stepBytes = c.nLayers * sizes.reduce((s, b) => s + b, 0) + head + norms;
    const roofUs = stepBytes / (bw.bestReadGBps * 1e3);
    lines.push(
      `| ${v} | ${sizes.map((b) => (b / 2 ** 20).toFixed(1)).join(" / ")} | ${layerUs.toFixed(1)} | ` +
        `${stepUs.toFixed(0)} | ${roofUs.toFixed(0)} | **${(roofUs / stepUs).toFixed(2)}** |`,
    );
  }
  return lines;
}

if (import.meta.main) {
  const { values: f } = parseArgs({
    args: Deno.args,
    options: { bandwidth: { type: "string" }, shape: { type: "string", default: "llama7B" } },
  });
  if (!f.bandwidth) throw new Error("--bandwidth FILE (bench/webgpu_bandwidth.ts --json output) is required");
  if (!(f.shape! in SHAPES)) throw new Error(`--shape: one of ${Object.keys(SHAPES).join(", ")}`);
  const bw = JSON.parse(await Deno.readTextFile(f.bandwidth)) as BandwidthRun;
  console.log(`adapter: ${bw.adapter}; best read ${bw.bestReadGBps.toFixed(0)} GB/s`);
  console.log(floorTable(bw, f.shape as keyof typeof SHAPES).join("\n"));
}
