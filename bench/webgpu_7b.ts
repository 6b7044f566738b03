/**
 * The webgpu backend on a random-weight LLaMA-7B-shaped model (dim 4096, 32 layers, 32 heads, hidden
 * 11008, vocab 32000; f16 weights generated while they stream in, bench/_synth_source.ts):
 * 1. per variant (fp16 weights, weight-only int8, int4 quantized at load): decode tok/s at batch 1
 *    (16-token prompt, 128 new tokens, greedy), prefill tok/s (512-token prompt), device memory,
 *    load time, and the device time of each kernel of one decode step and of one 512-token prefill step
 *    (timestamp queries);
 * 2. decode against the read roofline: bytes a decode step must read (device weight layout + KV) over
 *    the best read bandwidth measured by bench/webgpu_bandwidth.ts (--bandwidth FILE);
 * 3. logits of a 1-layer model of the same shape and weights (layer 0, embedding, head) against the
 *    ref backend, teacher-forced: fp16 on the same weights, int8/int4 against ref on the host model of
 *    the quantizer. Cosine per position (goal for fp16: 0.999 or better).
 *
 * 4. variant w8a8: q8_0 weights with int8 activations (SmoothQuant W8A8 numerics on random weights).
 * 5. --sample (instead of 1-3): batch-1 decode with generate's default sampling (temperature 0.8, top-k 40,
 *    top-p 0.95, min-p 0.05, seed 1; what `cli.ts bench --sample` runs, through the same runBench) on the
 *    device (the `sample` op, steps queued in bursts) and, in the same process on the same backend, with
 *    host sampling (`deviceSampling: false`, the `--host-sampling` baseline: a logits row read per token).
 * Load time is split into the host's generation of the bytes (`readS`) and the rest (uploads, device
 * repacking/quantization, pipeline creation).
 *
 *   deno run -A bench/webgpu_7b.ts --out DIR [--bandwidth DIR/bandwidth.json] [--tuning FILE]
 *        [--variants f16,int8,int4,w8a8] [--shape llama7B|stories110M|stories15M] [--layers N]
 *        [--positions 6] [--repeat 2] [--skip-compare | --compare-only] [--append] [--sample] [--no-f16]
 * --no-f16: the f32 kernel variants even where the adapter has shader-f16 (e.g. prefill through matmul_gemm's
 * f32 tiles instead of matmul_gemm_f16's f16 tiles).
 * --append adds to DIR/webgpu_7b.json instead of replacing it (one process per variant, each with its
 * own time limit).
 */
import { parseArgs } from "node:util";
import type { LlamaConfig } from "../src/model/config.ts";
import type { ModelFile, TensorEntry } from "../src/format/model_file.ts";
import { Engine, pickBackend } from "../mod.ts";
import { createWebGpuBackend, type WebGpuOptions } from "../src/backends/webgpu/webgpu.ts";
import { EPC, planFormat } from "../src/backends/webgpu/weights.ts";
import { runBench } from "../src/cli/bench.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { dequantize } from "../src/dtype.ts";
import { SHAPES } from "./_synth_gguf.ts";
import { synthF16Model } from "./_synth_source.ts";
import { placeholderTokenizer, quantizable, simulateQuant } from "../tests/_memory_model.ts";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "." },
    bandwidth: { type: "string" },
    tuning: { type: "string" },
    variants: { type: "string", default: "f16,int8,int4" },
    shape: { type: "string", default: "llama7B" },
    layers: { type: "string" },
    positions: { type: "string", default: "4" },
    repeat: { type: "string", default: "2" },
    "skip-compare": { type: "boolean", default: false },
    "no-f16": { type: "boolean", default: false },
    "compare-only": { type: "boolean", default: false },
    append: { type: "boolean", default: false },
    sample: { type: "boolean", default: false },
  },
});

type Variant = "f16" | "int8" | "int4" | "w8a8";
const base = SHAPES[f.shape!];
if (!base) throw new Error(`unknown --shape ${f.shape}; known: ${Object.keys(SHAPES).join(", ")}`);
const config: LlamaConfig = {
  ...base,
  nLayers: f.layers ? Number(f.layers) : base.nLayers,
  seqLen: 2048,
  tiedEmbeddings: false,
};
const tokenizer = placeholderTokenizer(config.vocabSize);
const log = (...a: unknown[]): void => console.error(`[${(performance.now() / 1000).toFixed(1)}s]`, ...a);
const tuning = f.tuning ? JSON.parse(await Deno.readTextFile(f.tuning)) : undefined;
const bandwidth = f.bandwidth ? JSON.parse(await Deno.readTextFile(f.bandwidth)).bestReadGBps as number : 0;

