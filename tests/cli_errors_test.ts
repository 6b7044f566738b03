/**
 * Error paths of the CLI found by an audit (each failed before its fix with a raw stack trace, a
 * misleading message, a silent no-op, or a process that never exited): every case must exit non-zero
 * with one `error [CODE]: ...` line, no stack trace, in a few seconds.
 */
import assert from "node:assert/strict";
import { sharedModel } from "./_util.ts";
import { synthGgufBytes, synthWeights, TINY_CONFIG } from "./_synth.ts";
import { placeholderVocab } from "./_memory_model.ts";
import type { LlamaConfig } from "../src/model/config.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");

async function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { NO_COLOR: "1", ...env },
    stdout: "null",
    signal: AbortSignal.timeout(30_000), // a hang fails the test instead of stalling the suite
  }).output();
  return { code: o.code, err: new TextDecoder().decode(o.stderr) };
}

/** Exit 1 with one `error [code]: ...` line matching `re`, and no stack trace. */
function assertClean(r: { code: number; err: string }, code: string, re: RegExp): void {
  assert.equal(r.code, 1, r.err);
  assert.doesNotMatch(r.err, /internal error|^\s+at |Uncaught|RangeError|TypeError/m, r.err);
  assert.match(r.err, new RegExp(`error \\[${code}\\]: `), r.err);
  assert.match(r.err, re);
}

/** A small synthetic GGUF with vocab 512 and its own tokenizer ("t3", "t4", ...), weights f16 or q8_0. */
function synthGguf(dtype: "f16" | "q8_0"): Uint8Array {
  const config: LlamaConfig = { ...TINY_CONFIG, nLayers: 1, hiddenDim: 64, dim: 32, nHeads: 4, headDim: 8 };
  return synthGgufBytes(config, synthWeights(config, 5), dtype, placeholderVocab(512, "t"));
}

