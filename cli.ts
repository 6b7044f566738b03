/**
 * The llama.ts command line: `generate`, `info`, `bench`, `serve`, `quantize`, `eval`. The only place that reads flags and
 * environment variables.
 * @module
 */
import { parseArgs } from "node:util";
import { createServeHandler, Engine, LlmError, type LoadedModel, loadModel } from "./mod.ts";
import type { BackendName, ProgressEvent } from "./src/types.ts";
import type { SamplingOptions } from "./src/sample/sampler.ts";
import type { LlamaConfig } from "./src/model/config.ts";
import { defaultCacheDir } from "./src/io/hf_hub.ts";
import { createRateMeter, progressBar } from "./src/cli/progress.ts";
import { openModelFile, resolveModelRef } from "./src/io/load.ts";
import { readText } from "./src/io/deno_fs.ts";
import { modelSummary } from "./src/cli/info.ts";
import { runBench } from "./src/cli/bench.ts";
import { kvDTypeFlag, weightQuantFlag } from "./src/cli/flags.ts";
import { quantizeModelFile } from "./src/io/quantize_file.ts";
import { parseScheme, QUANT_SCHEMES } from "./src/quant/schemes.ts";
import { EVAL_HELP, runEvalCommand } from "./src/io/eval_files.ts";

const COMMON = `  --model PATH         llama2.c .bin, GGUF file, HF directory, or hf:owner/repo[/file]
  --tokenizer PATH     tokenizer when the model has none (llama2.c tokenizer.bin, tokenizer.json, GGUF)
  --backend NAME       auto | ref | wasm | webgpu | cuda (default auto)
  --ctx N              context size in tokens (default min(model's, 4096))
  --kv-dtype T         KV cache dtype: f32 | f16 | int8 (default: the backend's)
  --threads N          CPU threads for the wasm backend (default: all cores)
  --cuda-lib PATH      the CUDA library (default build/libllama_ts_cuda.so; env LLAMA_TS_CUDA_LIB)
  --cuda-queue N       cuda: decode steps queued on the GPU ahead of the host, 0..4 (default 2; 0: the host
                       waits for every token; env LLAMA_TS_CUDA_QUEUE)
  --weight-quant Q     quantize float weights while loading: int8 (per channel) | int4 (group 128); cuda, wasm, webgpu
  --host-sampling      sample on the host even where the backend samples on the device (cuda, ref, webgpu); same
                       tokens (webgpu, f32: except where a draw lands within rounding of a boundary)
  --format F           text | json (default text)`;

