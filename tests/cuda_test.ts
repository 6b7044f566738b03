/**
 * The CUDA backend where no GPU is needed: the FFI symbol table against the C header, a compile of the
 * whole library with nvcc (skipped, visibly, without nvcc), and the missing-library error. Parity of
 * every op and the golden generations run on the GPU through ops_test.ts / golden_test.ts, and the
 * GPU-only checks at the end of this file, which skip visibly where no GPU is present.
 */
import assert from "node:assert/strict";
import { CUDA_ABI_VERSION, CUDA_QUEUE_SLOTS, openLibrary, SYMBOLS } from "../src/backends/cuda/ffi.ts";
import { cudaBackendFactory } from "../src/backends/cuda/cuda.ts";
import { compileProgram, type DeviceTensor, OP } from "../src/backends/cuda/program.ts";
import type { Op } from "../src/ops.ts";
import { Engine, LlmError, loadModel } from "../mod.ts";
import { flatten, nmse, NMSE_TOLERANCE, restoringEnv, sharedModel } from "./_util.ts";
import { synthWeights, TINY_CONFIG, writeLlama2c } from "./_synth.ts";
import { expectedShape, type ModelFile } from "../src/format/model_file.ts";
import type { DType } from "../src/types.ts";
import { quantizeModelFile } from "../src/io/quantize_file.ts";
import { blockQuantModel, memoryModel, placeholderTokenizer, simulateQuant } from "./_memory_model.ts";

const root = new URL("..", import.meta.url).pathname;
const header = await Deno.readTextFile(`${root}kernels/cuda/llama_ts_cuda.h`);

function cToFfi(param: string): string {
  const p = param.trim();
  if (p.includes("*")) return "buffer";
  if (p.startsWith("int32_t")) return "i32";
  if (p.startsWith("uint64_t")) return "u64";
  throw new Error(`unmapped C parameter type: ${p}`);
}

