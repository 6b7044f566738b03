/**
 * Loading models from URLs or bytes (src/io/remote.ts, the edge bundle's loader): servers with and
 * without Range support, and clear errors for missing files and non-model bytes.
 */
import assert from "node:assert/strict";
import { LlmError } from "../mod.ts";
import { loadModelFrom, urlSource } from "../src/io/remote.ts";
import { sharedModel } from "./_util.ts";

const modelPath = sharedModel("stories260K.bin"), tokPath = sharedModel("tok512.bin");

function serve(ranges: boolean, counter: { requests: number }): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    counter.requests++;
    const name = new URL(req.url).pathname.slice(1);
    const path = name === "m.bin" ? modelPath : name === "t.bin" ? tokPath : undefined;
    if (!path) return new Response("no", { status: 404 });
    const bytes = await Deno.readFile(path);
    const m = ranges ? req.headers.get("range")?.match(/^bytes=(\d+)-(\d+)$/) : null;
    if (!m) return new Response(bytes);
    const start = Number(m[1]), end = Math.min(Number(m[2]), bytes.byteLength - 1);
    return new Response(bytes.subarray(start, end + 1), {
      status: 206,
      headers: { "content-range": `bytes ${start}-${end}/${bytes.byteLength}` },
    });
  });
}

for (const ranges of [true, false]) {
  Deno.test({
    name: `loadModelFrom a URL, server ${ranges ? "with" : "without"} Range support`,
    ignore: !modelPath || !tokPath,
    fn: async () => {
      const counter = { requests: 0 };
      const server = serve(ranges, counter);
      try {
        const base = `http://127.0.0.1:${server.addr.port}`;
        const { model, tokenizer } = await loadModelFrom(`${base}/m.bin`, { tokenizer: `${base}/t.bin` });
        assert.equal(model.config.dim, 64);
        assert.equal(tokenizer.vocabSize, 512);
        const e = model.tensors.get("l0.wq")!;
        const direct = (await Deno.readFile(modelPath!)).subarray(e.byteOffset, e.byteOffset + e.byteLength);
        assert.deepEqual(await e.source.read(e.byteOffset, e.byteLength), direct);
        model.close();
        // with Range: a probe, header reads and one request per tensor read; without: one download each
        if (ranges) assert.ok(counter.requests > 3, `${counter.requests} requests`);
        else assert.equal(counter.requests, 2);
        await assert.rejects(
          urlSource(`${base}/missing.bin`),
          (err: unknown) => err instanceof LlmError && err.code === "NETWORK" && /404/.test(err.message),
        );
      } finally {
        await server.shutdown();
      }
    },
  });
}

Deno.test("loadModelFrom bytes that are not a model says so", async () => {
  await assert.rejects(
    loadModelFrom(new TextEncoder().encode('{"not": "a model"}')),
    (e: unknown) => e instanceof LlmError && e.code === "MODEL_FORMAT" && /JSON/.test(e.message),
  );
});