/** Bytes one decode step reads: every matrix but the embedding (one row of it), norms, KV at `pos`. */
function stepBytes(c: LlamaConfig, v: Variant, pos: number): number {
  const quant = v === "int8" || v === "int4" ? v : undefined;
  let bytes = 0;
  for (const name of requiredTensors(c)) {
    const shape = expectedShape(c, name);
    if (shape.length === 1) {
      bytes += shape[0] * 4;
      continue;
    }
    const [m, k] = shape;
    const { fmt, group } = planFormat(v === "w8a8" && k % 32 === 0 ? "q8_0" : "f16", k, quant);
    const row = Math.ceil(k / EPC[fmt]) * 16 + (group ? Math.ceil(k / group / 2) * 4 : 0);
    bytes += name === "tok_embd" ? row : m * row;
  }
  const kvDim = c.nKvHeads * c.headDim;
  return bytes + c.nLayers * 2 * kvDim * 2 * pos;
}

interface Profile {
  kernel: string;
  us: number;
  count: number;
}

/** The variant's model, and its backend options. */
function variantModel(c: LlamaConfig, v: Variant): ModelFile {
  return v === "w8a8" ? synthF16Model({ ...c, activationQuant: "int8" }, 1, "q8_0") : synthF16Model(c);
}
/** The prefill run's prompt, and the prefill step profiled per kernel. */
const prefillTokens = 512;
const weightQuant = (v: Variant): "int8" | "int4" | undefined => v === "int8" || v === "int4" ? v : undefined;

/** The model with the time its sources spend producing bytes counted into `clock.s`. */
function timed(model: ModelFile, clock: { s: number }): ModelFile {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, e] of model.tensors) {
    const src = e.source;
    tensors.set(name, {
      ...e,
      source: {
        ...src,
        name: src.name,
        size: src.size,
        async read(offset: number, length: number): Promise<Uint8Array> {
          const t = performance.now();
          const b = await src.read(offset, length);
          clock.s += (performance.now() - t) / 1000;
          return b;
        },
        close: () => src.close(),
      },
    });
  }
  return { ...model, tensors };
}

/** The timed runs' backend options: the variant's load-time quantization, --tuning, --no-f16. */
function backendOptions(v: Variant): WebGpuOptions {
  return { weightQuant: weightQuant(v), tuning, f16: !f["no-f16"] };
}

/** Sampled batch-1 decode, device `sample` op against host sampling, one backend (step 5). */
async function benchSampling(v: Variant): Promise<Record<string, unknown>> {
  using backend = await createWebGpuBackend(backendOptions(v));
  const sampling = { temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, seed: 1 };
  const out: Record<string, unknown> = { variant: v, sampling };
  for (const deviceSampling of [true, false]) {
    using engine = await Engine.create(variantModel(config, v), tokenizer, {
      backend,
      contextSize: 1024,
      deviceSampling,
    });
    const r = await runBench(engine, {
      model: `${f.shape}-shape`,
      promptTokens: 16,
      genTokens: 128,
      repeat: Number(f.repeat),
      sampling,
    });
    const key = deviceSampling ? "device" : "host";
    out[key] = {
      decodeTokPerS: r.decodeTokPerS,
      runs: r.runs.map((x) => x.decodeTokPerS),
      devicePick: r.devicePick,
    };
    log(
      `${v}: sampled decode, ${key} sampling (${r.devicePick}): ${r.decodeTokPerS.toFixed(1)} tok/s (runs ${
        r.runs.map((x) => x.decodeTokPerS.toFixed(1)).join(", ")
      })`,
    );
  }
  const ratio = (out.device as { decodeTokPerS: number }).decodeTokPerS /
    (out.host as { decodeTokPerS: number }).decodeTokPerS;
  log(`${v}: sampled decode, device / host sampling: ${ratio.toFixed(2)}x`);
  return { ...out, ratio };
}

