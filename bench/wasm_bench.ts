/**
 * wasm backend vs ref vs llama.cpp's CPU backend, same GGUF files, same thread count, same run.
 *   deno run -A bench/wasm_bench.ts [--threads 2] [--models stories260K,stories15M,stories110M]
 *       [--dtypes f32,q8_0,q4_0] [--prompt-tokens 64] [--gen-tokens 64] [--repeat 3] [--no-ref]
 * stories260K is converted from ../shared/models (matrices whose rows are not whole 32-blocks stay f32,
 * as llama.cpp's converter does); stories15M/110M are synthetic (bench/_synth_gguf.ts). llama.cpp runs
 * through node-llama-cpp's prebuilt binaries (bench/peer, installed with npm on first use; not a
 * dependency of llama.ts). wasm and llama.cpp alternate, one run each per round (best of --repeat rounds),
 * so load from other processes on this shared machine falls on both alike; ref runs once.
 * Prints one JSON line per measurement and a markdown table at the end.
 */
import { parseArgs } from "node:util";
import { existsSync } from "node:fs";
import type { DType } from "../src/types.ts";
import { createEngine } from "../mod.ts";
import process from "node:process";
import { synthGguf } from "./_synth_gguf.ts";
import { parseLlama2c } from "../src/format/llama2c.ts";
import { parseLlama2cTokenizer } from "../src/format/llama2c_tokenizer.ts";
import { fileSource } from "../src/io/deno_fs.ts";
import { ggufMetadataForLlama, ggufTensorName, writeGgufBytes } from "../src/format/gguf_write.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { dequantize, quantize } from "../src/dtype.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: "2" },
    models: { type: "string", default: "stories260K,stories15M,stories110M" },
    dtypes: { type: "string", default: "f32,q8_0,q4_0" },
    "prompt-tokens": { type: "string", default: "64" },
    "gen-tokens": { type: "string", default: "64" },
    repeat: { type: "string", default: "3" },
    "no-ref": { type: "boolean", default: false },
  },
});
const threads = Number(f.threads), P = Number(f["prompt-tokens"]), G = Number(f["gen-tokens"]);
const repeat = Number(f.repeat);
const here = new URL(".", import.meta.url).pathname;
const shared = new URL("../../shared/models/", import.meta.url).pathname;

/** stories260K (llama2.c) as GGUF with its tokenizer, matrices in `dtype` where rows allow. */
async function stories260K(dtype: DType): Promise<string> {
  const dir = `${Deno.env.get("TMPDIR") ?? "/tmp"}/llama-ts-bench`;
  const path = `${dir}/stories260K-${dtype}.gguf`;
  if (existsSync(path)) return path;
  await Deno.mkdir(dir, { recursive: true });
  const m = await parseLlama2c(await fileSource(`${shared}stories260K.bin`));
  const tok = parseLlama2cTokenizer(await Deno.readFile(`${shared}tok512.bin`), { vocabSize: 512 });
  const tensors = [];
  for (const name of requiredTensors(m.config)) {
    const e = m.tensors.get(name)!, shape = [...expectedShape(m.config, name)];
    const w = new Float32Array(shape.reduce((a, b) => a * b, 1));
    dequantize(e.dtype, await e.source.read(e.byteOffset, e.byteLength), w);
    const d = shape.length === 2 && shape[1] % 32 === 0 ? dtype : "f32";
    tensors.push({ name: ggufTensorName(name), dtype: d, shape, data: quantize(d, w) });
  }
  m.close();
  await Deno.writeFile(path, writeGgufBytes({ metadata: ggufMetadataForLlama(m.config, tok), tensors }));
  return path;
}