Deno.test("the FFI symbol table matches llama_ts_cuda.h exactly", () => {
  const decls = [...header.matchAll(/^int32_t (llama_ts_\w+)\(([^)]*)\);/gm)];
  assert.ok(decls.length >= 10, "header declarations not found");
  const fromHeader = Object.fromEntries(
    decls.map(([, name, params]) => [name, params.trim() === "void" ? [] : params.split(",").map(cToFfi)]),
  );
  const fromTable = Object.fromEntries(Object.entries(SYMBOLS).map(([k, v]) => [k, [...v.parameters]]));
  assert.deepEqual(fromTable, fromHeader);
  for (const v of Object.values(SYMBOLS)) assert.equal(v.result, "i32");
  const abi = header.match(/#define LLAMA_TS_CUDA_ABI_VERSION (\d+)/);
  assert.equal(Number(abi?.[1]), CUDA_ABI_VERSION);
  const slots = header.match(/#define LLAMA_TS_QUEUE_SLOTS (\d+)/);
  assert.equal(Number(slots?.[1]), CUDA_QUEUE_SLOTS);
});

Deno.test("a missing library is BACKEND_UNAVAILABLE saying how to build it", () => {
  assert.throws(
    () => openLibrary("/nonexistent/libllama_ts_cuda.so"),
    (e: unknown) =>
      e instanceof LlmError && e.code === "BACKEND_UNAVAILABLE" && /deno task build:cuda/.test(e.message),
  );
});

const nvcc = await new Deno.Command("nvcc", { args: ["--version"], stdout: "null", stderr: "null" }).output()
  .then((o) => o.success, () => false);
if (!nvcc) console.warn("SKIP cuda compile check: nvcc not found");

/**
 * Runs a build in a fresh temp folder (args(dir)) and asserts it succeeds without warnings; build_cuda.ts's
 * echo of each nvcc command line is not output of the compiler. The folder is removed afterwards.
 */
async function assertQuietBuild(
  what: string,
  cmd: string,
  args: (dir: string) => string[],
  check?: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(cmd, { args: args(dir) }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, `${what}: ${err}`);
    assert.doesNotMatch(err.replace(/^nvcc .*$/m, ""), /warning/i, `${what}: ${err}`);
    await check?.(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "the CUDA library compiles with nvcc (sm_90) with no warnings",
  ignore: !nvcc,
  fn: () =>
    assertQuietBuild(
      "build_cuda.ts",
      Deno.execPath(),
      (dir) => ["run", "-A", `${root}tools/build_cuda.ts`, "--arch", "sm_90", "--out", `${dir}/lib.so`],
      async (dir) => assert.ok((await Deno.stat(`${dir}/lib.so`)).size > 100_000),
    ),
});

Deno.test({
  name:
    "the GEMV block-trace diagnostic build (-DLLAMA_TS_GEMV_TRACE, gemv_check --trace) compiles with nvcc",
  ignore: !nvcc,
  fn: async () => {
    // not part of the library or of CI's device runs: compiled here so that the diagnostic does not rot
    for (const f of ["kernels/cuda/gemv.cu", "kernels/cuda/checks/gemv_check_timing.cu"]) {
      await assertQuietBuild(f, "nvcc", (dir) => [
        "-O3",
        "-std=c++17",
        "-arch=sm_90",
        "-Xcompiler",
        "-Wall",
        "-DLLAMA_TS_GEMV_TRACE=65536",
        "-c",
        "-o",
        `${dir}/t.o`,
        `${root}${f}`,
      ]);
    }
  },
});

const gpu = await cudaBackendFactory.probe();
if (gpu.score === 0) console.warn(`SKIP cuda GPU tests: ${gpu.reason}`);
const modelPath = sharedModel("stories260K.bin"), tokPath = sharedModel("tok512.bin");

Deno.test({
  name: "cuda: weight-only int8 keeps stories260K close to f32; int4 (rows of 64 and 172) is refused",
  ignore: gpu.score === 0 || !modelPath || !tokPath,
  fn: async () => {
    const prompt = "Once upon a time";
    const runs: number[][] = [];
    for (const weightQuant of [undefined, "int8"] as const) {
      const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
      using e = await Engine.create(model, tokenizer, { backend: "cuda", weightQuant });
      model.close();
      runs.push((await e.complete(prompt, { maxTokens: 32, temperature: 0 })).generatedIds);
    }
    const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
    await assert.rejects(
      Engine.create(model, tokenizer, { backend: "cuda", weightQuant: "int4" }),
      (e: LlmError) => e.code === "BAD_REQUEST" && /multiple of 128/.test(e.message),
    );
    model.close();
    const agree = (a: number[], b: number[]): number => {
      let k = 0;
      while (k < a.length && a[k] === b[k]) k++;
      return k;
    };
    console.log(`int8: ${agree(runs[1], runs[0])}/32 greedy tokens agree`);
    assert.ok(agree(runs[1], runs[0]) >= 8);
  },
});

Deno.test({
  name: "cuda: f32, int8 and int4 weights give the logits of ref on the same (host-quantized) weights",
  ignore: gpu.score === 0 || !tokPath,
  fn: async () => {
    const config = { ...TINY_CONFIG, dim: 256, hiddenDim: 512, headDim: 32, nHeads: 8, nKvHeads: 4 };
    const weights = synthWeights(config, 5);
    const ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];
    const logits = async (
      w: Map<string, Float32Array>,
      backend: "ref" | "cuda",
      weightQuant?: "int8" | "int4",
    ) => {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeFile(`${dir}/m.bin`, writeLlama2c(config, w));
        const { model, tokenizer } = await loadModel(`${dir}/m.bin`, { tokenizer: tokPath });
        using e = await Engine.create(model, tokenizer, { backend, weightQuant, kvDType: "f32" });
        model.close();
        const rows = await e.logitsFor(ids);
        const flat = new Float32Array(rows.length * config.vocabSize);
        rows.forEach((r, i) => flat.set(r, i * config.vocabSize));
        return flat;
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    };
    for (const scheme of [undefined, "int8", "int4"] as const) {
      const hostW = new Map(
        [...weights].map(([name, w]) => {
          const shape = expectedShape(config, name);
          return [name, scheme && shape.length === 2 ? simulateQuant(w, shape[0], scheme) : w];
        }),
      );
      const want = await logits(hostW, "ref");
      const got = await logits(weights, "cuda", scheme);
      const e = nmse(got, want);
      console.log(`cuda ${scheme ?? "f32"} vs ref on the same weights: logits nmse ${e.toExponential(2)}`);
      assert.ok(e < 1e-6, `${scheme ?? "f32"} nmse ${e}`);
    }
  },
});

