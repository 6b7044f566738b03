/**
 * Kernel-level timing of the wasm backend's matmul: one op, weights rotated over a working set larger
 * than the L3 cache, rows = 1 (decode) and 64 (prefill). Reports GB/s of weight bytes and GMAC/s.
 *   deno run -A bench/wasm_matmul_bench.ts [--threads 1] [--dtypes f32,q8_0,q4_0] [--m 2048 --k 768]
 *       [--act-int8]
 * --act-int8 also times q8_0/q4_0 with per-token int8 activations (W8A8, `actQuant: "int8"`) after each
 * weight-only run, same weights.
 */
import { parseArgs } from "node:util";
import type { DType } from "../src/types.ts";
import { createWasmBackend } from "../src/backends/wasm/wasm.ts";
import { quantize } from "../src/dtype.ts";
import { rowsStep } from "../tests/_util.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: "1" },
    dtypes: { type: "string", default: "f32,q8_0,q4_0" },
    m: { type: "string", default: "2048" },
    k: { type: "string", default: "768" },
    rows: { type: "string", default: "1,64" },
    "act-int8": { type: "boolean", default: false },
  },
});
const m = Number(f.m), k = Number(f.k), threads = Number(f.threads);
using b = await createWasmBackend({ threads });
const w0 = Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37) * 0.1);
for (const dtype of f.dtypes!.split(",") as DType[]) {
  const bytes = quantize(dtype, w0);
  const copies = Math.max(2, Math.ceil((96 << 20) / bytes.byteLength)); // > L3
  const ws = [];
  for (let c = 0; c < copies; c++) {
    const w = b.alloc(dtype, [m, k], "weights", `w${c}`);
    await b.upload(w, bytes);
    ws.push(w);
  }
  for (const rows of f.rows!.split(",").map(Number)) {
    const x = b.alloc("f32", [rows, k], "compute", "x");
    await b.upload(x, Float32Array.from({ length: rows * k }, (_, i) => Math.cos(i)));
    const out = b.alloc("f32", [rows, m], "compute", "out");
    const acts = f["act-int8"] && (dtype === "q8_0" || dtype === "q4_0") ? [false, true] : [false];
    for (const a8 of acts) {
      const g = b.compile(ws.map((w) => ({
        op: "matmul" as const,
        x,
        w,
        out,
        rows: "tokens" as const,
        ...(a8 ? { actQuant: "int8" as const } : {}),
      })));
      const step = rowsStep(rows);
      await g.run(step);
      const reps = rows === 1 ? 20 : 3;
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) await g.run(step);
      const s = (performance.now() - t0) / 1000 / reps / copies;
      console.log(
        `${dtype}${a8 ? " W8A8" : ""} ${m}x${k} rows ${rows} threads ${threads}: ${
          (s * 1e6).toFixed(1)
        } us/matmul, ` +
          `${(bytes.byteLength / s / 1e9).toFixed(1)} GB/s weights, ${
            (rows * m * k / s / 1e9).toFixed(1)
          } GMAC/s`,
      );
      g[Symbol.dispose]();
    }
    b.free(x);
    b.free(out);
  }
  for (const w of ws) b.free(w);
}
