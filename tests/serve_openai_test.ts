/**
 * The official `openai` npm client (pinned in deno.json: npm:openai@7.55.0) against the server:
 * completions and chat, streaming and not, usage, API keys, and its error classes for 4xx answers.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { MODEL, modelPath, serveHandler, storiesEngine, tokPath } from "./_serve.ts";

Deno.test({
  name: "the openai client works against the server, streaming and not",
  ignore: !modelPath || !tokPath,
  fn: async () => {
    const engine = await storiesEngine();
    await using s = serveHandler({ engine, apiKey: "sk-local" });
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "sk-local", maxRetries: 0 });
    const want = await engine.complete("Once upon a time", { maxTokens: 20, temperature: 0 });

    const models = await client.models.list();
    assert.deepEqual(models.data.map((m) => m.id), [MODEL]);

    const c = await client.completions.create({
      model: MODEL,
      prompt: "Once upon a time",
      max_tokens: 20,
      temperature: 0,
    });
    assert.equal(c.choices[0].text, want.text);
    assert.equal(c.usage?.completion_tokens, 20);

    const stream = await client.completions.create({
      model: MODEL,
      prompt: "Once upon a time",
      max_tokens: 20,
      temperature: 0,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? "";
    assert.equal(text, want.text);

    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "system", content: "Tell stories." }, {
        role: "user",
        content: "A story about a cat.",
      }],
      max_tokens: 24,
      temperature: 0,
    });
    assert.equal(chat.choices[0].message.role, "assistant");
    assert.ok(
      chat.usage && chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
    );

    const chatStream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "system", content: "Tell stories." }, {
        role: "user",
        content: "A story about a cat.",
      }],
      max_tokens: 24,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let streamed = "", usage;
    for await (const chunk of chatStream) {
      streamed += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(streamed, chat.choices[0].message.content);
    assert.deepEqual(usage, chat.usage);

    // 4xx answers surface as the client's typed errors
    await assert.rejects(
      client.completions.create({ model: "gpt-4", prompt: "x" }),
      (e: unknown) => e instanceof OpenAI.NotFoundError && /does not exist/.test(e.message),
    );
    await assert.rejects(
      client.completions.create({ model: MODEL, prompt: "x", temperature: 5 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "temperature",
    );
    const anon = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: "wrong", maxRetries: 0 });
    await assert.rejects(anon.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError);
  },
});