Deno.test({
  name:
    "cuda: int8 KV cache gives the logits and greedy tokens of ref's int8 cache (prefill chunks, long context)",
  ignore: gpu.score === 0 || !modelPath || !tokPath,
  fn: async () => {
    // 300 teacher-forced positions cross many 32-position splits, so the combine kernel runs too
    const text = "Once upon a time, there was a little girl named Lily. She loved to play outside. ".repeat(
      12,
    );
    const run = async (backend: "ref" | "cuda", kvDType: "i8" | "f16") => {
      const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
      using e = await Engine.create(model, tokenizer, {
        backend,
        kvDType,
        contextSize: 512,
        maxStepTokens: 64,
      });
      model.close();
      const ids = tokenizer.encode(text, { addBos: true }).slice(0, 300);
      const flat = flatten(await e.logitsFor(ids));
      const gen = await e.complete(ids.slice(0, 200), { maxTokens: 48, temperature: 0 });
      return { flat, gen: gen.generatedIds, kvBytes: e.info().kvBytes };
    };
    const ref = await run("ref", "i8"), cuda = await run("cuda", "i8"), f16 = await run("cuda", "f16");
    const e = nmse(cuda.flat, ref.flat);
    console.log(
      `int8 KV: cuda vs ref logits nmse ${e.toExponential(2)}; vs cuda f16 KV ${
        nmse(cuda.flat, f16.flat).toExponential(2)
      }; KV bytes ${(cuda.kvBytes / f16.kvBytes).toFixed(3)}x f16`,
    );
    // greedy after 200 positions: equal until a near-tie flips (logits agree to ~1e-7 relative)
    let agree = 0;
    while (agree < ref.gen.length && cuda.gen[agree] === ref.gen[agree]) agree++;
    console.log(`int8 KV: ${agree}/${ref.gen.length} greedy tokens equal to ref's`);
    assert.ok(e < 1e-8, `nmse ${e}`);
    assert.ok(agree >= 24, `greedy diverged after ${agree} tokens`);
  },
});

Deno.test({
  name: "cuda: 12 sequences decoding together (GEMM path, steps captured as a graph and replayed) match ref",
  ignore: gpu.score === 0 || !modelPath || !tokPath,
  fn: async () => {
    const prompts = Array.from(
      { length: 12 },
      (_, i) => `Once upon a time, there was a ${["cat", "dog", "girl"][i % 3]} ${i}`,
    );
    const run = async (backend: "ref" | "cuda") => {
      const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
      using e = await Engine.create(model, tokenizer, { backend, maxBatch: 12, kvDType: "f32" });
      model.close();
      // all 12 decode in lockstep: the 12-row step shape repeats, so it is captured on its second run
      const res = await Promise.all(prompts.map((p) => e.complete(p, { maxTokens: 24, temperature: 0 })));
      return res.map((r) => r.generatedIds);
    };
    const want = await run("ref"), got = await run("cuda");
    let agree = 0, total = 0;
    want.forEach((w, i) => {
      let k = 0;
      while (k < w.length && got[i][k] === w[k]) k++;
      agree += k;
      total += w.length;
    });
    console.log(
      `12-sequence batch on cuda: ${agree}/${total} greedy tokens equal ref's before any divergence`,
    );
    // GEMM and GEMV sum in different orders, so a near-tie may flip late; broken replays give garbage
    assert.ok(agree >= 0.9 * total, `${agree}/${total}`);
  },
});

