/**
 * Do llama.cpp and llama.ts agree on the GGUF files `cli.ts quantize` writes? stories260K is converted to
 * f32, q8_0, q4_0, int8_per_channel, int4_g128 and w8a8_smoothquant (which llama.cpp runs as plain
 * q8_0 weights: it does not know the activation scheme); each file is run by llama.cpp (node-llama-cpp's
 * prebuilt CPU build, installed into bench/llamacpp/node_modules on first use) and by llama.ts (ref
 * backend, f32 KV cache), token ids in and out, so tokenization plays no part:
 *
 * 1. greedy continuation of the three golden prompts: tokens that agree before the first divergence,
 *    and at a divergence our logits of both candidates (a small gap means a near-tie);
 * 2. teacher-forced next-token distributions over the golden sequences (the first 60 generated tokens):
 *    KL(llama.ts || llama.cpp) per position, and each engine's own KL(f32 file || this file).
 *
 *   deno run -A bench/llamacpp_greedy.ts [--out /tmp/llamacpp-check] [--schemes f32,q8_0,...]
 */
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import { Engine, loadModel } from "../mod.ts";
import { quantizeModelFile } from "../src/io/quantize_file.ts";
import { parseScheme } from "../src/quant/schemes.ts";
import { klDivergence, logSoftmax } from "../src/eval/evaluate.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "/tmp/llamacpp-check" },
    schemes: { type: "string", default: "f32,q8_0,q4_0,int8_per_channel,int4_g128,w8a8_smoothquant" },
  },
});
const here = new URL(".", import.meta.url).pathname;
const models = new URL("../../shared/models/", import.meta.url).pathname;
const peerDir = `${here}llamacpp`;
const calibration = new URL("../tests/data/calibration.txt", import.meta.url).pathname;

async function sh(cmd: string, args: string[], cwd?: string): Promise<string> {
  const r = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(r.stderr).slice(-2000)}`);
  }
  return new TextDecoder().decode(r.stdout);
}

if (!existsSync(`${peerDir}/node_modules/node-llama-cpp`)) {
  console.error("installing node-llama-cpp into bench/llamacpp/node_modules ...");
  await sh("npm", ["install", "--no-audit", "--no-fund"], peerDir);
}

interface Case {
  prompt: string;
  prompt_ids: number[];
  generated_ids: number[];
}
interface PeerOut {
  engine: string;
  cases: { generated_ids?: number[]; probabilities?: number[][] }[];
}
const golden =
  (JSON.parse(await Deno.readTextFile(`${models}stories260K.golden.json`)) as { cases: Case[] }).cases;
await Deno.mkdir(f.out!, { recursive: true });
const greedyCases = `${f.out}/greedy_cases.json`, forcedCases = `${f.out}/forced_cases.json`;
await Deno.writeTextFile(
  greedyCases,
  JSON.stringify(golden.map((c) => ({ prompt_ids: c.prompt_ids, n: c.generated_ids.length }))),
);
const forced = golden.map((c) => [...c.prompt_ids, ...c.generated_ids.slice(0, 60)]);
await Deno.writeTextFile(
  forcedCases,
  JSON.stringify(golden.map((c) => ({ prompt_ids: c.prompt_ids, forced_ids: c.generated_ids.slice(0, 60) }))),
);

const peer = async (path: string, cases: string): Promise<PeerOut> =>
  JSON.parse(await sh("node", [`${peerDir}/llamacpp_greedy.mjs`, "--model", path, "--cases", cases]));

function agreeing(a: number[], b: number[]): number {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k;
}

/** Mean over positions of KL(a || b), rows as log-probabilities. */
function meanKl(a: Float64Array[], b: Float64Array[]): number {
  return a.reduce((s, r, i) => s + klDivergence(r, b[i]), 0) / a.length;
}

let engineName = "", oursF32: Float64Array[] = [], theirsF32: Float64Array[] = [];
const greedyRows: string[] = [], klRows: string[] = [];
for (const s of f.schemes!.split(",")) {
  const scheme = parseScheme(s);
  const path = `${f.out}/stories260K-${scheme}.gguf`;
  await quantizeModelFile(`${models}stories260K.bin`, path, {
    scheme,
    tokenizer: `${models}tok512.bin`,
    calibration: scheme === "w8a8_smoothquant" ? calibration : undefined,
  });
  const pg = await peer(path, greedyCases), pf = await peer(path, forcedCases);
  engineName = pg.engine;
  const { model, tokenizer } = await loadModel(path);
  using engine = await Engine.create(model, tokenizer, { backend: "ref", kvDType: "f32" });
  model.close();
  for (let i = 0; i < golden.length; i++) {
    const c = golden[i], n = c.generated_ids.length;
    const ours = (await engine.complete(c.prompt_ids, { maxTokens: n, temperature: 0, ignoreEos: true }))
      .generatedIds;
    const theirs = pg.cases[i].generated_ids!;
    const k = agreeing(ours, theirs), kg = agreeing(ours, c.generated_ids);
    let why = "—";
    if (k < n) {
      const rows = await engine.logitsFor([...c.prompt_ids, ...ours.slice(0, k)]);
      const last = rows[rows.length - 1], a = ours[k], b = theirs[k];
      why = `ours ${a} (${last[a].toFixed(4)}), llama.cpp ${b} (${last[b].toFixed(4)}): gap ${
        (last[a] - last[b]).toFixed(4)
      }`;
    }
    const of = (x: number): string => x === n ? `all ${n}` : `${x} of ${n}`;
    greedyRows.push(`| ${scheme} | ${JSON.stringify(c.prompt)} | ${of(k)} | ${of(kg)} | ${why} |`);
  }
  const ours: Float64Array[] = [], theirs: Float64Array[] = [];
  for (let i = 0; i < forced.length; i++) {
    for (const r of await engine.logitsFor(forced[i])) ours.push(logSoftmax(r));
    for (const p of pf.cases[i].probabilities!) theirs.push(Float64Array.from(p, (x) => Math.log(x)));
  }
  if (scheme === "f32") [oursF32, theirsF32] = [ours, theirs];
  const own = (base: Float64Array[], x: Float64Array[]): string =>
    base.length ? meanKl(base, x).toExponential(2) : "—";
  klRows.push(
    `| ${scheme} | ${meanKl(ours, theirs).toExponential(2)} | ${own(oursF32, ours)} | ${
      own(theirsF32, theirs)
    } |`,
  );
}
const date = new Date().toISOString().slice(0, 10);
console.log(`${date}; llama.cpp: ${engineName}; llama.ts: ref backend, f32 KV cache\n`);
console.log("| file | prompt | llama.cpp = llama.ts | llama.ts = golden | first divergence (our logits) |");
console.log("| --- | --- | --- | --- | --- |");
for (const r of greedyRows) console.log(r);
console.log(`\nteacher-forced, ${forced.reduce((a, x) => a + x.length, 0)} positions (mean KL, nats):\n`);
console.log("| file | KL(llama.ts ‖ llama.cpp) | llama.ts KL(f32 ‖ file) | llama.cpp KL(f32 ‖ file) |");
console.log("| --- | --- | --- | --- |");
for (const r of klRows) console.log(r);
