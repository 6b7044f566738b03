// llama.cpp (CPU, node-llama-cpp's prebuilt binaries) as a correctness peer: load a GGUF that
// `cli.ts quantize` wrote and continue each prompt greedily, token ids in and out, so tokenization plays
// no part. bench/llamacpp_greedy.ts installs node-llama-cpp here and drives this script.
//   node bench/llamacpp/llamacpp_greedy.mjs --model M.gguf --cases cases.json
// cases.json: [{ "prompt_ids": [1, ...], "n": 64 }, ...]; prints one JSON object:
// { "engine": "...", "cases": [{ "generated_ids": [...] }, ...] }
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

// a Node script: node-llama-cpp is installed beside it by npm, so the import stays out of Deno's module
// graph (`deno check bench/` sees this file but cannot resolve the package)
const peerPackage = "node-llama-cpp";
const { getLlama } = await import(peerPackage);

const { values: f } = parseArgs({ options: { model: { type: "string" }, cases: { type: "string" } } });
const cases = JSON.parse(readFileSync(f.cases, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: 1 });
const model = await llama.loadModel({ modelPath: f.model, gpuLayers: 0 });
const out = [];
for (const c of cases) {
  const context = await model.createContext({ contextSize: 512, batchSize: 512, threads: 1, sequences: 1 });
  const seq = context.getSequence();
  const ids = [];
  if (c.forced_ids) {
    // teacher forcing: llama.cpp's full next-token distribution after every prefix of prompt + forced
    const all = [...c.prompt_ids, ...c.forced_ids];
    const want = { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } };
    const res = await seq.controlledEvaluate(all.map((t) => [t, { generateNext: want }]));
    const probs = res.map((r) => {
      const row = new Array(model.tokens.size ?? 0);
      for (const [t, p] of r.next.probabilities) row[t] = p;
      return row;
    });
    out.push({ probabilities: probs });
    await context.dispose();
    continue;
  }
  if (c.n > 0) {
    for await (const t of seq.evaluate(c.prompt_ids, { temperature: 0 })) {
      ids.push(t);
      if (ids.length >= c.n) break;
    }
  }
  out.push({ generated_ids: ids });
  await context.dispose();
}
console.log(JSON.stringify({
  engine: `llama.cpp ${llama.llamaCppRelease?.release ?? ""} via node-llama-cpp (CPU, ${
    llama.buildType ?? ""
  })`,
  cases: out,
}));
await model.dispose();
await llama.dispose();
