/**
 * The edge bundle: `tools/bundle.ts` (esbuild) builds dist-style llama_edge.js, and a script importing it
 * runs under `deno run --allow-net=127.0.0.1` only (no --allow-read, no --allow-ffi), fetching the model
 * and tokenizer from a local HTTP server (with Range support) and reproducing the stories260K golden
 * greedy outputs, multi-threaded from inside the bundle (Blob-URL workers) from URLs, and single-threaded
 * from bytes.
 */
import assert from "node:assert/strict";
import { sharedModel } from "./_util.ts";

const modelPath = sharedModel("stories260K.bin"), tokPath = sharedModel("tok512.bin");
const goldenPath = sharedModel("stories260K.golden.json");
const root = new URL("..", import.meta.url).pathname;

/** Serve files with `Range` support, as a CDN would. */
function serveFiles(files: Record<string, string>): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = files[new URL(req.url).pathname];
    if (!path) return new Response("not found", { status: 404 });
    const bytes = await Deno.readFile(path);
    const m = req.headers.get("range")?.match(/^bytes=(\d+)-(\d+)$/);
    if (!m) return new Response(bytes);
    const start = Number(m[1]), end = Math.min(Number(m[2]), bytes.byteLength - 1);
    return new Response(bytes.subarray(start, end + 1), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${end}/${bytes.byteLength}` },
    });
  });
}

Deno.test({
  name: "edge bundle: golden stories260K over loopback with only --allow-net=127.0.0.1",
  ignore: !modelPath || !tokPath || !goldenPath,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const server = serveFiles({ "/stories260K.bin": modelPath!, "/tok512.bin": tokPath! });
    try {
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${root}tools/bundle.ts`, "--out", `${dir}/llama_edge.js`],
      }).output();
      assert.ok(built.success, new TextDecoder().decode(built.stderr));
      const golden = JSON.parse(await Deno.readTextFile(goldenPath!)) as {
        cases: { prompt: string; generated_ids: number[] }[];
      };
      const base = `http://127.0.0.1:${server.addr.port}`;
      await Deno.writeTextFile(
        `${dir}/run.js`,
        `import { createEdgeEngine } from "./llama_edge.js";
const prompts = ${JSON.stringify(golden.cases.map((c) => c.prompt))};
const out = [];
const bytes = async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer());
for (const threads of [2, 1]) {
  // 2 threads: URLs read with Range requests; 1 thread: bytes fetched beforehand
  const model = threads === 2 ? "${base}/stories260K.bin" : await bytes("${base}/stories260K.bin");
  const tokenizer = threads === 2 ? "${base}/tok512.bin" : await bytes("${base}/tok512.bin");
  using engine = await createEdgeEngine(model, { tokenizer, threads });
  const ids = [];
  for (const p of prompts) ids.push((await engine.complete(p, { maxTokens: 64, temperature: 0 })).generatedIds);
  out.push({ backend: engine.info().backend, device: engine.info().device, ids });
}
console.log(JSON.stringify(out));
`,
      );
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-config", "--no-lock", "--allow-net=127.0.0.1", `${dir}/run.js`],
        env: { NO_COLOR: "1" },
      }).output();
      const stderr = new TextDecoder().decode(run.stderr);
      assert.ok(run.success, stderr);
      const results = JSON.parse(new TextDecoder().decode(run.stdout)) as {
        backend: string;
        device: string;
        ids: number[][];
      }[];
      const want = golden.cases.map((c) => c.generated_ids.slice(0, 64));
      for (const r of results) {
        assert.equal(r.backend, "wasm");
        assert.deepEqual(r.ids, want, r.device);
      }
      assert.match(results[0].device, /2 threads/);
      assert.match(results[1].device, /1 thread\)/);
      assert.doesNotMatch(stderr, /single-threaded/);
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "edge bundle: the OpenAI handler served from the bundle with only --allow-net=127.0.0.1",
  ignore: !modelPath || !tokPath || !goldenPath,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const files = serveFiles({ "/stories260K.bin": modelPath!, "/tok512.bin": tokPath! });
    let child: Deno.ChildProcess | undefined;
    try {
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${root}tools/bundle.ts`, "--out", `${dir}/llama_edge.js`],
      }).output();
      assert.ok(built.success, new TextDecoder().decode(built.stderr));
      const base = `http://127.0.0.1:${files.addr.port}`;
      await Deno.writeTextFile(
        `${dir}/serve.js`,
        `import { createEdgeEngine, createServeHandler } from "./llama_edge.js";
const engine = createEdgeEngine("${base}/stories260K.bin", { tokenizer: "${base}/tok512.bin", threads: 1 });
const handler = createServeHandler({ engine, modelName: "stories260K" });
Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: (a) => console.log(a.port) }, handler.fetch);
`,
      );
      child = new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-config", "--no-lock", "--allow-net=127.0.0.1", `${dir}/serve.js`],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let line = "";
      while (!line.includes("\n")) {
        const { value, done } = await reader.read();
        assert.ok(!done, "the bundled server exited before listening");
        line += value;
      }
      reader.releaseLock();
      const url = `http://127.0.0.1:${Number(line.trim())}`;
      let health = 503;
      for (let i = 0; i < 200 && health !== 200; i++) {
        const r = await fetch(`${url}/health`);
        await r.body?.cancel();
        health = r.status;
        if (health !== 200) await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal(health, 200);
      const golden = JSON.parse(await Deno.readTextFile(goldenPath!)) as {
        cases: { prompt: string; generated_ids: number[]; generated_text?: string }[];
      };
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "stories260K",
          prompt: golden.cases[0].prompt,
          max_tokens: 16,
          temperature: 0,
        }),
      });
      const body = await res.json() as { choices: { text: string }[]; usage: { completion_tokens: number } };
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.usage.completion_tokens, 16);
      assert.ok(body.choices[0].text.length > 0);
      const bad = await fetch(`${url}/v1/completions`, { method: "POST", body: "{not json" });
      assert.equal(bad.status, 400);
      await bad.body?.cancel();
    } finally {
      if (child) {
        child.kill();
        await child.status;
        await child.stdout.cancel().catch(() => {});
        await child.stderr.cancel().catch(() => {});
      }
      await files.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