async function benchVariant(v: Variant): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const backend = await createWebGpuBackend(backendOptions(v));
  const clock = { s: 0 };
  using engine = await Engine.create(timed(variantModel(config, v), clock), tokenizer, {
    backend,
    contextSize: 1024,
    maxStepTokens: 512,
  });
  const loadS = (performance.now() - t0) / 1000;
  const bytes0 = [...variantModel(config, v).tensors.values()].reduce((a, e) => a + e.byteLength, 0);
  log(
    `${v}: loaded ${(bytes0 / 1e9).toFixed(2)} GB in ${loadS.toFixed(1)} s (${
      (bytes0 / 1e6 / loadS).toFixed(0)
    } MB/s; generating the bytes ${clock.s.toFixed(1)} s); ${engine.info().device}`,
  );
  const repeat = Number(f.repeat);
  const decode = await runBench(engine, {
    model: `${f.shape}-shape`,
    promptTokens: 16,
    genTokens: 128,
    repeat,
  });
  log(
    `${v}: decode ${decode.decodeTokPerS.toFixed(1)} tok/s (runs ${
      decode.runs.map((r) => r.decodeTokPerS.toFixed(1)).join(", ")
    })`,
  );
  const prefill = await runBench(engine, {
    model: `${f.shape}-shape`,
    promptTokens: prefillTokens,
    genTokens: 2,
    repeat,
  });
  log(`${v}: prefill ${prefill.prefillTokPerS.toFixed(0)} tok/s`);
  // device time of each kernel of one decode step at position 80 (the decode run's mean position)
  const graph = (backend as unknown as {
    compiledGraphs(): {
      profile(
        s: unknown,
        r: number,
        o?: { splits?: number; mode?: "reps" | "single" | "whole" },
      ): Promise<{ label: string; us: number; hostUs?: number }[]>;
      traceDecode(steps: number): void;
      takeDecodeTrace(): Promise<{ begin: number[]; end: number[] }>;
    }[];
  })
    .compiledGraphs()[0];
  const stepAt = (pos: number): Record<string, unknown> => {
    const blocks = Math.ceil((pos + 1) / 16);
    return {
      nTokens: 1,
      tokens: Int32Array.of(5),
      positions: Int32Array.of(pos),
      seqIndex: new Int32Array(1),
      blockTables: Int32Array.from({ length: blocks }, (_, i) => i),
      maxBlocksPerSeq: blocks,
      logitRows: Int32Array.of(0),
    };
  };
  // one more decode with each step's pass timed on the GPU: busy time against the wall, and the idle gaps
  // between steps (within a burst, and at the bursts' read-backs)
  const graphs = (backend as unknown as { compiledGraphs(): (typeof graph)[] }).compiledGraphs();
  for (const g of graphs) g.traceDecode(256);
  const traced = await runBench(engine, {
    model: `${f.shape}-shape`,
    promptTokens: 16,
    genTokens: 128,
    repeat: 1,
  });
  const traces = await Promise.all(graphs.map((g) => g.takeDecodeTrace()));
  const tr = traces.reduce((a, b) => b.begin.length > a.begin.length ? b : a);
  const gaps = tr.begin.slice(1).map((b, i) => b - tr.end[i]);
  const busy = tr.end.reduce((a, e, i) => a + e - tr.begin[i], 0);
  const sortedGaps = gaps.toSorted((a, b) => a - b);
  const decodeTrace = {
    steps: tr.begin.length,
    wallUsPerToken: 1e6 / traced.decodeTokPerS,
    gpuSpanUsPerStep: tr.begin.length ? tr.end[tr.end.length - 1] / tr.begin.length : 0,
    gpuBusyUsPerStep: tr.begin.length ? busy / tr.begin.length : 0,
    gapUsMedian: sortedGaps[Math.floor(sortedGaps.length / 2)] ?? 0,
    gapUsMax: sortedGaps[sortedGaps.length - 1] ?? 0,
    gapsOver100Us: gaps.filter((g) => g > 100).length,
  };
  log(
    `${v}: decode trace: ${decodeTrace.steps} steps, wall ${
      decodeTrace.wallUsPerToken.toFixed(0)
    } us per token, ` +
      `GPU span ${decodeTrace.gpuSpanUsPerStep.toFixed(0)} us per step, busy ${
        decodeTrace.gpuBusyUsPerStep.toFixed(0)
      }; ` +
      `gaps between steps: median ${decodeTrace.gapUsMedian.toFixed(1)} us, max ${
        decodeTrace.gapUsMax.toFixed(0)
      }, ` +
      `${decodeTrace.gapsOver100Us} over 100 us`,
  );
  const pos = 80;
  const prof = await graph.profile(stepAt(pos), 10);
  // the same step as it runs: once per dispatch cold (no repeats), and whole steps in one pass each
  const single = await graph.profile(stepAt(pos), 1, { mode: "single" });
  const singleUs = single.reduce((a, p) => a + p.us, 0);
  const [whole] = await graph.profile(stepAt(pos), 20, { mode: "whole" });
  const wallUs = 1e6 / decode.decodeTokPerS;
  const timeline = {
    wallUsPerToken: wallUs,
    stepPassUs: whole.us,
    dispatchesSingleUs: singleUs,
    hostEncodeUs: whole.hostUs,
    gemvSingleUs: single.filter((p) => p.label.startsWith("matmul")).reduce((a, p) => a + p.us, 0),
  };
  log(
    `${v}: timeline per token: wall ${wallUs.toFixed(0)} us; one step in one pass ${
      whole.us.toFixed(0)
    } us ` +
      `(its dispatches one by one ${singleUs.toFixed(0)} us, GEMVs ${timeline.gemvSingleUs.toFixed(0)}); ` +
      `host encode ${whole.hostUs?.toFixed(0)} us`,
  );
  // decode attention per step, the old one split per row (the baseline) against the default splits, at
  // the decode run's first, mean and last positions
  const attention = [];
  for (const at of [16, 80, 143]) {
    for (const splits of [1, undefined]) {
      const ps = await graph.profile(stepAt(at), 10, { splits });
      const us = (k: string): number => ps.filter((p) => p.label.startsWith(k)).reduce((a, p) => a + p.us, 0);
      const grid = (ps.find((p) => p.label.startsWith("attention_decode")) as { grid?: number[] })?.grid;
      attention.push({
        pos: at,
        splits: grid?.[0] ?? 0,
        decodeUs: us("attention_decode"),
        combineUs: us("attention_combine"),
      });
    }
  }
  log(
    `${v}: attention per step (decode + combine us): ` +
      attention.map((a) => `pos ${a.pos} ${a.splits} split(s) ${(a.decodeUs + a.combineUs).toFixed(0)}`)
        .join(", "),
  );
  const kernels = perKernel(prof);
  const deviceUs = kernels.reduce((s, k) => s + k.us, 0);
  // the device time of each kernel of one prefill step (the prefill run's prompt, positions 0.., one
  // sequence, the last row's logits), each dispatch repeated twice
  const prefillStep = (n: number): Record<string, unknown> => {
    const blocks = Math.ceil(n / 16);
    return {
      nTokens: n,
      tokens: Int32Array.from({ length: n }, (_, i) => (i * 7 + 5) % config.vocabSize),
      positions: Int32Array.from({ length: n }, (_, i) => i),
      seqIndex: new Int32Array(n),
      blockTables: Int32Array.from({ length: blocks }, (_, i) => i),
      maxBlocksPerSeq: blocks,
      logitRows: Int32Array.of(n - 1),
    };
  };
  const prefillKernels = perKernel(await graph.profile(prefillStep(prefillTokens), 2));
  const prefillUs = prefillKernels.reduce((s, k) => s + k.us, 0);
  log(
    `${v}: one ${prefillTokens}-token prefill step: ${prefillUs.toFixed(0)} us of device time: ` +
      prefillKernels.slice(0, 6).map((k) => `${k.kernel} ${k.us.toFixed(0)} us/${k.count}`).join(", "),
  );
  const bytes = stepBytes(config, v, pos);
  const memory = engine.info().deviceMemoryUsed ?? 0;
  const r = {
    variant: v,
    device: engine.info().device,
    loadS,
    readS: clock.s,
    fileGB: bytes0 / 1e9,
    decodeTokPerS: decode.decodeTokPerS,
    decodeRuns: decode.runs.map((x) => x.decodeTokPerS),
    prefillTokPerS: prefill.prefillTokPerS,
    deviceMemoryGiB: memory / 2 ** 30,
    bytesPerStep: bytes,
    rooflineTokPerS: bandwidth ? (bandwidth * 1e9) / bytes : undefined,
    fractionOfRoofline: bandwidth ? decode.decodeTokPerS / ((bandwidth * 1e9) / bytes) : undefined,
    profileDispatches: prof.length,
    profileDeviceUs: deviceUs,
    profileGBps: bytes / (deviceUs * 1e3),
    kernels,
    prefillKernels,
    attention,
    timeline,
    decodeTrace,
    single: single.map((p) => ({ label: p.label, us: p.us })),
    slowest: prof.sort((a, b) => b.us - a.us).slice(0, 8),
  };
  log(`${v}: one decode step: ${prof.length} dispatches, ${deviceUs.toFixed(0)} us of device time`);
  backend[Symbol.dispose]();
  return r;
}

