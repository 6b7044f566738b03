// llama.cpp's CPU backend as a benchmark peer, through node-llama-cpp's prebuilt binaries (run with node;
// bench/wasm_bench.ts installs and calls it). Same measurement as llama.ts's `bench`: a synthetic prompt
// of P token ids (BOS first) evaluated in one batch, then G greedy tokens; decode tok/s counts the tokens
// after the first generated one. Prints one JSON line.
//   node bench/peer/llamacpp_peer.mjs --model M.gguf --threads 2 --prompt-tokens 64 --gen-tokens 64 --repeat 3
import { parseArgs } from "node:util";
import { getLlama } from "node-llama-cpp";

const { values: f } = parseArgs({
  options: {
    model: { type: "string" },
    threads: { type: "string", default: "2" },
    "prompt-tokens": { type: "string", default: "64" },
    "gen-tokens": { type: "string", default: "64" },
    repeat: { type: "string", default: "3" },
  },
});
const threads = Number(f.threads), P = Number(f["prompt-tokens"]), G = Number(f["gen-tokens"]);
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: threads });
const model = await llama.loadModel({ modelPath: f.model, gpuLayers: 0 });
const tokens = model.fileInfo.metadata.tokenizer?.ggml?.tokens;
const nVocab = Array.isArray(tokens) ? tokens.length : 32000;
const bos = model.tokens.bos ?? 1;
const prompt = Array.from({ length: P }, (_, i) => (i === 0 ? bos : (i * 7919 + 13) % nVocab));
const runs = [];
for (let r = 0; r < Number(f.repeat); r++) {
  const context = await model.createContext({ contextSize: P + G + 16, batchSize: P, threads, sequences: 1 });
  const seq = context.getSequence();
  // as llama.ts's engine: prefill ends when the prompt's logits give the first token; decode follows
  // CPU time (this process, all threads) beside wall time: on a loaded machine it shows the work done
  const t0 = performance.now();
  let n = 0, t1 = 0, c1 = process.cpuUsage();
  for await (const _ of seq.evaluate(prompt, { temperature: 0 })) {
    if (n === 0) {
      t1 = performance.now();
      c1 = process.cpuUsage();
    }
    if (++n >= G) break;
  }
  const prefillMs = t1 - t0, decodeMs = performance.now() - t1, cpu = process.cpuUsage(c1);
  runs.push({
    prefillTokPerS: (P / prefillMs) * 1000,
    decodeTokPerS: ((G - 1) / decodeMs) * 1000,
    decodeTokPerCpuS: ((G - 1) / ((cpu.user + cpu.system) / 1e6)),
  });
  await context.dispose();
}
console.log(JSON.stringify({
  engine: `llama.cpp (node-llama-cpp ${llama.buildType ?? ""} ${llama.llamaCppRelease?.release ?? ""})`
    .replace(/\s+/g, " ").trim(),
  threads,
  model: f.model,
  promptTokens: P,
  genTokens: G,
  prefillTokPerS: Math.max(...runs.map((r) => r.prefillTokPerS)),
  decodeTokPerS: Math.max(...runs.map((r) => r.decodeTokPerS)),
  decodeTokPerCpuS: Math.max(...runs.map((r) => r.decodeTokPerCpuS)),
  runs,
}));
await model.dispose();
await llama.dispose();
