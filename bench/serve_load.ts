/**
 * Load test of `cli.ts serve` over loopback: starts the server as a child process, waits for /health,
 * then measures one streaming client alone (the baseline) and N concurrent streaming clients, in the same
 * run. Every stream must end with `[DONE]` and report usage with the requested number of tokens; failed or
 * lost streams are counted and make the exit status 1. Bounded: a fixed number of requests, every request
 * and the whole run under a time limit.
 *
 *   deno run -A bench/serve_load.ts [--clients 64] [--max-tokens 64] [--prompt-tokens 16] [--rounds 1]
 *     [--timeout-s 600] [--out result.json] [--cpu-profile prof.cpuprofile] [--cli path/to/cli.ts]
 *     [--sweep 8,9,16,32] [--temperature 0] [--top-p 1]
 *     -- <cli.ts serve flags: --model ... --backend ... --max-batch 64>
 *
 * The report's `split` says where the server's step cycle went during the best concurrent round, from the
 * /metrics phase counters: per step, time inside the backend (run + read-back) against host time in the
 * step (plan, sample) and between steps (streaming, HTTP). `--cpu-profile` also samples the server's main
 * thread over the inspector during the concurrent rounds, writes the profile (Chrome DevTools opens it)
 * and adds the top functions and files by self time to the report. `--cli` runs another checkout's server
 * (A/B against a baseline commit). `--sweep` runs one more round per listed client count after the others
 * and reports each one's split: how the backend's step time grows with the rows in a step. On Linux each phase also reports the server's CPU time per token: its
 * main (JS) thread's, which on a GPU backend is all the host work (the device runs on other threads), and
 * the whole process's.
 *
 * Prompts are token ids (the completions API takes them), so any vocabulary works, synthetic ones too;
 * generation is greedy (or sampled with --temperature / --top-p, seeded per stream) with ignore_eos so every
 * stream does the same number of tokens.
 * @module
 */
import { parseArgs } from "node:util";
import { type CpuProfile, Profiler, summarize } from "./_cpu_profile.ts";
import { serveArgs } from "./_serve_args.ts";

const sep = Deno.args.indexOf("--");
const own = sep < 0 ? Deno.args : Deno.args.slice(0, sep);
const serverArgs = serveArgs(Deno.args);
const { values: f } = parseArgs({
  args: own,
  options: {
    clients: { type: "string", default: "64" },
    "max-tokens": { type: "string", default: "64" },
    "prompt-tokens": { type: "string", default: "16" },
    rounds: { type: "string", default: "1" },
    "timeout-s": { type: "string", default: "600" },
    out: { type: "string" },
    "cpu-profile": { type: "string" },
    cli: { type: "string" },
    sweep: { type: "string" },
    temperature: { type: "string", default: "0" },
    "top-p": { type: "string", default: "1" },
  },
});
const temperature = Number(f.temperature), topP = Number(f["top-p"]);
const clients = Number(f.clients),
  maxTokens = Number(f["max-tokens"]),
  promptTokens = Number(f["prompt-tokens"]);
const rounds = Number(f.rounds), timeoutMs = Number(f["timeout-s"]) * 1000;
if (![clients, maxTokens, promptTokens, rounds].every((n) => Number.isInteger(n) && n > 0)) {
  console.error("--clients, --max-tokens, --prompt-tokens and --rounds must be positive integers");
  Deno.exit(2);
}
const deadline = Date.now() + timeoutMs;

// ---- the server ----------------------------------------------------------------------------------------
const cli = f.cli ?? new URL("../cli.ts", import.meta.url).pathname;
const inspect = f["cpu-profile"] ? ["--inspect=127.0.0.1:0"] : [];
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", ...inspect, cli, "serve", "--host", "127.0.0.1", "--port", "0", ...serverArgs],
  stdout: "null",
  stderr: "piped",
}).spawn();
let log = "";
const logDone = (async () => {
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    log += chunk;
    Deno.stderr.writeSync(new TextEncoder().encode(chunk));
  }
})();