const HELP: Record<string, string> = {
  main: `llama.ts — LLaMA inference in TypeScript

Usage: deno run -A cli.ts <command> [flags]

Commands:
  generate   generate text from a prompt, streaming to stdout
  info       describe a model: architecture, parameters, dtypes, memory
  bench      measure prefill and decode tokens per second
  serve      an OpenAI-compatible HTTP server with in-flight batching
  quantize   write a quantized GGUF (q8_0, q4_0, int8 per channel, int4 g128, SmoothQuant W8A8)
  eval       perplexity, KL divergence / top-1 agreement against a reference, summarization ROUGE

Run 'cli.ts <command> --help' for a command's flags.
Environment: HF_TOKEN (gated hf: models), HF_ENDPOINT (hub mirror), LLAMA_TS_CACHE (download cache directory),
LLAMA_TS_API_KEY (serve: the API key when --api-key is not given).`,
  generate: `Usage: cli.ts generate --model PATH [flags]

${COMMON}
  --prompt TEXT        the prompt (default "")
  --max-tokens N       most new tokens (default 256)
  --temperature X      0 = greedy (default 0.8)
  --top-k N            keep the N most likely tokens (0 = off, default 40)
  --top-p X            nucleus sampling (1 = off, default 0.95)
  --min-p X            drop tokens below X * p(max) (default 0.05)
  --repeat-penalty X   penalise recent tokens (1 = off, default 1)
  --frequency-penalty X, --presence-penalty X   OpenAI-style penalties (default 0)
  --seed N             random seed (same seed, same text)
  --stop TEXT          stop string (repeatable)
  --no-bos             do not prepend BOS
  --ignore-eos         keep going past end-of-sequence`,
  info: `Usage: cli.ts info --model PATH [--tokenizer PATH] [--ctx N] [--format json] [--backend NAME [flags]]

Prints the architecture, parameter count, tensor dtypes, and memory estimate without loading weights.
With --backend (and its flags: --weight-quant, --kv-dtype, ...), also loads the model there and reports
the device memory in use.`,
  bench: `Usage: cli.ts bench --model PATH [flags]

${COMMON}
  --prompt-tokens N    prompt length for the prefill measurement (default 64)
  --gen-tokens N       tokens to decode (default 64)
  --repeat N           runs; the best is reported (default 3)
  --sample             decode with generate's sampling (flags --temperature, --top-k, --top-p, --min-p as there,
                       seed 1) instead of greedy
Prints JSON naming the device, backend, model and tokens per second.`,
  serve: `Usage: cli.ts serve --model PATH [flags]

${COMMON}
  --host H             address to listen on (default 127.0.0.1)
  --port N             port (default 8080; 0 picks a free one)
  --max-batch N        most sequences generating at once (default 64)
  --kv-tokens N        KV cache capacity over all sequences (default: max-batch x ctx, capped to free memory)
  --max-queue N        most requests waiting for a slot; more get 429 (default 256)
  --model-name NAME    the model id clients send (default: the model file's name)
  --chat-template FILE a Jinja chat template to use instead of the model's
  --api-key KEY        require 'Authorization: Bearer KEY' (env LLAMA_TS_API_KEY)
  --no-prefix-cache    do not reuse KV blocks of identical prompt prefixes

Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics.`,
  quantize: `Usage: cli.ts quantize --model PATH --out FILE.gguf --scheme S [flags]

  --model PATH         float weights (f32/f16/bf16): llama2.c .bin, GGUF file or HF directory
  --tokenizer PATH     tokenizer when the model has none (written into the GGUF)
  --out FILE           the GGUF to write
  --scheme S           ${QUANT_SCHEMES.join(" | ")}
  --calibration FILE   text for SmoothQuant activation statistics (required by w8a8_smoothquant)
  --alpha X            SmoothQuant migration strength in [0, 1] (default 0.5)
  --calib-tokens N     most calibration tokens (default 4096)
  --backend NAME       backend that runs calibration (default ref)
  --format F           text | json (default text)`,
  eval: EVAL_HELP,
};

function fail(code: number, message: string): never {
  console.error(message);
  Deno.exit(code);
}

/**
 * A context longer than the model's training length is allowed (RoPE extrapolates), but past that position
 * the output usually degrades: say so once, on stderr, when --ctx asks for it.
 */
function warnContextPastTraining(config: LlamaConfig, ctx: number | undefined): void {
  if (ctx === undefined || ctx <= config.seqLen) return;
  console.error(
    `warning: --ctx ${ctx} is longer than the ${config.seqLen} tokens this model was trained for; text past ` +
      `position ${config.seqLen} may degrade (use --ctx ${config.seqLen} or less to stay within it)`,
  );
}

/** --threads sizes the wasm backend's worker pool; say so when another backend runs and ignores it. */
function noteIgnoredThreads(engine: Engine, threads: number | undefined): void {
  const backend = engine.info().backend;
  if (threads !== undefined && backend !== "wasm") {
    console.error(
      `note: --threads sets the wasm backend's worker threads; the ${backend} backend ignores it`,
    );
  }
}

function num(v: string | undefined, flag: string, int = false): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || (int && !Number.isInteger(n))) {
    throw new LlmError("BAD_REQUEST", `--${flag} expects ${int ? "an integer" : "a number"}, got "${v}"`);
  }
  return n;
}

/**
 * `--temperature -1` → `--temperature=-1`: node's parseArgs takes a value starting with "-" for an
 * unknown flag and refuses it, so a negative number would never reach the range checks that say
 * what is allowed.
 */
function joinNegativeValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i], next = args[i + 1];
    if (/^--[a-z-]+$/.test(a) && next !== undefined && /^-(\d|\.\d|Infinity|NaN)/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

function portFlag(port: number): number {
  if (port < 0 || port > 65535) {
    throw new LlmError("BAD_REQUEST", `--port must be in 0..65535 (0 picks a free port), got ${port}`);
  }
  return port;
}

const BACKENDS = ["auto", "ref", "wasm", "webgpu", "cuda"];

function backendFlag(v: string): string {
  if (!BACKENDS.includes(v)) {
    throw new LlmError("BAD_REQUEST", `unknown backend "${v}"; choose one of ${BACKENDS.join(", ")}`);
  }
  return v;
}

function onProgress(): ((e: ProgressEvent) => void) | undefined {
  if (!Deno.stderr.isTerminal()) return undefined;
  const enc = new TextEncoder();
  const rate = createRateMeter();
  let last = 0;
  return (e) => {
    const bytesPerSecond = rate(e);
    const t = performance.now();
    if (t - last < 100 && e.done !== e.total) return;
    last = t;
    const line = progressBar(e, 20, { bytesPerSecond });
    Deno.stderr.writeSync(enc.encode(`\r${line}${e.done === e.total ? "\n" : ""}`));
  };
}

async function main(argv: string[]): Promise<void> {
  const cmd = argv[0];
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    console.log(HELP.main);
    return;
  }
  if (!(cmd in HELP) || cmd === "main") fail(2, `unknown command "${cmd}"\n\n${HELP.main}`);
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv.slice(1)),
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: "boolean", short: "h" },
        model: { type: "string", short: "m" },
        tokenizer: { type: "string", short: "t" },
        prompt: { type: "string", short: "p" },
        "max-tokens": { type: "string", short: "n" },
        temperature: { type: "string" },
        "top-k": { type: "string" },
        "top-p": { type: "string" },
        "min-p": { type: "string" },
        "repeat-penalty": { type: "string" },
        "frequency-penalty": { type: "string" },
        "presence-penalty": { type: "string" },
        seed: { type: "string" },
        stop: { type: "string", multiple: true },
        backend: { type: "string" },
        ctx: { type: "string" },
        "kv-dtype": { type: "string" },
        threads: { type: "string" },
        "cuda-lib": { type: "string" },
        "cuda-queue": { type: "string" },
        "weight-quant": { type: "string" },
        format: { type: "string" },
        "no-bos": { type: "boolean" },
        "ignore-eos": { type: "boolean" },
        "prompt-tokens": { type: "string" },
        "gen-tokens": { type: "string" },
        repeat: { type: "string" },
        host: { type: "string" },
        port: { type: "string" },
        "max-batch": { type: "string" },
        "kv-tokens": { type: "string" },
        "max-queue": { type: "string" },
        "model-name": { type: "string" },
        "chat-template": { type: "string" },
        "api-key": { type: "string" },
        "no-prefix-cache": { type: "boolean" },
        "host-sampling": { type: "boolean" },
        sample: { type: "boolean" },
        out: { type: "string", short: "o" },
        scheme: { type: "string" },
        calibration: { type: "string" },
        alpha: { type: "string" },
        "calib-tokens": { type: "string" },
        reference: { type: "string" },
        "reference-tokenizer": { type: "string" },
        "reference-kv-dtype": { type: "string" },
        text: { type: "string" },
        summaries: { type: "string" },
        "max-records": { type: "string" },
        "eval-tokens": { type: "string" },
      },
    });
  } catch (e) {
    fail(2, `${(e as Error).message}\n\n${HELP[cmd]}`);
  }
  const f = parsed.values;
  if (f.help) {
    console.log(HELP[cmd]);
    return;
  }
  if (!f.model) fail(2, `--model is required\n\n${HELP[cmd]}`);
  const format = f.format ?? "text";
  if (format !== "text" && format !== "json") fail(2, `--format must be text or json, got "${format}"`);
  const env = Deno.env.toObject();
  const loadOptions = {
    tokenizer: f.tokenizer,
    cacheDir: defaultCacheDir(env),
    hfToken: env.HF_TOKEN,
    hfEndpoint: env.HF_ENDPOINT,
    onProgress: onProgress(),
  };
  const engineOptions = {
    backend: (f.backend ?? "auto") as BackendName | "auto",
    contextSize: num(f.ctx, "ctx", true),
    kvDType: kvDTypeFlag(f["kv-dtype"]),
    threads: num(f.threads, "threads", true),
    cudaLibrary: f["cuda-lib"] ?? env.LLAMA_TS_CUDA_LIB,
    cudaQueueDepth: num(f["cuda-queue"] ?? env.LLAMA_TS_CUDA_QUEUE, "cuda-queue", true),
    weightQuant: weightQuantFlag(f["weight-quant"]),
    deviceSampling: !f["host-sampling"],
    onProgress: loadOptions.onProgress,
  };
  // generate's sampling settings (bench --sample uses them too)
  const sampling = (): SamplingOptions => ({
    temperature: num(f.temperature, "temperature") ?? 0.8,
    topK: num(f["top-k"], "top-k", true) ?? 40,
    topP: num(f["top-p"], "top-p") ?? 0.95,
    minP: num(f["min-p"], "min-p") ?? 0.05,
    repetitionPenalty: num(f["repeat-penalty"], "repeat-penalty"),
    frequencyPenalty: num(f["frequency-penalty"], "frequency-penalty"),
    presencePenalty: num(f["presence-penalty"], "presence-penalty"),
  });

  if (cmd === "quantize") {
    if (!f.out) fail(2, `--out is required\n\n${HELP[cmd]}`);
    if (!f.scheme) fail(2, `--scheme is required\n\n${HELP[cmd]}`);
    const r = await quantizeModelFile(await resolveModelRef(f.model, loadOptions), f.out, {
      scheme: parseScheme(f.scheme),
      tokenizer: f.tokenizer,
      calibration: f.calibration,
      alpha: num(f.alpha, "alpha"),
      calibrationTokens: num(f["calib-tokens"], "calib-tokens", true),
      backend: f.backend as BackendName | undefined,
    });
    if (format === "json") console.log(JSON.stringify(r, null, 2));
    else {
      const types = Object.entries(r.dtypes).map(([d, v]) => `${v.tensors} ${d}`).join(", ");
      console.log(
        `wrote ${r.out}: ${r.scheme}, ${(r.bytes / 2 ** 20).toFixed(2)} MiB, ${
          r.matrixBitsPerWeight.toFixed(2)
        } bits per matrix weight (${types})${
          r.calibrationTokens ? `, alpha ${r.alpha}, ${r.calibrationTokens} calibration tokens` : ""
        }, ${r.seconds.toFixed(1)} s`,
      );
    }
    return;
  }

  if (cmd === "eval") {
    await runEvalCommand({ ...f, model: f.model }, { format, loadOptions, engineOptions });
    return;
  }

  if (cmd === "info") {
    const ctx = num(f.ctx, "ctx", true);
    if (ctx !== undefined && (ctx < 1 || ctx > 1 << 20)) {
      throw new LlmError("BAD_REQUEST", `--ctx must be an integer in 1..1048576, got ${ctx}`);
    }
    if (f.backend) backendFlag(f.backend);
    const path = await resolveModelRef(f.model, loadOptions);
    const model = await openModelFile(path);
    let summary;
    try {
      summary = modelSummary(model, { contextSize: ctx });
    } finally {
      model.close();
    }
    if (!f.backend) {
      console.log(format === "json" ? JSON.stringify(summary, null, 2) : summary.text);
      return;
    }
    // load onto the backend to report what it really takes there
    const loaded = await loadModel(path, loadOptions);
    warnContextPastTraining(loaded.model.config, engineOptions.contextSize);
    using engine = await Engine.create(loaded.model, loaded.tokenizer, engineOptions).finally(() =>
      loaded.model.close()
    );
    noteIgnoredThreads(engine, engineOptions.threads);
    const i = engine.info();
    const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const loadedOn = {
      backend: i.backend,
      device: i.device,
      deviceMemoryUsed: i.deviceMemoryUsed,
      weightBytes: i.weightBytes,
      kvBytes: i.kvBytes,
      kvDType: i.kvDType,
      loadMs: i.loadMs,
    };
    if (format === "json") {
      console.log(JSON.stringify({ ...summary, text: undefined, loaded: loadedOn }, null, 2));
    } else {
      console.log(
        `${summary.text}\nloaded on     ${i.backend} (${i.device}) in ${
          i.loadMs.toFixed(0)
        } ms: device memory in use ` +
          `${i.deviceMemoryUsed === undefined ? "unknown" : mib(i.deviceMemoryUsed)} (weights ${
            mib(i.weightBytes)
          } as stored in the file, KV cache ${mib(i.kvBytes)} ${i.kvDType})`,
      );
    }
    return;
  }

  if (cmd === "serve") {
    await serve(f.model, loadOptions, engineOptions, {
      host: f.host ?? "127.0.0.1",
      port: portFlag(num(f.port, "port", true) ?? 8080),
      maxBatch: num(f["max-batch"], "max-batch", true) ?? 64,
      kvTokens: num(f["kv-tokens"], "kv-tokens", true),
      maxQueue: num(f["max-queue"], "max-queue", true) ?? 256,
      modelName: f["model-name"] ?? f.model.replace(/\/+$/, "").split("/").pop()!,
      chatTemplate: f["chat-template"] ? await readText(f["chat-template"]) : undefined,
      apiKey: f["api-key"] ?? env.LLAMA_TS_API_KEY,
      prefixCache: !f["no-prefix-cache"],
    });
    return;
  }

  const loaded: LoadedModel = await loadModel(f.model, loadOptions);
  warnContextPastTraining(loaded.model.config, engineOptions.contextSize);
  using engine = await Engine.create(loaded.model, loaded.tokenizer, engineOptions).finally(() =>
    loaded.model.close()
  );
  noteIgnoredThreads(engine, engineOptions.threads);

  if (cmd === "bench") {
    const report = await runBench(engine, {
      model: f.model,
      promptTokens: num(f["prompt-tokens"], "prompt-tokens", true) ?? 64,
      genTokens: num(f["gen-tokens"], "gen-tokens", true) ?? 64,
      repeat: num(f.repeat, "repeat", true) ?? 3,
      sampling: f.sample ? { ...sampling(), seed: 1 } : undefined,
    });
    console.log(JSON.stringify(report, null, 2));
    return;
  }

  const ac = new AbortController();
  const onSig = (): void => ac.abort();
  Deno.addSignalListener("SIGINT", onSig);
  try {
    const gen = engine.generate(f.prompt ?? "", {
      maxTokens: num(f["max-tokens"], "max-tokens", true),
      ...sampling(),
      seed: num(f.seed, "seed", true),
      stop: f.stop,
      addBos: f["no-bos"] ? false : undefined,
      ignoreEos: f["ignore-eos"],
      signal: ac.signal,
    });
    const out = new TextEncoder();
    if (format === "text" && f.prompt) await Deno.stdout.write(out.encode(f.prompt)); // echo, as llama2.c does
    for await (const ev of gen) {
      if (ev.type === "token") {
        if (format === "text") await Deno.stdout.write(out.encode(ev.text));
        continue;
      }
      const r = ev.result;
      const info = engine.info();
      if (format === "json") {
        console.log(JSON.stringify({
          prompt_ids: r.promptIds,
          generated_ids: r.generatedIds,
          text: engine.tokenizer.decode([...r.promptIds, ...r.generatedIds]),
          completion: r.text,
          finish_reason: r.finishReason,
          backend: info.backend,
          device: info.device,
          timings: { load_ms: info.loadMs, ...r.timings },
        }));
      } else {
        await Deno.stdout.write(out.encode("\n"));
        const t = r.timings;
        console.error(
          `[${info.backend}] load ${info.loadMs.toFixed(0)} ms, prefill ${t.promptTokens} tok ` +
            `${t.prefillTokPerS.toFixed(1)} tok/s, decode ${t.generatedTokens} tok ${
              t.decodeTokPerS.toFixed(1)
            } tok/s ` +
            `(${r.finishReason}${
              r.finishReason === "length" && r.promptIds.length + r.generatedIds.length >= info.contextSize
                ? `: the context of ${info.contextSize} tokens is full; raise --ctx for more`
                : ""
            })`,
        );
      }
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSig);
  }
}