/** Device time per kernel (the label's first word), most first. */
function perKernel(prof: readonly { label: string; us: number }[]): Profile[] {
  const byKernel = new Map<string, Profile>();
  for (const p of prof) {
    const k = p.label.split(" ")[0];
    const e = byKernel.get(k) ?? { kernel: k, us: 0, count: 0 };
    e.us += p.us;
    e.count++;
    byKernel.set(k, e);
  }
  return [...byKernel.values()].sort((a, b) => b.us - a.us);
}

/** The 1-layer model's weights as f32, optionally replaced by the host model of the quantizer. */
async function hostModel(model: ModelFile, quant?: "int8" | "int4"): Promise<ModelFile> {
  const tensors = new Map<string, TensorEntry>();
  for (const [name, e] of model.tensors) {
    const raw = await e.source.read(e.byteOffset, e.byteLength);
    let w: Float32Array = new Float32Array(e.shape.reduce((a, b) => a * b, 1));
    dequantize(e.dtype, raw, w);
    if (quant && e.shape.length === 2 && quantizable(e.shape[1], quant)) {
      w = simulateQuant(w, e.shape[0], quant);
    }
    const bytes = new Uint8Array(w.buffer);
    tensors.set(name, {
      ...e,
      dtype: "f32",
      source: bytesSource(bytes, name),
      byteOffset: 0,
      byteLength: bytes.byteLength,
    });
  }
  return { ...model, tensors };
}