async function until<T>(
  what: string,
  f: () => T | undefined | Promise<T | undefined>,
  ms: number,
): Promise<T> {
  const end = Math.min(Date.now() + ms, deadline);
  while (Date.now() < end) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}; server log:\n${log}`);
}

let exitCode = 0;
try {
  const url = await until("the server to listen", () => /on (http:\/\/[\d.]+:\d+)/.exec(log)?.[1], 120_000);
  await until("/health 200", async () => {
    const r = await fetch(`${url}/health`).catch(() => undefined);
    await r?.body?.cancel();
    return r?.status === 200 ? true : undefined;
  }, timeoutMs);
  const device = /\[(\w+)\] ([^:]+):/.exec(log);
  const model = (await (await fetch(`${url}/v1/models`)).json()).data[0].id as string;

  interface StreamResult {
    ok: boolean;
    why?: string;
    tokens: number;
    ttftMs: number;
    ms: number;
  }

  /** One streaming completion; checks [DONE] and usage. */
  const stream = async (i: number): Promise<StreamResult> => {
    const prompt = [1, ...Array.from({ length: promptTokens - 1 }, (_, j) => 3 + ((i * 131 + j * 17) % 400))];
    const t0 = performance.now();
    let ttft = 0;
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model,
          prompt,
          max_tokens: maxTokens,
          temperature,
          top_p: topP,
          seed: i,
          ignore_eos: true,
          stream: true,
          stream_options: { include_usage: true },
        }),
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      if (res.status !== 200) {
        return { ok: false, why: `HTTP ${res.status}: ${await res.text()}`, tokens: 0, ttftMs: 0, ms: 0 };
      }
      let buf = "", done = false, usage: { completion_tokens: number } | undefined;
      for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
        if (!ttft) ttft = performance.now() - t0;
        buf += chunk;
        let k;
        while ((k = buf.indexOf("\n\n")) >= 0) {
          const ev = buf.slice(0, k);
          buf = buf.slice(k + 2);
          if (!ev.startsWith("data: ")) {
            return { ok: false, why: `bad SSE line ${ev}`, tokens: 0, ttftMs: 0, ms: 0 };
          }
          const data = ev.slice(6);
          if (data === "[DONE]") done = true;
          else {
            const j = JSON.parse(data);
            if (j.error) return { ok: false, why: JSON.stringify(j.error), tokens: 0, ttftMs: 0, ms: 0 };
            if (j.usage) usage = j.usage;
          }
        }
      }
      const ms = performance.now() - t0;
      if (!done) return { ok: false, why: "stream ended without [DONE]", tokens: 0, ttftMs: ttft, ms };
      if (usage?.completion_tokens !== maxTokens) {
        return {
          ok: false,
          why: `usage ${JSON.stringify(usage)}`,
          tokens: usage?.completion_tokens ?? 0,
          ttftMs: ttft,
          ms,
        };
      }
      return { ok: true, tokens: usage.completion_tokens, ttftMs: ttft, ms };
    } catch (e) {
      return { ok: false, why: (e as Error).message, tokens: 0, ttftMs: ttft, ms: performance.now() - t0 };
    }
  };

  const pct = (xs: number[], p: number): number => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : 0;
  };
  /**
   * The server's CPU time in ms (Linux): its main thread's (the JS thread: scheduler, streaming, HTTP;
   * ns resolution, from schedstat, with the time it waited for a core) and the whole process's (all
   * threads, 10 ms ticks).
   */
  const cpu = (): { main: number; wait: number; all: number } | undefined => {
    try {
      const [run, wait] = Deno.readTextFileSync(`/proc/${child.pid}/schedstat`).split(" ").map(Number);
      const stat = Deno.readTextFileSync(`/proc/${child.pid}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return { main: run / 1e6, wait: wait / 1e6, all: (Number(f[11]) + Number(f[12])) * 10 };
    } catch {
      return undefined;
    }
  };
  const phase = async (n: number): Promise<Record<string, unknown>> => {
    const c0 = cpu();
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: n }, (_, i) => stream(i)));
    const s = (performance.now() - t0) / 1000;
    const c1 = cpu();
    const tokens = rs.reduce((a, r) => a + r.tokens, 0);
    const perTok = (ms: number): number => Number(((ms / tokens) * 1000).toFixed(1));
    const failed = rs.filter((r) => !r.ok);
    for (const r of failed.slice(0, 5)) console.error(`failed stream: ${r.why}`);
    const ok = rs.filter((r) => r.ok);
    return {
      clients: n,
      seconds: Number(s.toFixed(3)),
      tokens,
      tokPerS: Number((tokens / s).toFixed(1)),
      perStreamTokPerS: Number(pct(ok.map((r) => (r.tokens / r.ms) * 1000), 0.5).toFixed(1)),
      ttftMsP50: Number(pct(ok.map((r) => r.ttftMs), 0.5).toFixed(1)),
      ttftMsP99: Number(pct(ok.map((r) => r.ttftMs), 0.99).toFixed(1)),
      failed: failed.length,
      ...(c0 && c1 && tokens
        ? {
          serverCpuUsPerToken: {
            mainThread: perTok(c1.main - c0.main),
            mainThreadWaitingForCore: perTok(c1.wait - c0.wait),
            process: perTok(c1.all - c0.all),
          },
        }
        : {}),
    };
  };

  /** Values of /metrics lines by their full name (labels included). */
  const scrape = async (): Promise<Map<string, number>> => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const m = new Map<string, number>();
    for (const line of text.split("\n")) {
      const k = line.lastIndexOf(" ");
      if (!line.startsWith("#") && k > 0) m.set(line.slice(0, k), Number(line.slice(k + 1)));
    }
    return m;
  };
  /** Where the step cycle went between two scrapes (undefined when the server lacks the counters). */
  const splitOf = (a: Map<string, number>, b: Map<string, number>, tokens: number) => {
    const d = (k: string): number => (b.get(k) ?? NaN) - (a.get(k) ?? NaN);
    const steps = d("llama_steps_total");
    const ph = (p: string): number => d(`llama_step_phase_seconds_total{phase="${p}"}`) * 1000;
    const [plan, backend, sample, gap] = ["plan", "backend", "sample", "gap"].map(ph);
    if (!(steps > 0) || Number.isNaN(backend)) return undefined;
    const host = plan + sample + gap, all = host + backend;
    const r = (x: number, n = 3): number => Number(x.toFixed(n));
    return {
      steps,
      msPerStep: {
        backend: r(backend / steps),
        plan: r(plan / steps),
        sample: r(sample / steps),
        gap: r(gap / steps),
      },
      usPerToken: { backend: r((backend / tokens) * 1000, 1), host: r((host / tokens) * 1000, 1) },
      backendShare: r(backend / all),
      hostShare: r(host / all),
    };
  };

  await phase(1); // warm-up: compiles shapes, fills caches
  const profiler = f["cpu-profile"]
    ? await Profiler.connect(/Debugger listening on (ws:\S+)/.exec(log)![1])
    : undefined;
  const profiles: CpuProfile[] = [];
  const single = [], batched = [];
  for (let r = 0; r < rounds; r++) {
    let m0 = await scrape();
    const one = await phase(1);
    one.split = splitOf(m0, await scrape(), one.tokens as number);
    single.push(one);
    m0 = await scrape();
    await profiler?.start();
    const many = await phase(clients);
    if (profiler) profiles.push(await profiler.stop());
    many.split = splitOf(m0, await scrape(), many.tokens as number);
    batched.push(many);
  }
  profiler?.close();
  const sweep = [];
  for (const n of (f.sweep ?? "").split(",").filter((x) => x.trim()).map(Number)) {
    const m0 = await scrape();
    const p = await phase(n);
    const sp = splitOf(m0, await scrape(), p.tokens as number);
    sweep.push({
      clients: n,
      tokPerS: p.tokPerS,
      failed: p.failed,
      msPerStep: sp?.msPerStep,
      serverCpuUsPerToken: p.serverCpuUsPerToken,
    });
  }
  const best = (xs: Record<string, unknown>[]) =>
    xs.reduce((a, b) => (b.tokPerS as number) > (a.tokPerS as number) ? b : a);
  const metrics = await scrape();
  const gauge = (name: string): number => metrics.get(name) ?? NaN;
  const failed = [...single, ...batched, ...sweep].reduce((a, p) => a + (p.failed as number), 0);
  const report = {
    date: new Date().toISOString(),
    backend: device?.[1],
    device: device?.[2],
    server: serverArgs.join(" "),
    promptTokens,
    maxTokens,
    single: best(single),
    concurrent: best(batched),
    ratio: Number(((best(batched).tokPerS as number) / (best(single).tokPerS as number)).toFixed(2)),
    rounds: { single, concurrent: batched },
    ...(sweep.length ? { sweep } : {}),
    failed,
    kvBlocksInUseAfter: gauge("llama_kv_blocks_in_use"),
    requestsInFlightAfter: gauge("llama_requests_in_flight"),
    ...(profiles.length ? { cpuProfile: summarize(profiles[batched.indexOf(best(batched))], 20) } : {}),
  };
  if (f["cpu-profile"] && profiles.length) {
    await Deno.writeTextFile(f["cpu-profile"], JSON.stringify(profiles[batched.indexOf(best(batched))]));
  }
  console.log(JSON.stringify(report, null, 2));
  if (f.out) await Deno.writeTextFile(f.out, JSON.stringify(report, null, 2));
  if (failed > 0 || report.kvBlocksInUseAfter !== 0) exitCode = 1;
} catch (e) {
  console.error((e as Error).message);
  exitCode = 1;
} finally {
  child.kill("SIGTERM");
  const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await child.status;
  clearTimeout(killer);
  await logDone.catch(() => {});
}
Deno.exit(exitCode);
