/**
 * SmoothQuant W8A8 (int8 weights, per-token int8 activations) against int8 weight-only on the wasm
 * backend, same source weights, same run.
 *   deno run -A bench/wasm_w8a8_bench.ts [--threads 1,2] [--models stories260K,stories15M]
 *       [--prompt-tokens 64] [--gen-tokens 64] [--repeat 3]
 * Each model is quantized with `cli.ts quantize` twice: `int8_per_channel` (the weight-only baseline) and
 * `w8a8_smoothquant` (calibration tests/data/calibration.txt, alpha 0.5): both store int8 codes with one
 * scale per output row in q8_0 blocks, so the two runs differ only in the activations (the wasm backend's
 * weight-only kernel quantizes them to 7 bits per 32-block; W8A8 to int8 per token, as the file asks).
 * stories260K comes from ../shared/models; stories15M is synthetic (bench/_synth_gguf.ts, f32).
 * The two schemes alternate, one run each per round, best of --repeat; one JSON line per run, then a table.
 */
import { parseArgs } from "node:util";
import { createEngine } from "../mod.ts";
import { synthGguf } from "./_synth_gguf.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: "1,2" },
    models: { type: "string", default: "stories260K,stories15M" },
    "prompt-tokens": { type: "string", default: "64" },
    "gen-tokens": { type: "string", default: "64" },
    repeat: { type: "string", default: "3" },
  },
});
const P = Number(f["prompt-tokens"]), G = Number(f["gen-tokens"]), repeat = Number(f.repeat);
const root = new URL("..", import.meta.url).pathname;
const shared = new URL("../../shared/models/", import.meta.url).pathname;
// quantized fresh on every invocation (a cached file could come from another checkout's quantizer)
const dir = await Deno.makeTempDir({ prefix: "llama-ts-w8a8-" });
const SCHEMES = ["int8_per_channel", "w8a8_smoothquant"] as const;

async function quantized(model: string, scheme: string): Promise<string> {
  const out = `${dir}/${model}-${scheme}.gguf`;
  const src = model === "stories260K"
    ? ["--model", `${shared}stories260K.bin`, "--tokenizer", `${shared}tok512.bin`]
    : ["--model", await synthGguf(model, "f32")];
  const calib = scheme === "w8a8_smoothquant" ? ["--calibration", `${root}tests/data/calibration.txt`] : [];
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${root}cli.ts`, "quantize", ...src, "--out", out, "--scheme", scheme, ...calib],
    stdout: "null",
    stderr: "inherit",
  }).output();
  if (!r.success) throw new Error(`quantize ${model} ${scheme} failed`);
  return out;
}

interface Row {
  prefill: number;
  decode: number;
}

/** One run as `cli.ts bench` measures it: a synthetic prompt (BOS first), then greedy tokens past EOS. */
async function run(path: string, threads: number): Promise<Row> {
  using engine = await createEngine(path, { backend: "wasm", threads });
  const vocab = engine.config.vocabSize, bos = engine.tokenizer.bosId ?? 1;
  const prompt = Array.from({ length: P }, (_, i) => (i === 0 ? bos : (i * 7919 + 13) % vocab));
  const t0 = performance.now();
  let n = 0, t1 = 0;
  for await (const ev of engine.generate(prompt, { maxTokens: G, temperature: 0, ignoreEos: true })) {
    if (ev.type === "token" && n++ === 0) t1 = performance.now();
  }
  const t2 = performance.now();
  const row = { prefill: (P / (t1 - t0)) * 1000, decode: ((n - 1) / (t2 - t1)) * 1000 };
  console.log(JSON.stringify({ path, threads, ...row, load: Deno.loadavg()[0] }));
  return row;
}

const lines: string[] = [];
const load0 = Deno.loadavg()[0];
for (const model of f.models!.split(",")) {
  const paths = [];
  for (const s of SCHEMES) paths.push(await quantized(model, s));
  for (const threads of f.threads!.split(",").map(Number)) {
    await run(paths[0], threads); // warm-up (kernel compilation, JIT), not counted
    const runs: Row[][] = SCHEMES.map(() => []);
    for (let round = 0; round < repeat; round++) {
      for (let i = 0; i < SCHEMES.length; i++) runs[i].push(await run(paths[i], threads));
    }
    const best = runs.map((rs) => ({
      prefill: Math.max(...rs.map((r) => r.prefill)),
      decode: Math.max(...rs.map((r) => r.decode)),
    }));
    const [base, w8a8] = best;
    lines.push(
      `| ${model} | ${threads} | ${base.prefill.toFixed(0)} | ${w8a8.prefill.toFixed(0)} | ` +
        `${(w8a8.prefill / base.prefill).toFixed(2)}x | ${base.decode.toFixed(0)} | ${
          w8a8.decode.toFixed(0)
        } | ` +
        `${(w8a8.decode / base.decode).toFixed(2)}x |`,
    );
  }
}
console.log(
  `\nwasm, prompt ${P}, gen ${G}, best of ${repeat} alternating rounds; load average ${load0.toFixed(2)} -> ${
    Deno.loadavg()[0].toFixed(2)
  }\n`,
);
console.log(
  "| model | threads | int8 weight-only prefill tok/s | W8A8 prefill tok/s | ratio | int8 weight-only decode tok/s | W8A8 decode tok/s | ratio |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const l of lines) console.log(l);
await Deno.remove(dir, { recursive: true });
