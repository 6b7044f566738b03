/**
 * The HTTP service: endpoints and response shapes, SSE streaming as OpenAI clients read it, usage, chat
 * templates (the model's and the fallback), /health while loading, context overflow, 429 back-pressure,
 * API keys, and KV blocks given back when clients disconnect mid-stream.
 */
import assert from "node:assert/strict";
import type { Engine } from "../mod.ts";
import { constantTimeEqual } from "../src/server/handler.ts";
import { ChatTemplate, FALLBACK_CHAT_TEMPLATE } from "../src/server/chat_template.ts";
import { metric, MODEL, modelPath, post, readSse, serveHandler, storiesEngine, tokPath } from "./_serve.ts";

const ignore = !modelPath || !tokPath;

Deno.test({
  name: "serve: models, completions and chat, streamed and not, with usage everywhere",
  ignore,
  fn: async () => {
    const engine = await storiesEngine();
    await using s = serveHandler({ engine });
    const models = await (await fetch(`${s.url}/v1/models`)).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), [MODEL]);
    assert.equal((await fetch(`${s.url}/v1/models/${MODEL}`)).status, 200);

    const want = await engine.complete("Once upon a time", { maxTokens: 24, temperature: 0 });
    const body = { model: MODEL, prompt: "Once upon a time", max_tokens: 24, temperature: 0 };
    const r = await (await post(`${s.url}/v1/completions`, body)).json();
    assert.equal(r.object, "text_completion");
    assert.equal(r.choices[0].text, want.text);
    assert.equal(r.choices[0].finish_reason, "length");
    assert.deepEqual(r.usage, {
      prompt_tokens: want.promptIds.length,
      completion_tokens: 24,
      total_tokens: want.promptIds.length + 24,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    const echo = await (await post(`${s.url}/v1/completions`, { ...body, echo: true })).json();
    assert.equal(echo.choices[0].text, "Once upon a time" + want.text);

    // streaming: data chunks, then a finish chunk, a usage chunk (include_usage), and [DONE]
    const res = await post(`${s.url}/v1/completions`, {
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const events = await readSse(res);
    assert.equal(events.at(-1), "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? "").join(""), want.text);
    assert.equal(chunks.at(-2).choices[0].finish_reason, "length");
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.equal(chunks.at(-1).usage.completion_tokens, 24);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null && c.id === chunks[0].id));
    const plain = await readSse(await post(`${s.url}/v1/completions`, { ...body, stream: true }));
    assert.ok(plain.slice(0, -1).every((e) => !("usage" in JSON.parse(e))));
    // every token event is exactly the JSON of OpenAI's chunk object, keys in this order
    const exact = (object: string, e: string, choice: unknown, usage: boolean): void => {
      const { id, created } = JSON.parse(e);
      const obj = { id, object, created, model: MODEL, system_fingerprint: null, choices: [choice] };
      assert.equal(e, JSON.stringify(usage ? { ...obj, usage: null } : obj));
    };
    const text = (e: string): string => JSON.parse(e).choices[0].text;
    const tokenChoice = (t: string) => ({ index: 0, text: t, logprobs: null, finish_reason: null });
    for (const e of events.slice(0, -3)) exact("text_completion", e, tokenChoice(text(e)), true);
    for (const e of plain.slice(0, -2)) exact("text_completion", e, tokenChoice(text(e)), false);

    // chat: stories260K has no template, so the fallback renders "User: ...\nAssistant:"
    const chatBody = {
      model: MODEL,
      messages: [{ role: "user", content: "Tell me a story." }],
      max_tokens: 16,
      temperature: 0,
    };
    const c = await (await post(`${s.url}/v1/chat/completions`, chatBody)).json();
    assert.equal(c.object, "chat.completion");
    assert.equal(c.choices[0].message.role, "assistant");
    const rendered = engine.tokenizer.encode("User: Tell me a story.\nAssistant:", { parseSpecial: true });
    assert.equal(c.usage.prompt_tokens, rendered.length);
    const direct = await engine.complete(rendered, { maxTokens: 16, temperature: 0, stop: ["\nUser:"] });
    assert.equal(c.choices[0].message.content, direct.text);
    const cs = await readSse(await post(`${s.url}/v1/chat/completions`, { ...chatBody, stream: true }));
    assert.equal(cs.at(-1), "[DONE]");
    const cc = cs.slice(0, -1).map((e) => JSON.parse(e));
    assert.equal(cc[0].object, "chat.completion.chunk");
    assert.equal(cc[0].choices[0].delta.role, "assistant");
    assert.equal(cc.map((x) => x.choices[0].delta.content ?? "").join(""), direct.text);
    cs.slice(0, -2).forEach((e, i) => {
      const content = JSON.parse(e).choices[0].delta.content;
      const delta = i === 0 ? { role: "assistant", content } : { content };
      exact("chat.completion.chunk", e, { index: 0, delta, logprobs: null, finish_reason: null }, false);
    });
    assert.ok(["stop", "length"].includes(cc.at(-1).choices[0].finish_reason));

    // the step cycle split into backend time and host time (in and between steps)
    const phase = (p: string) => metric(s.url, `llama_step_phase_seconds_total{phase="${p}"}`);
    assert.ok(await phase("backend") > 0);
    for (const p of ["plan", "sample", "gap"]) assert.ok(await phase(p) >= 0, p);
    assert.ok(await metric(s.url, "llama_step_backend_seconds_count") > 0);
    assert.ok(await metric(s.url, "llama_step_gap_seconds_count") > 0);
  },
});

Deno.test("chat templates: a model's Jinja template, the fallback, and bad templates", () => {
  const llama2 =
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}" +
    "{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}";
  const t = new ChatTemplate(llama2, { bosToken: "<s>", eosToken: "</s>" });
  const msgs = [
    { role: "user", content: "Hi" },
    { role: "assistant", content: "Hello!" },
    { role: "user", content: "Bye" },
  ] as const;
  const text = t.render([...msgs]);
  assert.equal(text, "<s>[INST] Hi [/INST] Hello! </s>[INST] Bye [/INST]");
  assert.ok(t.startsWithBos(text));
  assert.deepEqual(t.stops, []);
  const f = new ChatTemplate(undefined);
  assert.ok(f.isFallback);
  assert.equal(
    f.render([{ role: "system", content: "Be brief." }, ...msgs]),
    "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Bye\nAssistant:",
  );
  assert.deepEqual(f.stops, ["\nUser:"]);
  assert.ok(FALLBACK_CHAT_TEMPLATE.includes("add_generation_prompt"));
  assert.throws(() => new ChatTemplate("{% for %}"), /chat template does not parse/);
  const raising = new ChatTemplate("{{ raise_exception('roles must alternate') }}");
  assert.throws(() => raising.render([...msgs]), /roles must alternate/);
});