async function ensurePeer(): Promise<void> {
  if (existsSync(`${here}peer/node_modules/node-llama-cpp`)) return;
  console.error("installing the llama.cpp peer (npm, bench/peer)...");
  const out = await new Deno.Command("npm", {
    args: ["install", "--no-audit", "--no-fund"],
    cwd: `${here}peer`,
  })
    .output();
  if (!out.success) {
    throw new Error(`npm install in bench/peer failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

interface Row {
  model: string;
  dtype: string;
  engine: string;
  prefill: number;
  decode: number;
  /** Decode tokens per CPU-second of the process (all threads). */
  decodeCpu: number;
}

/** One engine's best over `runs` (each a fresh process/engine) of prefill and decode tok/s. */
function best(rows: Row[]): Row {
  return {
    ...rows[0],
    prefill: Math.max(...rows.map((r) => r.prefill)),
    decode: Math.max(...rows.map((r) => r.decode)),
    decodeCpu: Math.max(...rows.map((r) => r.decodeCpu)),
  };
}

/**
 * One run as the CLI's `bench` measures it (a synthetic prompt, BOS first, then greedy tokens past EOS),
 * plus the CPU time of decode (this process, all threads): on a loaded machine it shows the work done.
 */
async function ours(path: string, backend: "ref" | "wasm", gen: number): Promise<Row> {
  using engine = await createEngine(path, { backend, threads });
  const vocab = engine.config.vocabSize, bos = engine.tokenizer.bosId ?? 1;
  const prompt = Array.from({ length: P }, (_, i) => (i === 0 ? bos : (i * 7919 + 13) % vocab));
  const t0 = performance.now();
  let n = 0, t1 = 0, c1 = process.cpuUsage();
  for await (const ev of engine.generate(prompt, { maxTokens: gen, temperature: 0, ignoreEos: true })) {
    if (ev.type !== "token") continue;
    if (n++ === 0) {
      t1 = performance.now();
      c1 = process.cpuUsage();
    }
  }
  const t2 = performance.now(), cpu = process.cpuUsage(c1);
  const row = {
    model: "",
    dtype: "",
    engine: engine.info().device,
    prefill: (P / (t1 - t0)) * 1000,
    decode: ((n - 1) / (t2 - t1)) * 1000,
    decodeCpu: (n - 1) / ((cpu.user + cpu.system) / 1e6),
  };
  console.log(JSON.stringify({ ...row, model: path, threads, load: Deno.loadavg()[0] }));
  return row;
}

async function llamaCpp(path: string): Promise<Row> {
  const out = await new Deno.Command("node", {
    args: [
      `${here}peer/llamacpp_peer.mjs`,
      ...["--model", path, "--threads", String(threads)],
      ...["--prompt-tokens", String(P), "--gen-tokens", String(G), "--repeat", "1"],
    ],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`llama.cpp peer failed on ${path}`);
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  console.log(JSON.stringify({ ...r, load: Deno.loadavg()[0] }));
  return {
    model: "",
    dtype: "",
    engine: `${r.engine}, ${threads} thread${threads > 1 ? "s" : ""}`,
    prefill: r.prefillTokPerS,
    decode: r.decodeTokPerS,
    decodeCpu: r.decodeTokPerCpuS,
  };
}

await ensurePeer();
const rows: Row[] = [];
const load0 = Deno.loadavg();
for (const model of f.models!.split(",")) {
  for (const dtype of f.dtypes!.split(",") as DType[]) {
    const path = model === "stories260K" ? await stories260K(dtype) : await synthGguf(model, dtype);
    // rounds alternate wasm and llama.cpp, so load from other processes falls on both alike
    const wasm: Row[] = [], peer: Row[] = [];
    for (let round = 0; round < repeat; round++) {
      wasm.push(await ours(path, "wasm", G));
      peer.push(await llamaCpp(path));
    }
    rows.push({ ...best(wasm), model, dtype }, { ...best(peer), model, dtype });
    // ref is slow on the larger shapes: fewer tokens, one run (tok/s is per token either way)
    const big = model === "stories110M";
    if (!f["no-ref"]) rows.push({ ...(await ours(path, "ref", big ? 16 : G)), model, dtype });
  }
}
const load1 = Deno.loadavg();

const fmt = (n: number): string => n >= 100 ? n.toFixed(0) : n.toFixed(1);
console.log(
  `\nthreads ${threads}, prompt ${P}, gen ${G}, best of ${repeat} alternating rounds; ` +
    `load average ${load0[0].toFixed(2)} -> ${load1[0].toFixed(2)}\n`,
);
console.log(
  "| model | weights | engine | prefill tok/s | decode tok/s | wasm decode / this | decode tok per CPU-s | wasm / this |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) {
  const w = rows.find((x) => x.model === r.model && x.dtype === r.dtype && x.engine.startsWith("CPU (wasm"))!;
  const ratio = (a: number, b: number): string => r === w ? "—" : `${(a / b).toFixed(2)}x`;
  console.log(
    `| ${r.model} | ${r.dtype} | ${r.engine} | ${fmt(r.prefill)} | ${fmt(r.decode)} | ` +
      `${ratio(w.decode, r.decode)} | ${fmt(r.decodeCpu)} | ${ratio(w.decodeCpu, r.decodeCpu)} |`,
  );
}