Deno.test("cli errors: unreadable and unwritable paths name the path and the fix", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // quantize checks --out before loading anything, so no model is needed
    assertClean(
      await cli(["quantize", "--model", "x.bin", "--out", `${dir}/no/such/dir/x.gguf`, "--scheme", "q8_0"]),
      "BAD_REQUEST",
      /cannot write .*x\.gguf\.tmp \(its folder does not exist\); pass an --out path in a writable folder/,
    );
    assertClean(
      await cli(["quantize", "--model", "x.bin", "--out", dir, "--scheme", "q8_0"]),
      "BAD_REQUEST",
      /\(it is a directory\)/,
    );
    assertClean(
      await cli(["serve", "--model", "x.bin", "--chat-template", `${dir}/nope.jinja`]),
      "NOT_FOUND",
      /nope\.jinja: no such file; check the path/,
    );
    assertClean(
      await cli(["serve", "--model", "x.bin", "--chat-template", dir]),
      "BAD_REQUEST",
      /is a directory; pass the path of a file/,
    );
    assertClean(
      await cli(["serve", "--model", "x.bin", "--port", "70000"]),
      "BAD_REQUEST",
      /--port must be in 0\.\.65535/,
    );
    // a cut .gguf named the llama2.c header it was not
    await Deno.writeFile(`${dir}/cut.gguf`, new TextEncoder().encode("GGU"));
    assertClean(
      await cli(["info", "--model", `${dir}/cut.gguf`]),
      "MODEL_FORMAT",
      /a GGUF file starts with "GGUF", this one with \[47 47 55\] \(3 bytes\); it is truncated or corrupt/,
    );
    // serve listens first; a model that cannot load must still end the process, not leave it up forever
    assertClean(
      await cli(["serve", "--model", `${dir}/nope.gguf`, "--port", "0"]),
      "NOT_FOUND",
      /nope\.gguf/,
    );
    if (modelPath && tokPath) {
      assertClean(
        await cli(["generate", "--model", modelPath, "--tokenizer", dir]),
        "BAD_REQUEST",
        /is not a regular file \(a directory\); pass the path of a file/,
      );
      assertClean(
        await cli(["eval", "--model", modelPath, "--tokenizer", tokPath, "--text", dir]),
        "BAD_REQUEST",
        /is a directory; pass the path of a file/,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli errors: hf: references work for info and quantize too (offline: NETWORK, not NOT_FOUND)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const env = { HF_ENDPOINT: "http://127.0.0.1:9", LLAMA_TS_CACHE: dir };
    assertClean(
      await cli(["info", "--model", "hf:someone/model/model.gguf"], env),
      "NETWORK",
      /127\.0\.0\.1:9/,
    );
    assertClean(
      await cli(
        ["quantize", "--model", "hf:someone/model", "--out", `${dir}/q.gguf`, "--scheme", "q8_0"],
        env,
      ),
      "NETWORK",
      /127\.0\.0\.1:9/,
    );
    await Deno.writeFile(`${dir}/m.gguf`, synthGguf("f16"));
    assertClean(
      await cli(
        ["generate", "--model", `${dir}/m.gguf`, "--tokenizer", "hf:someone/model/tokenizer.json"],
        env,
      ),
      "BAD_REQUEST",
      /not an hf: reference; give the model as hf:owner\/repo/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "cli errors: bad numbers reach the range checks; info validates --ctx and --backend",
  ignore: !modelPath || !tokPath,
  fn: async () => {
    const base = ["generate", "--model", modelPath!, "--tokenizer", tokPath!, "--backend", "ref"];
    // before: node's parseArgs refused "-1" as "ambiguous" and the range check never ran
    assertClean(
      await cli([...base, "--temperature", "-1"]),
      "BAD_REQUEST",
      /temperature must be a finite number >= 0/,
    );
    assertClean(await cli([...base, "--max-tokens", "-5"]), "BAD_REQUEST", /got -5: pass 0 or more/);
    assertClean(await cli([...base, "--ctx", "-1"]), "BAD_REQUEST", /context size -1/);
    assertClean(
      await cli(["info", "--model", modelPath!, "--ctx", "0"]),
      "BAD_REQUEST",
      /--ctx must be an integer/,
    );
    assertClean(
      await cli(["info", "--model", modelPath!, "--backend", "gpu"]),
      "BAD_REQUEST",
      /unknown backend "gpu"/,
    );
    // a context that fills up before --max-tokens says so instead of stopping silently
    const full = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        CLI,
        ...base,
        "--ctx",
        "8",
        "--temperature",
        "0",
        "--max-tokens",
        "50",
        "--prompt",
        "Once",
      ],
      env: { NO_COLOR: "1" },
    }).output();
    assert.equal(full.code, 0);
    assert.match(
      new TextDecoder().decode(full.stderr),
      /\(length: the context of 8 tokens is full; raise --ctx/,
    );
  },
});

Deno.test("cli errors: --weight-quant on an already quantized model or on rows it cannot group; eval with another model's tokenizer", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/q8.gguf`, synthGguf("q8_0"));
    assertClean(
      await cli(["generate", "--model", `${dir}/q8.gguf`, "--backend", "wasm", "--weight-quant", "int8"]),
      "BAD_REQUEST",
      /every matrix of this model is already quantized \(q8_0\); drop --weight-quant/,
    );
    // int4 groups of 128 fit none of this model's rows (32 and 64 wide): the flag would do nothing
    await Deno.writeFile(`${dir}/f16.gguf`, synthGguf("f16"));
    assertClean(
      await cli(["generate", "--model", `${dir}/f16.gguf`, "--backend", "wasm", "--weight-quant", "int4"]),
      "BAD_REQUEST",
      /multiple of 128, but this model's rows are 32, 64 values long, so nothing would be quantized; use --weight-quant int8/,
    );
    if (modelPath && tokPath) {
      // same vocab size (512), different tokens: KL over its token ids would be meaningless
      await Deno.writeFile(`${dir}/other.gguf`, synthGguf("f16"));
      await Deno.writeTextFile(`${dir}/text.txt`, "Once upon a time there was a little girl. ".repeat(4));
      assertClean(
        await cli([
          "eval",
          "--model",
          modelPath,
          "--tokenizer",
          tokPath,
          "--reference",
          `${dir}/other.gguf`,
          "--reference-tokenizer",
          `${dir}/other.gguf`,
          "--text",
          `${dir}/text.txt`,
          "--backend",
          "ref",
        ]),
        "TOKENIZER_MISMATCH",
        /tokenize the --text differently/,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
