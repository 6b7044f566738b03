/**
 * `cli.ts serve` for host-overhead benchmarks: the real engine, scheduler and HTTP handler over a
 * "null" backend (the ref backend holds the weights and KV cache, but a step computes nothing and reads
 * back deterministic token ids, or zero logits), so what is timed is the host's work per step and per
 * token: scheduling, sampling, detokenizing, SSE encoding, HTTP writes, metrics. bench/serve_load.ts runs
 * it with `--cli bench/_null_serve.ts`; it takes the same flags as `cli.ts serve` (--backend is
 * ignored) and prints the same "serving on" and "[backend] device:" lines.
 * @module
 */
import { parseArgs } from "node:util";
import { type Backend, createServeHandler, Engine, loadModel, pickBackend, type StepParams } from "../mod.ts";

const args = Deno.args[0] === "serve" ? Deno.args.slice(1) : Deno.args;
const { values: f } = parseArgs({
  args,
  strict: false,
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    model: { type: "string" },
    tokenizer: { type: "string" },
    "max-batch": { type: "string", default: "64" },
    ctx: { type: "string" },
    "kv-tokens": { type: "string" },
  },
});

/**
 * The ref backend with steps that do nothing: every compiled graph's run resolves at once; downloads of
 * an argmax's ids give ids from a few hundred above the vocabulary's byte tokens (so detokenizing sees
 * ordinary word pieces), downloads of logits give zeros.
 */
function nullBackend(ref: Backend): Backend {
  let calls = 0;
  const ids = new Set<unknown>();
  let vocab = 0;
  return {
    name: ref.name,
    caps: { ...ref.caps, device: "null steps (host overhead only)" },
    alloc: (dtype, shape, usage, label) => {
      const t = ref.alloc(dtype, shape, usage, label);
      if (label === "ids" && dtype === "i32") ids.add(t);
      return t;
    },
    upload: (dst, src, o) => ref.upload(dst, src, o),
    download: (src, o) => {
      const n = o?.byteLength ?? src.byteLength;
      if (!ids.has(src)) return Promise.resolve(new ArrayBuffer(n));
      // a few hundred distinct ids, as text reuses its common tokens
      const out = new Int32Array(n / 4), lo = Math.min(259, vocab >> 1), span = Math.min(500, vocab - lo);
      for (let i = 0; i < out.length; i++) out[i] = lo + ((calls * 7 + i * 13) % span);
      calls++;
      return Promise.resolve(out.buffer);
    },
    supportsOp: (op) => ref.supportsOp(op),
    compile(graph, options) {
      const embed = graph.find((o) => o.op === "embed");
      if (embed?.op === "embed") vocab = embed.table.shape[0];
      const inner = ref.compile(graph, options);
      return {
        run: (_step: StepParams) => Promise.resolve(),
        [Symbol.dispose]: () => inner[Symbol.dispose](),
      };
    },
    synchronize: () => ref.synchronize(),
    free: (t) => ref.free(t),
    [Symbol.dispose]: () => ref[Symbol.dispose](),
  };
}

const loaded = await loadModel(f.model as string, { tokenizer: f.tokenizer as string | undefined });
const backend = nullBackend(await pickBackend("ref"));
const engine = await Engine.create(loaded.model, loaded.tokenizer, {
  backend,
  maxBatch: Number(f["max-batch"]),
  contextSize: f.ctx ? Number(f.ctx) : undefined,
  kvCapacity: f["kv-tokens"] ? Number(f["kv-tokens"]) : undefined,
});
loaded.model.close();
const name = (f.model as string).split("/").pop()!;
const handler = createServeHandler({ engine, modelName: name });
const server = Deno.serve({
  hostname: f.host as string,
  port: Number(f.port),
  onListen: ({ hostname, port }) => {
    console.error(`llama.ts serving ${name} on http://${hostname}:${port}`);
    console.error(`[null] ${backend.caps.device}: ctx ${engine.contextSize}, max batch ${engine.maxBatch}`);
  },
}, handler.fetch);
const stop = (): void => void server.shutdown();
Deno.addSignalListener("SIGTERM", stop);
Deno.addSignalListener("SIGINT", stop);
await server.finished;
engine[Symbol.dispose]();
