/**
 * Faults: 1,000 malformed requests all get a 4xx with an OpenAI-style error body and the server stays
 * healthy; many short requests leave no sequences, KV blocks or in-flight counts behind (a bounded version
 * of bench/serve_memory.ts).
 */
import assert from "node:assert/strict";
import { rng } from "./_util.ts";
import { metric, MODEL, modelPath, post, readSse, serveHandler, storiesEngine, tokPath } from "./_serve.ts";

const ignore = !modelPath || !tokPath;

/** Bodies that are wrong in one way each: types, ranges, missing fields, unknown models, bad JSON. */
function malformed(seed: number, n: number): { path: string; method: string; body?: string }[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const good = { model: MODEL, prompt: "Once", max_tokens: 4 };
  const goodChat = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4 };
  const junk = [null, true, -1, 1e300, NaN, "x", [], {}, [1, "a"], -0.5, 3.5, "1", { a: 1 }];
  const badFields: [string, unknown[]][] = [
    ["model", [null, 1, "", "gpt-4", ["stories260K"], "stories260K "]],
    ["prompt", [null, 1, {}, [], [[1], [2]], [-1], [1.5], [999999], ["a", "b"], [true]]],
    ["max_tokens", [-1, 1.5, "16", 1e9, true, [], -1e9]],
    ["temperature", [-0.1, 2.5, "hot", 1e308, [], {}]],
    ["top_p", [0, -1, 1.01, "x", "0.5"]],
    ["top_k", [-2, 1.5, 1e9, "10"]],
    ["min_p", [-0.1, 1.1, "0"]],
    ["frequency_penalty", [-3, 2.5, "0"]],
    ["presence_penalty", [-2.1, 9, []]],
    ["repetition_penalty", [0, -1, 11, "1"]],
    ["seed", [1.5, "42", 2 ** 60, {}]],
    ["stop", [1, [1], [""], Array(9).fill("x"), "", { a: 1 }, ["x".repeat(300)]]],
    ["stream", ["yes", 1, {}]],
    ["stream_options", ["x", 1, []]],
    ["n", [2, 0, -1, 1.5]],
    ["best_of", [3]],
    ["logprobs", [5, true]],
    ["echo", ["true", 1]],
    ["logit_bias", [{ "50": 100 }, "x"]],
    ["suffix", ["tail"]],
    ["ignore_eos", ["no"]],
  ];
  const chatFields: [string, unknown[]][] = [
    ["messages", [
      null,
      [],
      "hi",
      [{}],
      [{ role: "pirate", content: "x" }],
      [{ role: "user" }],
      [{
        role: "user",
        content: 5,
      }],
      [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }],
      [null],
    ]],
    ["tools", [[{ type: "function", function: { name: "f" } }]]],
    ["response_format", [{ type: "json_object" }, "json"]],
    ["max_completion_tokens", [-5, "x"]],
  ];
  const out: { path: string; method: string; body?: string }[] = [];
  for (let i = 0; i < n; i++) {
    const kind = r();
    if (kind < 0.15) {
      // not JSON, or JSON that is not an object
      const text = pick([
        "",
        "{",
        "{'model': 'x'}",
        "null",
        "[]",
        "42",
        '"str"',
        '{"model": "stories260K", "prompt": "x",}',
        "\u0000\u0001",
        '{"model":' + "[".repeat(50),
        JSON.stringify(pick(junk)),
      ]);
      out.push({ path: pick(["/v1/completions", "/v1/chat/completions"]), method: "POST", body: text });
    } else if (kind < 0.2) {
      out.push(pick([
        { path: "/v1/completions", method: "GET" },
        { path: "/v1/chat/completions", method: "PUT", body: "{}" },
        { path: "/v1/models", method: "POST", body: "{}" },
        { path: "/v1/nope", method: "GET" },
        { path: "/admin", method: "GET" },
        { path: "/v1/models/gpt-4", method: "GET" },
        { path: "/metrics", method: "DELETE" },
      ]));
    } else if (kind < 0.3) {
      const body: Record<string, unknown> = { ...goodChat };
      const [f, vals] = pick(chatFields);
      body[f] = pick(vals);
      out.push({ path: "/v1/chat/completions", method: "POST", body: JSON.stringify(body) });
    } else {
      const chat = r() < 0.3;
      const body: Record<string, unknown> = { ...(chat ? goodChat : good) };
      const completionOnly = ["prompt", "suffix", "echo", "logprobs"];
      const [f, vals] = pick(badFields.filter(([name]) => !chat || !completionOnly.includes(name)));
      body[f] = pick(vals);
      if (f === "model" && body.model === undefined) delete body.model;
      if (r() < 0.1) delete body[chat ? "messages" : "prompt"];
      out.push({
        path: chat ? "/v1/chat/completions" : "/v1/completions",
        method: "POST",
        body: JSON.stringify(body),
      });
    }
  }
  return out;
}