Deno.test({
  name:
    "cuda: int8 weights, 12 sequences together (decode-batch GEMM, fused QKV and gate/up) match one at a time",
  ignore: gpu.score === 0 || !modelPath || !tokPath,
  fn: async () => {
    // 12-row steps of per-channel int8 weights take kernels/cuda/gemm_rows.cu (QKV and gate/up in one launch
    // each); one sequence alone takes the GEMV. Same weights, so only f16(x) in the GEMM separates them.
    const prompts = Array.from({ length: 12 }, (_, i) => `One day, a ${["bird", "boy", "frog"][i % 3]} ${i}`);
    const { model, tokenizer } = await loadModel(modelPath!, { tokenizer: tokPath });
    using e = await Engine.create(model, tokenizer, {
      backend: "cuda",
      maxBatch: 12,
      kvDType: "f32",
      weightQuant: "int8",
    });
    model.close();
    const opts = { maxTokens: 24, temperature: 0 };
    const together = await Promise.all(prompts.map((p) => e.complete(p, opts)));
    let agree = 0, total = 0;
    for (let i = 0; i < prompts.length; i++) {
      const alone = (await e.complete(prompts[i], opts)).generatedIds, both = together[i].generatedIds;
      let k = 0;
      while (k < alone.length && both[k] === alone[k]) k++;
      agree += k;
      total += alone.length;
    }
    console.log(`int8, 12 sequences together vs alone on cuda: ${agree}/${total} greedy tokens equal`);
    assert.ok(agree >= 0.9 * total, `${agree}/${total}`);
  },
});

Deno.test({
  name:
    "cuda: decode batches at head dims 64 and 128 (register attention kernel, one row per sequence) match ref",
  ignore: gpu.score === 0,
  fn: async () => {
    // 12 sequences decoding together: every decode step has 12 rows of 12 sequences, which takes the
    // register decode attention kernel with one block row per step row (attention()'s rowsOwnSeq); ref runs
    // each sequence alone. f32 weights and f32 KV keep the GEMMs' f16 inputs the only difference, on
    // synthetic weights scaled up so the greedy choices are not near-ties.
    for (const [headDim, nHeads, nKvHeads] of [[64, 4, 2], [128, 4, 4]]) {
      const config = { ...TINY_CONFIG, dim: 256, hiddenDim: 512, headDim, nHeads, nKvHeads, vocabSize: 512 };
      const weights = synthWeights(config, 11);
      const out = weights.get("output")!;
      for (let i = 0; i < out.length; i++) out[i] *= 4;
      const model = memoryModel(config, weights, "f32");
      const prompts = Array.from({ length: 12 }, (_, i) => [1, 3 + i * 37, 5 + i * 11, 7 + i]);
      const opts = { maxTokens: 20, temperature: 0 };
      const run = async (backend: "ref" | "cuda", together: boolean) => {
        using e = await Engine.create(model, synthTok, { backend, maxBatch: 12, kvDType: "f32" });
        if (together) {
          return (await Promise.all(prompts.map((p) => e.complete(p, opts)))).map((r) => r.generatedIds);
        }
        const ids: number[][] = [];
        for (const p of prompts) ids.push((await e.complete(p, opts)).generatedIds);
        return ids;
      };
      const want = await run("ref", false), got = await run("cuda", true);
      let agree = 0, total = 0;
      for (let i = 0; i < prompts.length; i++) {
        let k = 0;
        while (k < want[i].length && got[i][k] === want[i][k]) k++;
        agree += k;
        total += want[i].length;
      }
      console.log(
        `headDim ${headDim}, ${nHeads}/${nKvHeads} heads: ${agree}/${total} greedy tokens equal ref's`,
      );
      assert.ok(agree >= 0.95 * total, `${agree}/${total}`);
    }
  },
});

Deno.test({
  name: "cuda: one-row decode steps with interleaved and half RoPE, f32 and f16 KV and GQA give ref's logits",
  ignore: gpu.score === 0,
  fn: async () => {
    // The QKV GEMV, the fused RoPE + KV write (ops.cu rope_kv_kernel) and decode attention on one-row steps
    // (logitsFor runs one position per step), for both RoPE pairings and both float caches; the other
    // model tests use interleaved RoPE (llama2.c) and mostly f32 KV.
    const ids = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 5, 9, 33, 7];
    for (const ropeStyle of ["interleaved", "half"] as const) {
      for (const kvDType of ["f32", "f16"] as const) {
        const config = {
          ...TINY_CONFIG,
          dim: 256,
          hiddenDim: 512,
          headDim: 64,
          nHeads: 4,
          nKvHeads: 2,
          ropeStyle,
        };
        const model = memoryModel(config, synthWeights(config, 21), "f32");
        const logits = async (backend: "ref" | "cuda") => {
          using e = await Engine.create(model, synthTok, { backend, kvDType });
          return flatten(await e.logitsFor(ids));
        };
        const err = nmse(await logits("cuda"), await logits("ref"));
        console.log(`rope ${ropeStyle}, KV ${kvDType}: logits nmse ${err.toExponential(2)}`);
        assert.ok(err < 1e-6, `rope ${ropeStyle}, KV ${kvDType}: nmse ${err}`);
      }
    }
  },
});

