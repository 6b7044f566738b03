/**
 * Decode/prefill benchmark on the shared stories260K model (and any model given with --model), for
 * each backend named. Prints one JSON report per backend; record results in bench/RESULTS.md.
 *
 *   deno run -A bench/decode_bench.ts [--backend ref,wasm] [--model PATH --tokenizer PATH]
 *                                     [--synth stories15M|stories110M|llama7B --dtype f32|q8_0|q4_0]
 *                                     [--prompt-tokens 64] [--gen-tokens 128] [--repeat 5] [--threads N]
 */
import { parseArgs } from "node:util";
import { createEngine } from "../mod.ts";
import { runBench } from "../src/cli/bench.ts";
import { synthGguf } from "./_synth_gguf.ts";
import type { DType } from "../src/types.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "ref" },
    model: { type: "string" },
    synth: { type: "string" },
    dtype: { type: "string", default: "f32" },
    tokenizer: { type: "string" },
    "prompt-tokens": { type: "string", default: "64" },
    "gen-tokens": { type: "string", default: "128" },
    repeat: { type: "string", default: "5" },
    threads: { type: "string" },
  },
});
function cpuName(): string {
  try {
    return Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

// the shared test models (env LLAMA_TS_MODELS overrides, as in tests/_util.ts: the device scripts set it)
const models = `${
  Deno.env.get("LLAMA_TS_MODELS") ?? new URL("../../shared/models", import.meta.url).pathname
}/`;
const model = f.synth ? await synthGguf(f.synth, f.dtype as DType) : f.model ?? `${models}stories260K.bin`;
const tokenizer = f.tokenizer ?? (f.model || f.synth ? undefined : `${models}tok512.bin`);
for (const backend of f.backend!.split(",")) {
  const threads = f.threads ? Number(f.threads) : undefined;
  using engine = await createEngine(model, { tokenizer, backend: backend as "ref", threads });
  const report = await runBench(engine, {
    model: f.synth ? `synthetic ${f.synth} ${f.dtype}` : model,
    promptTokens: Number(f["prompt-tokens"]),
    genTokens: Number(f["gen-tokens"]),
    repeat: Number(f.repeat),
  });
  console.log(
    JSON.stringify({
      ...report,
      runtime: `deno ${Deno.version.deno}`,
      cpu: cpuName(),
      cores: navigator.hardwareConcurrency,
    }),
  );
}
