/**
 * A short markdown summary of a bench/webgpu_device.sh run: deno run -A bench/webgpu_summary.ts OUTDIR
 */
import { type BandwidthRun, floorTable } from "./webgpu_floor.ts";

const dir = Deno.args[0] ?? ".";
const read = async (f: string): Promise<string> => {
  try {
    return await Deno.readTextFile(`${dir}/${f}`);
  } catch {
    return "";
  }
};
const json = async (f: string): Promise<Record<string, unknown> | undefined> => {
  const t = await read(f);
  try {
    return t ? JSON.parse(t) : undefined;
  } catch {
    return undefined;
  }
};
const n = (x: unknown, d = 1): string => typeof x === "number" ? x.toFixed(d) : "-";
const lines: string[] = [`# webgpu device run (${new Date().toISOString()})`, ""];
lines.push(`GPU: ${(await read("gpu.txt")).trim() || "?"}`);
const tests = await read("tests.log");
const adapter = tests.match(/^webgpu: .*$/m)?.[0] ?? "webgpu: ?";
const summary = tests.match(/^(ok|FAILED) \|.*$/m)?.[0] ?? "no test summary";
lines.push(`Adapter: ${adapter.replace(/^webgpu: /, "")}`, `Tests (ops, golden, webgpu): ${summary}`, "");
const bw = await json("bandwidth.json");
if (bw) {
  lines.push(
    `Best WebGPU read bandwidth: ${n(bw.bestReadGBps, 0)} GB/s (${JSON.stringify(bw.best)}); ` +
      `empty dispatch in a pass: ${n(bw.emptyDispatchUs, 2)} us; submit + map round trip: ${
        n(bw.mapRoundTripMs, 2)
      } ms`,
    "",
  );
  const windows = bw.bytesPerDispatch;
  if (Array.isArray(windows) && windows.length >= 2) {
    lines.push(...floorTable(bw as unknown as BandwidthRun), "");
  }
}
const st = (await read("stories260k.jsonl")).split("\n").filter((l) => l.startsWith("{")).map((l) =>
  JSON.parse(l)
);
if (st.length) {
  lines.push("| stories260K | prefill tok/s (64) | decode tok/s (128) |", "| --- | --- | --- |");
  for (const r of st) lines.push(`| ${r.backend} | ${n(r.prefillTokPerS, 0)} | ${n(r.decodeTokPerS, 0)} |`);
  lines.push("");
}
const sweep = (await read("sweep.md")).trim();
if (sweep) lines.push(sweep, "");
const b7 = await json("webgpu_7b.json");
if (b7) {
  const rs = (b7.results ?? []) as Record<string, unknown>[];
  if (b7.tuning) {
    lines.push(
      `7B runs with the sweep's GEMV layouts: ${JSON.stringify((b7.tuning as { gemv: unknown }).gemv)}`,
      "",
    );
  }
  lines.push(
    "| LLaMA-7B shape | decode tok/s | roofline tok/s | fraction | prefill tok/s (512) | step device us | GPU GiB | load s (host bytes s) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  );
  for (const r of rs) {
    lines.push(
      `| ${r.variant} | ${n(r.decodeTokPerS)} | ${n(r.rooflineTokPerS, 0)} | ${
        n(r.fractionOfRoofline, 2)
      } | ` +
        `${n(r.prefillTokPerS, 0)} | ${n(r.profileDeviceUs, 0)} | ${n(r.deviceMemoryGiB, 2)} | ${
          n(r.loadS, 0)
        } (${n(r.readS, 0)}) |`,
    );
  }
  lines.push("");
  type Kernels = { kernel: string; us: number; count: number }[];
  const list = (ks: Kernels): string => ks.map((k) => `${k.kernel} ${n(k.us, 0)} us/${k.count}`).join(", ");
  for (const r of rs) lines.push(`${r.variant} step: ` + list((r.kernels ?? []) as Kernels));
  for (const r of rs) {
    const ks = (r.prefillKernels ?? []) as Kernels;
    if (!ks.length) continue;
    const total = ks.reduce((a, k) => a + k.us, 0);
    lines.push(`${r.variant} 512-token prefill step (${n(total, 0)} us): ` + list(ks));
  }
  const att = rs.filter((r) => Array.isArray(r.attention));
  if (att.length) {
    lines.push(
      "",
      "Decode attention per step, one split per row (the old rule below 256 positions) vs the default splits:",
      "| variant | position | splits | attention_decode us | attention_combine us | sum us |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    for (const r of att) {
      for (const a of r.attention as { pos: number; splits: number; decodeUs: number; combineUs: number }[]) {
        lines.push(
          `| ${r.variant} | ${a.pos} | ${a.splits} | ${n(a.decodeUs, 0)} | ${n(a.combineUs, 0)} | ${
            n(a.decodeUs + a.combineUs, 0)
          } |`,
        );
      }
    }
  }
  const cs = (b7.comparisons ?? []) as Record<string, unknown>[];
  if (cs.length) {
    lines.push(
      "",
      "| 1-layer 7B-shape logits vs ref | cosine min | cosine mean | top-1 | max abs |",
      "| --- | --- | --- | --- | --- |",
    );
    for (const c of cs) {
      lines.push(
        `| ${c.variant} | ${n(c.cosineMin, 6)} | ${n(c.cosineMean, 6)} | ${n(c.top1Agreement, 2)} | ${
          n(c.maxAbsDiff, 4)
        } |`,
      );
    }
  }
}
// bench/webgpu_7b.ts --sample (written as sample.json): sampled decode, device sample op vs host sampling
const sm = await json("sample.json");
for (const r of (sm?.results ?? []) as Record<string, unknown>[]) {
  const d = r.device as { decodeTokPerS: number; runs: number[] } | undefined;
  const h = r.host as { decodeTokPerS: number; runs: number[] } | undefined;
  lines.push(
    "",
    `7B-shape ${r.variant} batch-1 sampled decode (${JSON.stringify(r.sampling)}): device sampling ${
      n(d?.decodeTokPerS)
    } tok/s (runs ${d?.runs.map((x) => n(x)).join(", ")}), host sampling ${n(h?.decodeTokPerS)} tok/s (runs ${
      h?.runs.map((x) => n(x)).join(", ")
    }), ratio ${n(r.ratio, 2)}x`,
  );
}
console.log(lines.join("\n"));
