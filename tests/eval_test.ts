/**
 * `eval` and the stories260K quantization acceptance: perplexity/KL/top-1 on the library level, the CLI
 * end to end (text and JSON), SmoothQuant W8A8's KL against int8 weight-only's, golden greedy text under
 * q8_0 and int8 per channel, the int8 KV cache against f16, and clear errors for bad input.
 */
import assert from "node:assert/strict";
import { Engine, LlmError, loadModel } from "../mod.ts";
import { evaluateText, parseSummaryRecords, summaryPrompt, textWindows } from "../src/eval/evaluate.ts";
import { quantizeModelFile } from "../src/io/quantize_file.ts";
import type { QuantScheme } from "../src/quant/schemes.ts";
import { sharedModel } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const data = (f: string): string => new URL(`./data/${f}`, import.meta.url).pathname;
const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");
const goldenPath = sharedModel("stories260K.golden.json");
const have = !!(modelPath && tokPath && goldenPath);

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { NO_COLOR: "1" },
  })
    .output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

Deno.test("summary records: JSONL parsing with line numbers in every error", () => {
  const ok = parseSummaryRecords(
    '{"article": "a", "highlights": "b"}\n\n{"article": "c", "highlights": "d"}\n',
  );
  assert.deepEqual(ok, [{ article: "a", highlights: "b" }, { article: "c", highlights: "d" }]);
  assert.equal(
    parseSummaryRecords('{"article":"a","highlights":"b"}\n{"article":"c","highlights":"d"}', {
      maxRecords: 1,
    }).length,
    1,
  );
  const bad: [string, RegExp][] = [
    ['{"article": "a", "highlights": "b"}\n{"article": "c", "highl', /line 2: not valid JSON/],
    ['{"article": "a"}', /line 1: a record needs string fields "article" and "highlights"/],
    ['{"article": "a", "highlights": 3}', /line 1: .*highlights/],
    ["[1, 2]", /line 1: a record needs/],
    ["null", /line 1: a record needs/],
    ["\n\n", /holds no \{article, highlights\} records/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => parseSummaryRecords(text),
      (e: unknown) => e instanceof LlmError && e.code === "BAD_REQUEST" && re.test(e.message),
      text,
    );
  }
  assert.equal(summaryPrompt("  An article.\n"), "An article.\nSummary:");
});

Deno.test("text windows: BOS-led windows of at most the context, none shorter than one prediction", () => {
  assert.deepEqual(textWindows([5, 6, 7, 8, 9], 3, 1), [[1, 5, 6], [1, 7, 8], [1, 9]]);
  assert.deepEqual(textWindows([5, 6, 7], 2), [[5, 6]]);
  assert.throws(
    () => textWindows([5], 1, 1),
    (e: unknown) => e instanceof LlmError && /too short/.test(e.message),
  );
});

Deno.test({
  name: "evaluateText: a model against itself has KL 0, full top-1 agreement and equal perplexity",
  ignore: !have,
  fn: async () => {
    const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
    using a = await Engine.create(model, tokenizer, { backend: "ref", contextSize: 64 });
    using b = await Engine.create(model, tokenizer, { backend: "ref", contextSize: 64 });
    model.close();
    const r = await evaluateText(a, await Deno.readTextFile(data("eval_stories.txt")), {
      reference: b,
      maxTokens: 150,
    });
    assert.equal(r.model.tokens, 150); // each window is BOS + its tokens: every text token is predicted once
    assert.equal(r.windows, Math.ceil(150 / 63));
    assert.equal(r.klMean, 0);
    assert.equal(r.top1Agreement, 1);
    assert.equal(r.model.perplexity, r.reference!.perplexity);
    assert.ok(r.model.perplexity > 1.5 && r.model.perplexity < 30, `perplexity ${r.model.perplexity}`);
  },
});

interface Golden {
  cases: { prompt: string; prompt_ids: number[]; generated_ids: number[] }[];
}

async function goldenAgreement(path: string): Promise<number[]> {
  const g = JSON.parse(await Deno.readTextFile(goldenPath!)) as Golden;
  const { model, tokenizer } = await loadModel(path);
  using e = await Engine.create(model, tokenizer, { backend: "ref" });
  model.close();
  const out: number[] = [];
  for (const c of g.cases) {
    const r = await e.complete(c.prompt_ids, {
      maxTokens: c.generated_ids.length,
      temperature: 0,
      ignoreEos: true,
    });
    let k = 0;
    while (k < c.generated_ids.length && r.generatedIds[k] === c.generated_ids[k]) k++;
    out.push(k);
  }
  return out;
}

