/**
 * Memory over many requests: starts `cli.ts serve` (stories260K on ref unless server flags follow `--`),
 * sends --requests requests (default 10,000) over loopback with --concurrency in flight, a mix of
 * streamed, plain, chat and abandoned-mid-stream ones, and samples the server's resident and heap bytes
 * from /metrics after every tenth of the run. The first half is warm-up (V8 and the allocator grow their
 * pools); memory is flat when no sample of the second half exceeds the half-way sample by more than
 * --slack-mib. KV blocks in use and requests in flight must be back at 0. Exit 1 otherwise. Bounded by
 * --timeout-s.
 *
 *   deno run -A bench/serve_memory.ts [--requests 10000] [--concurrency 32] [--slack-mib 48] [-- serve flags]
 * @module
 */
import { parseArgs } from "node:util";
import { serveArgs } from "./_serve_args.ts";

const sep = Deno.args.indexOf("--");
const { values: f } = parseArgs({
  args: sep < 0 ? Deno.args : Deno.args.slice(0, sep),
  options: {
    requests: { type: "string", default: "10000" },
    concurrency: { type: "string", default: "32" },
    "slack-mib": { type: "string", default: "48" },
    "timeout-s": { type: "string", default: "900" },
  },
});
const serverArgs = serveArgs(Deno.args);
const total = Number(f.requests), conc = Number(f.concurrency), slack = Number(f["slack-mib"]);
const deadline = Date.now() + Number(f["timeout-s"]) * 1000;

const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "-A", new URL("../cli.ts", import.meta.url).pathname, "serve", "--port", "0", ...serverArgs],
  stdout: "null",
  stderr: "piped",
}).spawn();
let log = "";
const logDone = (async () => {
  for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) log += c;
})();

async function waitFor<T>(f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  while (Date.now() < deadline) {
    const v = await f();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out; server log:\n${log}`);
}

let code = 0;
try {
  const url = await waitFor(() => /on (http:\/\/[\d.]+:\d+)/.exec(log)?.[1]);
  await waitFor(async () => {
    const r = await fetch(`${url}/health`).catch(() => undefined);
    await r?.body?.cancel();
    return r?.status === 200 ? true : undefined;
  });
  const model = (await (await fetch(`${url}/v1/models`)).json()).data[0].id;
  const metrics = async (): Promise<Record<string, number>> => {
    const text = await (await fetch(`${url}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const l of text.split("\n")) {
      const m = /^(llama_[a-z_]+) (\S+)$/.exec(l);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  };

  let next = 0, failed = 0, done = 0;
  const one = async (i: number): Promise<void> => {
    const kind = i % 4;
    const body = kind === 3
      ? { model, messages: [{ role: "user", content: `story ${i}` }], max_tokens: 6, stream: true }
      : { model, prompt: `Once upon a time ${i % 97}`, max_tokens: 6, stream: kind !== 1 };
    const res = await fetch(`${url}/v1/${kind === 3 ? "chat/completions" : "completions"}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    if (res.status !== 200) {
      failed++;
      await res.body?.cancel();
      return;
    }
    if (kind === 2 && i % 8 === 2) {
      // walk away after the first chunk
      const r = res.body!.getReader();
      await r.read();
      await r.cancel();
      return;
    }
    const text = await res.text();
    if (body.stream && !text.endsWith("data: [DONE]\n\n")) failed++;
  };
  const worker = async (): Promise<void> => {
    while (next < total && Date.now() < deadline) {
      const i = next++;
      try {
        await one(i);
      } catch {
        failed++;
      }
      done++;
    }
  };
  const samples: { requests: number; rssMiB: number; heapMiB: number }[] = [];
  const sample = async (): Promise<void> => {
    const m = await metrics();
    samples.push({
      requests: done,
      rssMiB: Number((m.llama_process_resident_bytes / 2 ** 20).toFixed(1)),
      heapMiB: Number((m.llama_process_heap_used_bytes / 2 ** 20).toFixed(1)),
    });
  };
  const t0 = performance.now();
  const workers = Array.from({ length: conc }, () => worker());
  let lastTenth = 0;
  const sampler = (async () => {
    while (done < total && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const tenth = Math.floor((done / total) * 10);
      if (tenth > lastTenth) {
        lastTenth = tenth;
        await sample();
      }
    }
  })();
  await Promise.all(workers);
  await sampler;
  await new Promise((r) => setTimeout(r, 500));
  await sample();
  const end = await metrics();
  // the first half is warm-up (V8 and the allocator grow their pools); flat = no growth in the second half
  const half = samples.findIndex((s) => s.requests >= total / 2);
  const base = samples[Math.max(0, half)];
  const later = samples.slice(Math.max(0, half) + 1);
  const peakRss = Math.max(base.rssMiB, ...later.map((s) => s.rssMiB));
  const peakHeap = Math.max(base.heapMiB, ...later.map((s) => s.heapMiB));
  const report = {
    date: new Date().toISOString(),
    server: serverArgs.join(" "),
    requests: done,
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
    failed,
    samples,
    rssGrowthSecondHalfMiB: Number((peakRss - base.rssMiB).toFixed(1)),
    heapGrowthSecondHalfMiB: Number((peakHeap - base.heapMiB).toFixed(1)),
    rssGrowthWholeRunMiB: Number((samples[samples.length - 1].rssMiB - samples[0].rssMiB).toFixed(1)),
    kvBlocksInUse: end.llama_kv_blocks_in_use,
    requestsInFlight: end.llama_requests_in_flight,
    disconnects: end.llama_client_disconnects_total,
  };
  console.log(JSON.stringify(report, null, 2));
  const flat = report.rssGrowthSecondHalfMiB <= slack && report.heapGrowthSecondHalfMiB <= slack;
  if (!flat || failed > 0 || done < total || report.kvBlocksInUse !== 0 || report.requestsInFlight !== 0) {
    console.error(`not flat or not clean (slack ${slack} MiB)`);
    code = 1;
  }
} catch (e) {
  console.error((e as Error).message);
  code = 1;
} finally {
  child.kill("SIGTERM");
  await child.status;
  await logDone.catch(() => {});
}
Deno.exit(code);