Deno.test({
  name: "1,000 malformed requests all get a 4xx with an OpenAI error body; the server stays healthy",
  ignore,
  fn: async () => {
    await using s = serveHandler({ engine: await storiesEngine() });
    const reqs = malformed(1234, 1000);
    const statuses = new Map<number, number>();
    for (let i = 0; i < reqs.length; i += 20) {
      await Promise.all(
        reqs.slice(i, i + 20).map(async (q) => {
          const res = await fetch(`${s.url}${q.path}`, {
            method: q.method,
            body: q.body,
            headers: { "content-type": "application/json" },
          });
          const text = await res.text();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const where = `${q.method} ${q.path} ${q.body?.slice(0, 120)} -> ${res.status} ${
            text.slice(0, 200)
          }`;
          assert.ok(res.status >= 400 && res.status < 500, where);
          const e = JSON.parse(text).error;
          assert.equal(typeof e.message, "string", where);
          assert.ok(e.message.length > 0 && typeof e.type === "string" && "param" in e && "code" in e, where);
        }),
      );
    }
    console.log(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
    // a body over the limit
    const big = await post(`${s.url}/v1/completions`, { model: MODEL, prompt: "x".repeat(9 << 20) });
    assert.equal(big.status, 413);
    await big.body?.cancel();
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
    const ok = await post(`${s.url}/v1/completions`, { model: MODEL, prompt: "Once", max_tokens: 3 });
    assert.equal((await ok.json()).usage.completion_tokens, 3);
    assert.equal(await metric(s.url, "llama_requests_in_flight"), 0);
    assert.equal(await metric(s.url, "llama_running_sequences"), 0);
  },
});

Deno.test({
  name: "300 mixed requests (streamed, plain, disconnected) leave no sequences or KV blocks behind",
  ignore,
  fn: async () => {
    const engine = await storiesEngine({ maxBatch: 16, kvCapacity: 8192 });
    await using s = serveHandler({ engine });
    const heap0 = Deno.memoryUsage().heapUsed;
    for (let round = 0; round < 10; round++) {
      await Promise.all(Array.from({ length: 30 }, async (_, i) => {
        const body = {
          model: MODEL,
          prompt: `Once upon a time ${i}`,
          max_tokens: 8 + (i % 5),
          ignore_eos: true,
          stream: i % 2 === 0,
        };
        const res = await post(`${s.url}/v1/completions`, body);
        if (i % 10 === 4) return await res.body?.cancel(); // walks away
        if (body.stream) assert.equal((await readSse(res)).at(-1), "[DONE]");
        else assert.equal((await res.json()).usage.completion_tokens, body.max_tokens);
      }));
    }
    let used = -1;
    for (let i = 0; i < 100 && used !== 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      used = engine.stats().kvBlocksUsed;
    }
    assert.equal(used, 0);
    assert.equal(engine.stats().running + engine.stats().waiting, 0);
    assert.equal(await metric(s.url, "llama_requests_in_flight"), 0);
    const growth = (Deno.memoryUsage().heapUsed - heap0) / 2 ** 20;
    console.log(`heap growth over 300 requests: ${growth.toFixed(1)} MiB`);
    assert.ok(growth < 64, `heap grew ${growth.toFixed(1)} MiB`);
  },
});