Deno.test({
  name: "serve: /health is 503 while the model loads, then 200; generation waits for it with 503",
  ignore,
  fn: async () => {
    let resolve!: (e: Engine) => void;
    const pending = new Promise<Engine>((r) => resolve = r);
    await using s = serveHandler({ engine: pending });
    const h = await fetch(`${s.url}/health`);
    assert.equal(h.status, 503);
    assert.equal((await h.json()).status, "loading");
    const g = await post(`${s.url}/v1/completions`, { model: MODEL, prompt: "x" });
    assert.equal(g.status, 503);
    assert.equal((await g.json()).error.code, "model_loading");
    resolve(await storiesEngine());
    await pending;
    await new Promise((r) => setTimeout(r, 0));
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
  },
});

Deno.test({
  name:
    "serve: a prompt longer than the context is 400 with the numbers; a full queue is 429 with Retry-After",
  ignore,
  fn: async () => {
    const engine = await storiesEngine({ contextSize: 64, maxBatch: 1, maxQueue: 1, kvCapacity: 64 });
    await using s = serveHandler({ engine });
    const long = "Once upon a time there was a little girl named Lily. ".repeat(8);
    const r = await post(`${s.url}/v1/completions`, { model: MODEL, prompt: long });
    assert.equal(r.status, 400);
    const e = (await r.json()).error;
    assert.equal(e.code, "context_length_exceeded");
    const n = engine.tokenizer.encode(long).length;
    assert.match(e.message, new RegExp(`holds 64 tokens, but the prompt has ${n}`));
    const chat = await post(`${s.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: "user", content: long }],
    });
    assert.equal(chat.status, 400);
    assert.equal((await chat.json()).error.param, "messages");

    const body = { model: MODEL, prompt: "Once", max_tokens: 40, ignore_eos: true, stream: true };
    const rs = await Promise.all([0, 1, 2, 3].map(() => post(`${s.url}/v1/completions`, body)));
    const limited = rs.filter((x) => x.status === 429);
    assert.ok(limited.length >= 1, `statuses ${rs.map((x) => x.status)}`);
    for (const x of limited) {
      assert.equal(x.headers.get("retry-after"), "1");
      assert.equal((await x.json()).error.type, "rate_limit_error");
    }
    for (const x of rs.filter((x) => x.status === 200)) assert.equal((await readSse(x)).at(-1), "[DONE]");
  },
});

Deno.test({
  name: "serve: API keys are required on /v1 and /metrics when set, compared in constant time",
  ignore,
  fn: async () => {
    await using s = serveHandler({ engine: await storiesEngine(), apiKey: "sk-test-123" });
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
    const none = await fetch(`${s.url}/v1/models`);
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error.code, "invalid_api_key");
    const wrong = await fetch(`${s.url}/v1/models`, { headers: { authorization: "Bearer sk-test-124" } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    assert.equal((await fetch(`${s.url}/metrics`)).status, 401);
    const ok = await fetch(`${s.url}/v1/models`, { headers: { authorization: "Bearer sk-test-123" } });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.ok(constantTimeEqual("abc", "abc"));
    for (const w of ["", "ab", "abd", "abcd", "ABC"]) assert.ok(!constantTimeEqual(w, "abc"), w);
  },
});

Deno.test({
  name: "serve: clients that disconnect mid-stream give their KV blocks back (visible in /metrics)",
  ignore,
  fn: async () => {
    const engine = await storiesEngine({ maxBatch: 8 });
    await using s = serveHandler({ engine });
    const body = {
      model: MODEL,
      prompt: "Once upon a time",
      max_tokens: 400,
      ignore_eos: true,
      stream: true,
    };
    const readers = await Promise.all([0, 1, 2, 3].map(async () => {
      const ac = new AbortController();
      const res = await post(`${s.url}/v1/completions`, body).then((r) => r, (e) => Promise.reject(e));
      void ac;
      const reader = res.body!.getReader();
      await reader.read(); // the first chunk: the stream is live
      return reader;
    }));
    await new Promise((r) => setTimeout(r, 30));
    assert.ok(await metric(s.url, "llama_kv_blocks_in_use") > 0);
    for (const r of readers) await r.cancel();
    let used = -1;
    for (let i = 0; i < 200 && used !== 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      used = await metric(s.url, "llama_kv_blocks_in_use");
    }
    assert.equal(used, 0);
    assert.equal(await metric(s.url, "llama_running_sequences"), 0);
    assert.equal(await metric(s.url, "llama_client_disconnects_total"), 4);
    assert.equal(await metric(s.url, "llama_requests_in_flight"), 0);
    // the server still serves
    const r = await post(`${s.url}/v1/completions`, { ...body, stream: false, max_tokens: 4 });
    assert.equal((await r.json()).usage.completion_tokens, 4);
  },
});