/**
 * `serve`: listen first (so /health answers 503 while the model loads), then load the engine. SIGINT and
 * SIGTERM stop accepting, end the streams in flight and free the engine.
 */
async function serve(
  model: string,
  loadOptions: Parameters<typeof loadModel>[1],
  engineOptions: Parameters<typeof Engine.create>[2],
  o: {
    host: string;
    port: number;
    maxBatch: number;
    kvTokens?: number;
    maxQueue: number;
    modelName: string;
    chatTemplate?: string;
    apiKey?: string;
    prefixCache: boolean;
  },
): Promise<void> {
  let chatTemplate = o.chatTemplate;
  const engine = (async () => {
    const loaded = await loadModel(model, loadOptions);
    chatTemplate ??= loaded.model.tokenizer?.chatTemplate;
    warnContextPastTraining(loaded.model.config, engineOptions?.contextSize);
    const e = await Engine.create(loaded.model, loaded.tokenizer, {
      ...engineOptions,
      maxBatch: o.maxBatch,
      kvCapacity: o.kvTokens ?? "auto",
      maxQueue: o.maxQueue,
      prefixCache: o.prefixCache,
    }).finally(() => loaded.model.close());
    noteIgnoredThreads(e, engineOptions?.threads);
    return e;
  })();
  const handler = createServeHandler({
    engine,
    modelName: o.modelName,
    apiKey: o.apiKey === "" ? undefined : o.apiKey,
    chatTemplate: () => chatTemplate,
    processMetrics: () => {
      const m = Deno.memoryUsage();
      return { llama_process_resident_bytes: m.rss, llama_process_heap_used_bytes: m.heapUsed };
    },
  });
  const server = Deno.serve({
    hostname: o.host,
    port: o.port,
    onListen: ({ hostname, port }) =>
      console.error(`llama.ts serving ${o.modelName} on http://${hostname}:${port}`),
  }, handler.fetch);
  const stop = (): void => void server.shutdown();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  let loaded: Engine | undefined;
  try {
    loaded = await engine;
    const i = loaded.info();
    console.error(
      `[${i.backend}] ${i.device}: loaded in ${
        i.loadMs.toFixed(0)
      } ms; ctx ${i.contextSize}, max batch ${i.maxBatch}, ` +
        `KV ${i.kvCapacity} tokens (${(i.kvBytes / 2 ** 20).toFixed(0)} MiB ${i.kvDType})`,
    );
  } catch (e) {
    // a server that can never answer is no use: stop and exit non-zero with the reason
    Deno.removeSignalListener("SIGINT", stop);
    Deno.removeSignalListener("SIGTERM", stop);
    await server.shutdown();
    throw e;
  }
  await server.finished;
  Deno.removeSignalListener("SIGINT", stop);
  Deno.removeSignalListener("SIGTERM", stop);
  loaded?.[Symbol.dispose]();
}

