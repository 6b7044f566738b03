/**
 * Host sampler speed: microseconds per `Sampler.sample` call on 32,000-logit rows (peaked like a trained
 * model's, and flat like a random-weight model's), per setting. `--baseline FILE` times another sampler
 * module in the same run (A/B), e.g. an older commit's:
 *
 *   mkdir -p /tmp/old/src/sample && git show REV:src/sample/sampler.ts >/tmp/old/src/sample/sampler.ts &&
 *   cp src/errors.ts /tmp/old/src/ && deno run -A bench/sampler_bench.ts --baseline /tmp/old/src/sample/sampler.ts
 * @module
 */
import { parseArgs } from "node:util";
import { Sampler, type SamplingOptions } from "../src/sample/sampler.ts";

const { values: f } = parseArgs({ args: Deno.args, options: { baseline: { type: "string" } } });
type SamplerClass = typeof Sampler;
const impls: [string, SamplerClass][] = [["this tree", Sampler]];
if (f.baseline) {
  const mod = await import(new URL(f.baseline, `file://${Deno.cwd()}/`).href);
  impls.unshift(["baseline", mod.Sampler as SamplerClass]);
}

const V = 32000;
function row(seed: number, peaked: boolean): Float32Array {
  let a = seed >>> 0;
  const r = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const l = new Float32Array(V);
  for (let i = 0; i < V; i++) l[i] = (r() * 2 - 1) * (peaked ? 6 : 1);
  if (peaked) { for (let j = 0; j < 20; j++) l[(j * 7919) % V] = 14 - j * 0.3; }
  return l;
}
const cases: [string, SamplingOptions][] = [
  ["temperature 1", { temperature: 1 }],
  ["CLI default (T 0.8, top-k 40, top-p 0.95, min-p 0.05)", {
    temperature: 0.8,
    topK: 40,
    topP: 0.95,
    minP: 0.05,
  }],
  ["T 0.8, top-p 0.95", { temperature: 0.8, topP: 0.95 }],
];
for (const peaked of [true, false]) {
  const rows = Array.from({ length: 20 }, (_, i) => row(i + 1, peaked));
  for (const [name, o] of cases) {
    const res: string[] = [];
    for (const [label, S] of impls) {
      const s = new S(V, { ...o, seed: 1 });
      for (let w = 0; w < 20; w++) s.sample(rows[w]);
      const n = 200, t0 = performance.now();
      for (let i = 0; i < n; i++) s.sample(rows[i % 20]);
      res.push(`${label} ${(((performance.now() - t0) / n) * 1000).toFixed(0)} µs`);
    }
    console.log(`${peaked ? "peaked" : "flat"} rows, ${name}: ${res.join(", ")}`);
  }
}
