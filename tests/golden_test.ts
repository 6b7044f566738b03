/**
 * The whole model against greedy golden outputs of stories260K (an independent float32 reference
 * following llama2.c's run.c), on every available backend.
 */
import assert from "node:assert/strict";
import { Engine, loadModel } from "../mod.ts";
import { sharedModel } from "./_util.ts";
import { forEachBackend } from "./_backends.ts";

interface GoldenCase {
  prompt: string;
  prompt_ids: number[];
  generated_ids: number[];
  text: string;
}

const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");
const goldenPath = sharedModel("stories260K.golden.json");
const N = 64;

Deno.test({
  name: "stories260K greedy generation reproduces every golden case (first 64 tokens)",
  ignore: !modelPath || !tokPath || !goldenPath,
  fn: async () => {
    const golden = JSON.parse(await Deno.readTextFile(goldenPath!)) as { cases: GoldenCase[] };
    await forEachBackend(async (backend) => {
      const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
      using engine = await Engine.create(model, tokenizer, { backend });
      model.close();
      for (const c of golden.cases) {
        const r = await engine.complete(c.prompt, { maxTokens: N, temperature: 0 });
        assert.deepEqual(
          r.promptIds,
          c.prompt_ids,
          `${backend.name} prompt ids of ${JSON.stringify(c.prompt)}`,
        );
        assert.deepEqual(
          r.generatedIds,
          c.generated_ids.slice(0, N),
          `${backend.name} generated ids of ${JSON.stringify(c.prompt)}`,
        );
      }
    });
  },
});

Deno.test({
  name: "CLI generate --format json reproduces a golden case",
  ignore: !modelPath || !tokPath || !goldenPath,
  fn: async () => {
    const golden = JSON.parse(await Deno.readTextFile(goldenPath!)) as { cases: GoldenCase[] };
    const c = golden.cases[1];
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "generate",
        "--model",
        modelPath!,
        "--tokenizer",
        tokPath!,
        "--prompt",
        c.prompt,
        "--max-tokens",
        String(N),
        "--temperature",
        "0",
        "--backend",
        "ref",
        "--format",
        "json",
      ],
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const j = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(j.prompt_ids, c.prompt_ids);
    assert.deepEqual(j.generated_ids, c.generated_ids.slice(0, N));
    assert.equal(j.backend, "ref");
    assert.ok(c.text.startsWith(j.text), `text ${JSON.stringify(j.text)} is not a prefix of the golden text`);
    assert.ok(j.timings.decodeTokPerS > 0);
  },
});