/**
 * Mesa's Vulkan drivers (lavapipe, the CPU WebGPU adapter on headless Linux) print "error: XDG_RUNTIME_DIR is
 * invalid or not set" twice when a process without a login session asks for a WebGPU adapter, which
 * `--backend auto` does. The message is harmless but reads like a failure of ours; give such processes a
 * private runtime directory (mode 700, as the XDG spec asks) before any adapter is requested.
 */
function quietHeadlessVulkan(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (Deno.env.get("XDG_RUNTIME_DIR")) return;
    const uid = Deno.uid();
    if (uid === null) return;
    const dir = `/tmp/llama-ts-runtime-${uid}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = Deno.lstatSync(dir); // ours, a real directory (not a link someone planted), private
    if (!st.isDirectory || st.uid !== uid) return;
    if ((st.mode ?? 0) & 0o077) Deno.chmodSync(dir, 0o700);
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // no env or file-system permission: the drivers' message is cosmetic, leave it
  }
}

if (import.meta.main) {
  quietHeadlessVulkan();
  try {
    await main(Deno.args);
  } catch (e) {
    if (e instanceof LlmError) fail(1, `error [${e.code}]: ${e.message}`);
    fail(1, `internal error: ${(e as Error)?.stack ?? e}\nplease report this as a bug`);
  }
}