Deno.test({
  name: "stories260K: W8A8 KL <= 2x int8 weight-only's; q8_0 keeps the golden text; the eval CLI end to end",
  ignore: !have,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const files: Partial<Record<QuantScheme, string>> = {};
      for (const scheme of ["q8_0", "int8_per_channel", "w8a8_smoothquant"] as const) {
        files[scheme] = `${dir}/${scheme}.gguf`;
        await quantizeModelFile(modelPath!, files[scheme]!, {
          scheme,
          tokenizer: tokPath,
          calibration: scheme === "w8a8_smoothquant" ? data("calibration.txt") : undefined,
        });
      }
      const kl: Record<string, number> = {};
      for (const [scheme, path] of Object.entries(files)) {
        const r = await cli([
          "eval",
          "--model",
          path,
          "--reference",
          modelPath!,
          "--tokenizer",
          tokPath!,
          "--backend",
          "ref",
          "--text",
          data("eval_stories.txt"),
          ...(scheme === "q8_0" ? ["--summaries", data("summaries.jsonl"), "--max-records", "2"] : []),
          "--format",
          "json",
        ]);
        assert.equal(r.code, 0, r.err);
        const j = JSON.parse(r.out);
        kl[scheme] = j.text.klMean;
        assert.ok(j.text.model.tokens > 400, `scored ${j.text.model.tokens}`);
        assert.ok(j.text.klMean > 0 && j.text.klMean < 0.01, `${scheme} KL ${j.text.klMean}`);
        assert.ok(j.text.top1Agreement > 0.9, `${scheme} top-1 ${j.text.top1Agreement}`);
        assert.ok(Math.abs(j.text.model.perplexity / j.text.reference.perplexity - 1) < 0.02);
        if (scheme === "q8_0") {
          assert.equal(j.summaries.records, 2);
          for (const side of [j.summaries.model, j.summaries.reference]) {
            assert.equal(side.predictions.length, 2);
            for (const v of Object.values(side.rouge) as number[]) assert.ok(v >= 0 && v <= 1);
          }
        }
      }
      console.log(`stories260K KL vs f32: ${JSON.stringify(kl)}`);
      assert.ok(kl.w8a8_smoothquant <= 2 * kl.int8_per_channel, `W8A8 KL ${kl.w8a8_smoothquant} > 2 x int8`);

      const q8 = await goldenAgreement(files.q8_0!), i8 = await goldenAgreement(files.int8_per_channel!);
      console.log(`golden tokens kept before the first divergence: q8_0 ${q8}, int8_per_channel ${i8}`);
      assert.deepEqual(q8, [96, 92, 84], "q8_0 keeps every golden token");
      assert.ok(i8.every((k) => k >= 40), `int8 per channel diverges early: ${i8}`);

      // the text report prints both models side by side
      const t = await cli([
        "eval",
        "--model",
        files.q8_0!,
        "--reference",
        modelPath!,
        "--tokenizer",
        tokPath!,
        "--backend",
        "ref",
        "--summaries",
        data("summaries.jsonl"),
        "--max-records",
        "1",
      ]);
      assert.equal(t.code, 0, t.err);
      assert.match(t.out, /rougeLsum\s+\d+\.\d+\s+\d+\.\d+/);
      assert.match(t.out, /model\s+reference/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "eval: int8 KV cache against the f16 cache (KV bytes, KL)",
  ignore: !have,
  fn: async () => {
    const r = await cli([
      "eval",
      "--model",
      modelPath!,
      "--reference",
      modelPath!,
      "--tokenizer",
      tokPath!,
      "--backend",
      "ref",
      "--kv-dtype",
      "int8",
      "--reference-kv-dtype",
      "f16",
      "--text",
      data("eval_stories.txt"),
      "--format",
      "json",
    ]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.model.kvDType, "i8");
    assert.equal(j.reference.kvDType, "f16");
    // headDim 8: 8 int8 bytes + a 4-byte scale per head-row against 16 f16 bytes
    assert.equal(j.model.kvBytes / j.reference.kvBytes, 0.75);
    assert.ok(j.text.klMean > 0 && j.text.klMean < 0.01, `int8 KV KL ${j.text.klMean}`);
  },
});

Deno.test({
  name: "CLI: unknown scheme, malformed JSONL and a missing --text/--summaries are clear errors",
  ignore: !have,
  fn: async () => {
    const q = await cli([
      "quantize",
      "--model",
      modelPath!,
      "--tokenizer",
      tokPath!,
      "--out",
      "/tmp/x.gguf",
      "--scheme",
      "q3",
    ]);
    assert.equal(q.code, 1);
    assert.match(q.err, /error \[BAD_REQUEST\]: unknown quantization scheme "q3"/);
    const a = await cli(["quantize", "--model", modelPath!, "--scheme", "q8_0"]);
    assert.equal(a.code, 2);
    assert.match(a.err, /--out is required/);
    const bad = await Deno.makeTempFile({ suffix: ".jsonl" });
    await Deno.writeTextFile(bad, '{"article": "x", "highlights": "y"}\n{not json}\n');
    const e = await cli(["eval", "--model", modelPath!, "--tokenizer", tokPath!, "--summaries", bad]);
    await Deno.remove(bad);
    assert.equal(e.code, 1);
    assert.match(e.err, /BAD_REQUEST.*line 2: not valid JSON/);
    const n = await cli(["eval", "--model", modelPath!, "--tokenizer", tokPath!]);
    assert.equal(n.code, 1);
    assert.match(n.err, /eval needs --text FILE/);
  },
});