async function compare(v: Variant, positions: number): Promise<Record<string, unknown>> {
  const one: LlamaConfig = { ...config, nLayers: 1 };
  const ids = Array.from({ length: positions }, (_, i) => (i * 7919 + 13) % one.vocabSize);
  ids[0] = 1;
  const t0 = performance.now();
  const gpu = await createWebGpuBackend({ weightQuant: weightQuant(v) });
  let got: Float32Array[];
  {
    using e = await Engine.create(variantModel(one, v), tokenizer, { backend: gpu, contextSize: 64 });
    got = await e.logitsFor(ids);
  }
  gpu[Symbol.dispose]();
  const q = weightQuant(v);
  const refModel = q ? await hostModel(synthF16Model(one), q) : variantModel(one, v);
  using ref = await pickBackend("ref");
  let want: Float32Array[];
  {
    using e = await Engine.create(refModel, tokenizer, { backend: ref, contextSize: 64, kvDType: "f32" });
    want = await e.logitsFor(ids);
  }
  const cos = got.map((g, i) => {
    let d = 0, a = 0, b = 0;
    for (let j = 0; j < g.length; j++) {
      d += g[j] * want[i][j];
      a += g[j] * g[j];
      b += want[i][j] * want[i][j];
    }
    return d / Math.sqrt(a * b);
  });
  const argmax = (x: Float32Array): number => x.reduce((bi, v, i, arr) => (v > arr[bi] ? i : bi), 0);
  const maxAbs = Math.max(...got.map((g, i) => Math.max(...g.map((x, j) => Math.abs(x - want[i][j])))));
  const r = {
    variant: v,
    positions,
    cosineMin: Math.min(...cos),
    cosineMean: cos.reduce((a, b) => a + b, 0) / cos.length,
    top1Agreement: got.filter((g, i) => argmax(g) === argmax(want[i])).length / got.length,
    maxAbsDiff: maxAbs,
    seconds: (performance.now() - t0) / 1000,
  };
  log(
    `compare ${v}: cosine min ${r.cosineMin.toFixed(6)} mean ${
      r.cosineMean.toFixed(6)
    }, top-1 ${r.top1Agreement}`,
  );
  return r;
}

const variants = f.variants!.split(",") as Variant[];
const previous = f.append
  ? await Deno.readTextFile(`${f.out}/webgpu_7b.json`).then((t) => JSON.parse(t)).catch(() => undefined)
  : undefined;
const report = {
  date: new Date().toISOString(),
  shape: { ...config },
  bandwidthGBps: bandwidth || undefined,
  tuning,
  results: (previous?.results ?? []) as Record<string, unknown>[],
  comparisons: (previous?.comparisons ?? []) as Record<string, unknown>[],
};
// written after every stage, so a run cut short still leaves what it measured
const save = (): Promise<void> =>
  Deno.writeTextFile(`${f.out}/webgpu_7b.json`, JSON.stringify(report, null, 2));
for (const v of f["compare-only"] ? [] : variants) {
  report.results.push(await (f.sample ? benchSampling(v) : benchVariant(v)));
  await save();
}
if (!f["skip-compare"] && !f.sample) {
  for (const v of variants) {
    report.comparisons.push(await compare(v, Number(f.positions)));
    await save();
  }
}
console.log(JSON.stringify(report, null, 2));
