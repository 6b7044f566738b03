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