Deno.test({
  name:
    "cuda: both int8-KV attention paths (pipelined kernel, kv8_attention at head dim 6 or forced) give ref's logits",
  ignore: gpu.score === 0,
  fn: async () => {
    // attention.cu's pipelined kernel takes int8 caches whose head dim is a multiple of 4; kv8_attention takes
    // the others (headDim 6 here) and every step under LLAMA_TS_KV8_ATTN=kv8 (read at each launch).
    // logitsFor steps one position at a time (decode); complete() prefills the same 40 ids in chunks of 16
    // (rows of one sequence sharing K/V chunks, split-K combines) and then decodes greedily.
    const ids = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 512);
    const key = "LLAMA_TS_KV8_ATTN";
    await restoringEnv(key, async () => {
      for (const [headDim, forced] of [[8, false], [8, true], [6, false]] as const) {
        const config = { ...TINY_CONFIG, dim: 8 * headDim, headDim, nHeads: 8, nKvHeads: 4 };
        const model = memoryModel(config, synthWeights(config, 31), "f32");
        const run = async (backend: "ref" | "cuda") => {
          if (forced) Deno.env.set(key, "kv8");
          else Deno.env.delete(key);
          using e = await Engine.create(model, synthTok, { backend, kvDType: "i8", maxStepTokens: 16 });
          const gen = (await e.complete(ids, { maxTokens: 16, temperature: 0 })).generatedIds;
          return { logits: flatten(await e.logitsFor(ids)), gen };
        };
        const got = await run("cuda"), want = await run("ref");
        const err = nmse(got.logits, want.logits);
        let agree = 0;
        while (agree < want.gen.length && got.gen[agree] === want.gen[agree]) agree++;
        console.log(
          `int8 KV, headDim ${headDim}${forced ? ", kv8_attention forced" : ""}: nmse ${
            err.toExponential(2)
          }, ` +
            `${agree}/${want.gen.length} greedy tokens after a chunked prefill equal ref's`,
        );
        assert.ok(err < 1e-8, `headDim ${headDim} forced ${forced}: nmse ${err}`);
        assert.ok(agree >= 12, `headDim ${headDim} forced ${forced}: ${agree}/${want.gen.length}`);
      }
    });
  },
});

/** A W8A8 model in memory: every matrix with whole 32-blocks in `dtype`, int8 activations in the layers. */
function w8a8Synth(dtype: "q8_0" | "q4_0", activationQuant: "int8" | undefined): ModelFile {
  const config = {
    ...TINY_CONFIG,
    dim: 256,
    hiddenDim: 512,
    headDim: 32,
    nHeads: 8,
    nKvHeads: 4,
    activationQuant,
  };
  return blockQuantModel(config, synthWeights(config, 8), { dtype });
}

const synthTok = placeholderTokenizer(512);

