/**
 * Teacher-forced logits of a token sequence, written as raw float32 (positions x vocab), for comparing
 * against another implementation (bench/hf_compare.py). Prints load time and device memory as JSON.
 *   deno run -A bench/logits_dump.ts --model DIR --tokenizer T --ids ids.json --out logits.f32
 *                                    [--backend cuda] [--weight-quant int8|int4] [--kv-dtype f16|int8]
 */
import { parseArgs } from "node:util";
import { createEngine } from "../mod.ts";
import { kvDTypeFlag, weightQuantFlag } from "../src/cli/flags.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    model: { type: "string" },
    tokenizer: { type: "string" },
    ids: { type: "string" },
    out: { type: "string" },
    backend: { type: "string", default: "auto" },
    "weight-quant": { type: "string" },
    "kv-dtype": { type: "string" },
    "cuda-lib": { type: "string" },
  },
});
if (!f.model || !f.ids || !f.out) throw new Error("--model, --ids and --out are required");
const ids = JSON.parse(await Deno.readTextFile(f.ids)) as number[];
using engine = await createEngine(f.model, {
  tokenizer: f.tokenizer,
  backend: f.backend as "cuda",
  weightQuant: weightQuantFlag(f["weight-quant"]),
  kvDType: kvDTypeFlag(f["kv-dtype"]),
  cudaLibrary: f["cuda-lib"],
  contextSize: Math.max(ids.length, 16),
});
const t0 = performance.now();
const rows = await engine.logitsFor(ids);
const ms = performance.now() - t0;
const out = new Float32Array(rows.length * engine.config.vocabSize);
rows.forEach((r, i) => out.set(r, i * engine.config.vocabSize));
await Deno.writeFile(f.out, new Uint8Array(out.buffer));
const info = engine.info();
console.log(JSON.stringify({
  backend: info.backend,
  device: info.device,
  weightDTypes: info.weightDTypes,
  loadMs: info.loadMs,
  positions: rows.length,
  msPerPosition: ms / rows.length,
  weightBytes: info.weightBytes,
  deviceMemoryUsed: info.deviceMemoryUsed,
}));
