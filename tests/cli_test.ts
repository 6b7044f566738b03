/** The CLI as a user meets it: help, usage errors, info, bench, and clear errors for bad input. */
import assert from "node:assert/strict";
import { sharedModel } from "./_util.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const modelPath = sharedModel("stories260K.bin");
const tokPath = sharedModel("tok512.bin");

/** The shared stories260K model and tokenizer on the ref backend, as flags. */
const onRef = (): string[] => ["--model", modelPath!, "--tokenizer", tokPath!, "--backend", "ref"];

/** `cli.ts bench` on the shared model (ref backend) for `tokens` prompt and generated tokens, one run. */
async function benchOnRef(
  tokens: number,
  ...extra: string[]
): Promise<{ code: number; out: string; err: string }> {
  const n = String(tokens);
  return await cli(["bench", ...onRef(), "--prompt-tokens", n, "--gen-tokens", n, "--repeat", "1", ...extra]);
}

async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    env: { NO_COLOR: "1", ...env },
  })
    .output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout), err: d.decode(o.stderr) };
}

Deno.test("help for the CLI and each command", async () => {
  const main = await cli(["--help"]);
  assert.equal(main.code, 0);
  for (const c of ["generate", "info", "bench"]) assert.match(main.out, new RegExp(c));
  for (const [c, flag] of [["generate", "--top-p"], ["info", "--model"], ["bench", "--gen-tokens"]]) {
    const r = await cli([c, "--help"]);
    assert.equal(r.code, 0);
    assert.match(r.out, new RegExp(flag));
  }
});

Deno.test("usage errors exit 2 with a message", async () => {
  const r1 = await cli(["frobnicate"]);
  assert.equal(r1.code, 2);
  assert.match(r1.err, /unknown command "frobnicate"/);
  const r2 = await cli(["generate", "--modle", "x"]);
  assert.equal(r2.code, 2);
  assert.match(r2.err, /modle/);
  const r3 = await cli(["generate"]);
  assert.equal(r3.code, 2);
  assert.match(r3.err, /--model is required/);
});

Deno.test("bad input: missing, truncated and non-model files, bad numbers, unreachable hub", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = await cli(["generate", "--model", `${dir}/nope.bin`]);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /error \[NOT_FOUND\]: .*nope\.bin/);
    if (modelPath) {
      const bytes = await Deno.readFile(modelPath);
      await Deno.writeFile(`${dir}/cut.bin`, bytes.subarray(0, 5000));
      const cut = await cli(["generate", "--model", `${dir}/cut.bin`, "--tokenizer", tokPath!]);
      assert.equal(cut.code, 1);
      assert.match(cut.err, /error \[MODEL_FORMAT\]: .*truncated/);
      const n = await cli([
        "generate",
        "--model",
        modelPath,
        "--tokenizer",
        tokPath!,
        "--max-tokens",
        "lots",
      ]);
      assert.equal(n.code, 1);
      assert.match(n.err, /--max-tokens expects an integer, got "lots"/);
    }
    await Deno.writeTextFile(`${dir}/x.json`, "{}");
    const json = await cli(["info", "--model", `${dir}/x.json`]);
    assert.equal(json.code, 1);
    assert.match(json.err, /error \[MODEL_FORMAT\]/);
    // a closed loopback port stands in for an unreachable hub
    const hub = await cli(["generate", "--model", "hf:someone/model/model.gguf"], {
      HF_ENDPOINT: "http://127.0.0.1:9",
      LLAMA_TS_CACHE: dir,
    });
    assert.equal(hub.code, 1);
    assert.match(hub.err, /error \[NETWORK\]/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "info and bench print JSON",
  ignore: !modelPath || !tokPath,
  fn: async () => {
    const info = await cli(["info", "--model", modelPath!, "--format", "json"]);
    assert.equal(info.code, 0, info.err);
    const j = JSON.parse(info.out);
    assert.equal(j.parameters, 260032);
    assert.equal(j.config.nKvHeads, 4);
    assert.ok(j.kvBytes.f16 > 0 && j.weightBytes > 1_000_000);
    const bench = await benchOnRef(8);
    assert.equal(bench.code, 0, bench.err);
    const b = JSON.parse(bench.out);
    assert.equal(b.backend, "ref");
    assert.match(b.device, /CPU/);
    assert.ok(b.decodeTokPerS > 0 && b.prefillTokPerS > 0);
  },
});

Deno.test({
  name: "--host-sampling gives the device sampler's text; bench --sample reports its settings",
  ignore: !modelPath || !tokPath,
  fn: async () => {
    const args = ["generate", ...onRef(), "--prompt", "Once upon", "--max-tokens", "24", "--seed", "7"];
    const device = await cli(args);
    const host = await cli([...args, "--host-sampling"]);
    assert.equal(device.code, 0, device.err);
    assert.equal(host.code, 0, host.err);
    assert.equal(device.out, host.out);
    const other = await cli([...args.slice(0, -1), "8"]);
    assert.notEqual(other.out, device.out, "another seed samples other text");
    const bench = await benchOnRef(4, "--sample");
    assert.equal(bench.code, 0, bench.err);
    assert.deepEqual(JSON.parse(bench.out).sampling, {
      temperature: 0.8,
      topK: 40,
      topP: 0.95,
      minP: 0.05,
      seed: 1,
    });
    assert.equal(JSON.parse(bench.out).devicePick, "sample");
    const hostBench = await benchOnRef(4, "--host-sampling");
    assert.equal(hostBench.code, 0, hostBench.err);
    assert.equal(JSON.parse(hostBench.out).devicePick, "argmax", "greedy rows still take the device argmax");
  },
});

Deno.test({
  name: "--threads on a backend other than wasm runs and says once on stderr that it is ignored",
  ignore: !modelPath || !tokPath,
  fn: async () => {
    const args = [
      "generate",
      "--model",
      modelPath!,
      "--tokenizer",
      tokPath!,
      "--prompt",
      "Once",
      "--max-tokens",
      "2",
    ];
    const ref = await cli([...args, "--backend", "ref", "--threads", "2"]);
    assert.equal(ref.code, 0, ref.err);
    assert.equal(
      ref.err.match(/--threads sets the wasm backend's worker threads; the ref backend ignores it/g)?.length,
      1,
    );
    const wasm = await cli([...args, "--backend", "wasm", "--threads", "2"]);
    assert.equal(wasm.code, 0, wasm.err);
    assert.doesNotMatch(wasm.err, /--threads/);
  },
});

Deno.test({
  name: "a --ctx past the model's training length runs but warns once on stderr; within it, no warning",
  ignore: !modelPath || !tokPath,
  fn: async () => {
    const args = ["generate", ...onRef(), "--prompt", "Once"];
    const long = await cli([...args, "--max-tokens", "2", "--ctx", "600"]);
    assert.equal(long.code, 0, long.err);
    const warnings = long.err.match(
      /warning: --ctx 600 is longer than the 512 tokens this model was trained for/g,
    );
    assert.equal(warnings?.length, 1, long.err);
    const within = await cli([...args, "--max-tokens", "2", "--ctx", "512"]);
    assert.equal(within.code, 0, within.err);
    assert.doesNotMatch(within.err, /warning/);
  },
});