Deno.test({
  name:
    "cuda: W8A8 models (q8_0 and q4_0, int8 activations) give ref's logits in the GEMV and the GEMM paths",
  ignore: gpu.score === 0,
  fn: async () => {
    const ids = Array.from({ length: 24 }, (_, i) => 1 + ((i * 37) % 500));
    for (const dtype of ["q8_0", "q4_0"] as const) {
      const logits = async (backend: "ref" | "cuda", aq: "int8" | undefined, maxStepTokens?: number) => {
        using e = await Engine.create(w8a8Synth(dtype, aq), synthTok, {
          backend,
          kvDType: "f32",
          maxStepTokens,
        });
        return flatten(await e.logitsFor(ids));
      };
      const ref = await logits("ref", "int8"), refWeightOnly = await logits("ref", undefined);
      const gemm = await logits("cuda", "int8"), gemv = await logits("cuda", "int8", 4);
      const eGemm = nmse(gemm, ref), eGemv = nmse(gemv, ref), eAct = nmse(refWeightOnly, ref);
      console.log(
        `W8A8 ${dtype}: cuda vs ref logits nmse ${eGemm.toExponential(2)} (24-row steps, int8 mma GEMM), ` +
          `${eGemv.toExponential(2)} (4-row steps, dp4a GEMV); int8 vs float activations on ref ${
            eAct.toExponential(2)
          }`,
      );
      // within the q8_0 parity tolerance, and far closer to ref's int8 activations than float ones are
      for (const e of [eGemm, eGemv]) {
        assert.ok(e < NMSE_TOLERANCE.q8_0 / 10, `${dtype}: nmse ${e}`);
        assert.ok(
          e < eAct / 100,
          `${dtype}: nmse ${e} is not far below the float-activation difference ${eAct}`,
        );
      }
    }
  },
});

Deno.test({
  name: "cuda: stories260K quantized with w8a8_smoothquant gives ref's logits and greedy tokens",
  ignore: gpu.score === 0 || !modelPath || !tokPath,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const file = `${dir}/w8a8.gguf`;
      await quantizeModelFile(modelPath!, file, {
        scheme: "w8a8_smoothquant",
        tokenizer: tokPath,
        calibration: new URL("./data/calibration.txt", import.meta.url).pathname,
      });
      const text = "Once upon a time, there was a little girl named Lily. She loved to play outside.";
      const run = async (backend: "ref" | "cuda") => {
        const { model, tokenizer } = await loadModel(file);
        assert.equal(model.config.activationQuant, "int8");
        using e = await Engine.create(model, tokenizer, { backend, kvDType: "f32" });
        model.close();
        const ids = tokenizer.encode(text, { addBos: true });
        const rows = flatten(await e.logitsFor(ids));
        const gen = await e.complete("Once upon a time", { maxTokens: 32, temperature: 0 });
        return { rows, gen: gen.generatedIds };
      };
      const ref = await run("ref"), cuda = await run("cuda");
      const e = nmse(cuda.rows, ref.rows);
      let agree = 0;
      while (agree < ref.gen.length && cuda.gen[agree] === ref.gen[agree]) agree++;
      console.log(
        `stories260K W8A8: cuda vs ref logits nmse ${e.toExponential(2)}; ${agree}/32 greedy tokens equal`,
      );
      assert.ok(e < NMSE_TOLERANCE.q8_0 / 10, `nmse ${e}`);
      assert.ok(agree >= 16, `greedy diverged after ${agree} tokens`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("cuda compiler: a W8A8 decoder layer becomes MATMUL_A8 records (norm, QKV, residual, gate/up fused)", () => {
  let next = 0x1000n;
  const t = (label: string, shape: number[], dtype: DType = "f32", weight = false): DeviceTensor => {
    const ptr = (next += 0x1000n);
    const [m, k] = shape;
    return {
      dtype,
      shape,
      byteLength: 0,
      usage: weight ? "weights" : "compute",
      label,
      ptr,
      weight: weight ? { q: ptr, scales: ptr + 8n, fmt: 3, group: 32, m, k } : undefined,
    };
  };
  const d = 64, h = 96;
  const x = t("x", [4, d]),
    xb = t("xb", [4, d]),
    q = t("q", [4, d]),
    k = t("k", [4, 32]),
    v = t("v", [4, 32]);
  const att = t("att", [4, d]), xb2 = t("xb2", [4, d]), hb = t("hb", [4, h]), hb2 = t("hb2", [4, h]);
  const nw = t("norm", [d], "f32", false), inv = t("invfreq", [4]);
  const W = (n: string, m: number, kk: number) => t(n, [m, kk], "q8_0", true);
  const wq = W("wq", d, d), wk = W("wk", 32, d), wv = W("wv", 32, d), wo = W("wo", d, d);
  const w1 = W("w1", h, d), w3 = W("w3", h, d), w2 = W("w2", d, h);
  const cache = { k: t("ck", [64, 32]), v: t("cv", [64, 32]), blockSize: 16 };
  const layer = (aq: "int8" | undefined): Op[] => [
    { op: "rms_norm", x, weight: nw, out: xb, eps: 1e-5, rows: "tokens" },
    { op: "matmul", x: xb, w: wq, out: q, rows: "tokens", actQuant: aq },
    { op: "matmul", x: xb, w: wk, out: k, rows: "tokens", actQuant: aq },
    { op: "matmul", x: xb, w: wv, out: v, rows: "tokens", actQuant: aq },
    { op: "rope", x: q, nHeads: 8, headDim: 8, style: "interleaved", invFreq: inv },
    { op: "rope", x: k, nHeads: 4, headDim: 8, style: "interleaved", invFreq: inv },
    { op: "kv_write", k, v, cache },
    { op: "attention", q, cache, out: att, nHeads: 8, nKvHeads: 4, headDim: 8, scale: 0.35 },
    { op: "matmul", x: att, w: wo, out: xb2, rows: "tokens", actQuant: aq },
    { op: "add", a: x, b: xb2, out: x, rows: "tokens" },
    { op: "rms_norm", x, weight: nw, out: xb, eps: 1e-5, rows: "tokens" },
    { op: "matmul", x: xb, w: w1, out: hb, rows: "tokens", actQuant: aq },
    { op: "matmul", x: xb, w: w3, out: hb2, rows: "tokens", actQuant: aq },
    { op: "silu_mul", gate: hb, up: hb2, out: hb },
    { op: "matmul", x: hb, w: w2, out: xb2, rows: "tokens", actQuant: aq },
    { op: "add", a: x, b: xb2, out: x, rows: "tokens" },
  ];
  const records = (ops: Op[]) => {
    const w = compileProgram(ops), out: bigint[][] = [];
    for (let i = 0; i < w.length; i += Number(w[i + 1])) out.push([...w.subarray(i, i + Number(w[i + 1]))]);
    return out;
  };
  const A8 = BigInt(OP.MATMUL_A8);
  // float activations: the float kernels' fusions, no MATMUL_A8
  assert.deepEqual(records(layer(undefined)).map((r) => Number(r[0])), [
    OP.MATMUL_MULTI,
    OP.ROPE_KV,
    OP.ATTENTION,
    OP.MATMUL,
    OP.GATEUP,
    OP.MATMUL,
  ]);
  const r = records(layer("int8"));
  assert.deepEqual(r.map((x) => x[0]), [A8, BigInt(OP.ROPE_KV), BigInt(OP.ATTENTION), A8, A8, A8]);
  // [op, len, x, ldx, normW, eps, rows, mode, nW, (W q scales fmt group m k, y, ldy, res) * nW]
  const [qkv, o, gu, down] = [r[0], r[3], r[4], r[5]];
  assert.deepEqual([qkv[2], qkv[4], qkv[7], qkv[8]], [x.ptr, nw.ptr, 0n, 3n]); // norm fused, x read
  assert.deepEqual([qkv[9 + 6], qkv[18 + 6], qkv[27 + 6]], [q.ptr, k.ptr, v.ptr]);
  assert.equal(qkv.length, 9 + 27);
  assert.deepEqual([o[2], o[4], o[7], o[8], o[9 + 6], o[9 + 8]], [att.ptr, 0n, 0n, 1n, x.ptr, x.ptr]); // residual
  assert.deepEqual([gu[4], gu[7], gu[8], gu[9 + 6], gu[18 + 6]], [nw.ptr, 1n, 2n, hb.ptr, hb2.ptr]); // gate/up
  assert.deepEqual([down[2], down[7], down[8], down[9 + 6], down[9 + 8]], [hb.ptr, 0n, 1n, x.ptr, x.ptr]);
  // the norm's output read later: the norm runs on its own and the matmul quantizes xb itself
  const kept = records([...layer("int8").slice(0, 2), { op: "add", a: xb, b: q, out: q, rows: "tokens" }]);
  assert.deepEqual(kept.map((x) => Number(x[0])), [OP.RMS_NORM, OP.MATMUL_A8, OP.ADD]);
  assert.deepEqual([kept[1][2], kept[1][4]], [xb.ptr, 0n]);
});
