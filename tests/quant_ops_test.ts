/**
 * The int8-activation matmul (SmoothQuant W8A8) on every backend that declares it, against a naive host
 * computation written here: per-token int8 x, dequantized weights, f64 sums. The engine refuses a W8A8
 * model on a backend that does not declare the feature, naming the backends that do.
 */
import assert from "node:assert/strict";
import type { Backend, BackendCaps } from "../src/backend.ts";
import type { Op } from "../src/ops.ts";
import type { DType } from "../src/types.ts";
import { dequantize, quantize } from "../src/dtype.ts";
import { Engine, LlmError, pickBackend } from "../mod.ts";
import { nmse, randn, rowsStep } from "./_util.ts";
import { forEachBackend } from "./_backends.ts";
import type { ModelFile } from "../src/format/model_file.ts";
import { synthWeights, TINY_CONFIG } from "./_synth.ts";
import { blockQuantModel, placeholderTokenizer } from "./_memory_model.ts";

/** x quantized per row as the op documents: scale max|x|/127 in f32, q = round half away, clamp. */
function naiveActInt8(x: Float32Array, w: Float32Array, rows: number, m: number, k: number): Float64Array {
  const out = new Float64Array(rows * m);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let i = 0; i < k; i++) amax = Math.max(amax, Math.abs(x[r * k + i]));
    const s = Math.fround(amax / 127), inv = s ? Math.fround(1 / s) : 0;
    const q = new Float64Array(k);
    for (let i = 0; i < k; i++) {
      const v = Math.fround(x[r * k + i] * inv);
      q[i] = Math.max(-127, Math.min(127, v < 0 ? -Math.round(-v) : Math.round(v)));
    }
    for (let j = 0; j < m; j++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += w[j * k + i] * q[i];
      out[r * m + j] = acc * s;
    }
  }
  return out;
}

for (const dtype of ["q8_0", "q4_0"] as DType[]) {
  Deno.test(`matmul ${dtype} with int8 activations matches per-token int8 x times dequantized w`, async () => {
    let ran = 0;
    await forEachBackend(async (b) => {
      // 2080: more than one workgroup of webgpu's act_quant_int8 per row (1,024 values each)
      for (const k of [96, 2080]) {
        const m = 37, rows = 5;
        const x = randn(rows * k, 11, 2);
        x[2 * k + 5] = 40; // an outlier channel in row 2
        x.fill(0, 3 * k, 4 * k); // an all-zero row: scale 0, output 0
        const wq = quantize(dtype, randn(m * k, 12, 0.3)), wf = new Float32Array(m * k);
        dequantize(dtype, wq, wf);
        const tx = b.alloc("f32", [rows + 2, k], "compute", "x"), tw = b.alloc(dtype, [m, k], "weights", "w");
        const to = b.alloc("f32", [rows + 2, m], "compute", "out");
        await b.upload(tx, x);
        await b.upload(tw, wq);
        const op: Op = { op: "matmul", x: tx, w: tw, out: to, rows: "tokens", actQuant: "int8" };
        // the declared feature is what the engine trusts (a backend older than the op property would
        // run it as a plain matmul), so it is what this test holds a backend to
        if (!b.caps.opFeatures?.includes("matmul_act_int8")) {
          console.warn(`SKIP backend ${b.name}: no int8-activation matmul yet`);
          return;
        }
        assert.ok(b.supportsOp(op), `${b.name} declares matmul_act_int8 but refuses ${dtype} weights`);
        using g = b.compile([op]);
        await g.run(rowsStep(rows));
        await b.synchronize();
        const got = new Float32Array(await b.download(to)).subarray(0, rows * m);
        const want = naiveActInt8(x, wf, rows, m, k);
        for (const v of got) assert.ok(Number.isFinite(v));
        assert.ok(got.subarray(3 * m, 4 * m).every((v) => v === 0), "zero row");
        const e = nmse(got, want);
        assert.ok(e < 1e-12, `${b.name} ${dtype}: nmse ${e}`);
        // and it is not the float matmul: per-token quantization changes the result measurably
        const float = new Float64Array(rows * m);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < m; j++) {
            for (let i = 0; i < k; i++) float[r * m + j] += wf[j * k + i] * x[r * k + i];
          }
        }
        assert.ok(nmse(got, float) > 1e-7, "int8 activations should differ from float activations");
        ran++;
      }
    });
    assert.ok(ran >= 1, "the ref backend runs int8-activation matmuls");
  });
}

Deno.test("ref refuses int8 activations over float or k-quant weights", async () => {
  using b = await pickBackend("ref");
  for (const d of ["f32", "f16", "q4_k"] as DType[]) {
    const k = d === "q4_k" ? 256 : 64;
    const x = b.alloc("f32", [2, k], "compute"),
      w = b.alloc(d, [4, k], "weights"),
      o = b.alloc("f32", [2, 4], "compute");
    const op: Op = { op: "matmul", x, w, out: o, rows: "tokens", actQuant: "int8" };
    assert.equal(b.supportsOp(op), false, d);
    assert.throws(
      () => b.compile([op]),
      (e: unknown) => e instanceof LlmError && /int8 activations need q8_0/.test(e.message),
    );
  }
});

/** A W8A8 model in memory (q8_0 matrices, activationQuant set), for engine-level checks. */
function w8a8Model(): ModelFile {
  const config = { ...TINY_CONFIG, activationQuant: "int8" as const };
  return blockQuantModel(config, synthWeights(config, 3), { dtype: "q8_0" });
}

const tok = placeholderTokenizer(512);

Deno.test("a W8A8 model runs on ref with int8-activation matmuls in every decoder layer", async () => {
  const model = w8a8Model();
  using e = await Engine.create(model, tok, { backend: "ref" });
  const rows = await e.logitsFor([1, 5, 9, 200]);
  assert.equal(rows.length, 4);
  for (const r of rows) for (const v of r) assert.ok(Number.isFinite(v));
  // the same weights without activation quantization give different logits
  using f = await Engine.create({ ...model, config: { ...model.config, activationQuant: undefined } }, tok, {
    backend: "ref",
  });
  const plain = await f.logitsFor([1, 5, 9, 200]);
  const d = nmse(rows[3], plain[3]);
  assert.ok(d > 1e-8 && d < 1e-2, `W8A8 vs weight-only logits nmse ${d}`);
});

Deno.test("a backend without int8-activation matmuls refuses a W8A8 model, naming those that can", async () => {
  const ref = await pickBackend("ref");
  // a backend as one written before the feature existed: same ops, no opFeatures
  const caps: BackendCaps = { ...ref.caps, opFeatures: undefined };
  const old = new Proxy(ref, {
    get: (t, p) => {
      if (p === "caps") return caps;
      const v = Reflect.get(t, p);
      return typeof v === "function" ? v.bind(t) : v;
    },
  }) as Backend;
  await assert.rejects(
    () => Engine.create(w8a8Model(), tok, { backend: old }),
    (e: unknown) =>
      e instanceof LlmError && e.code === "UNSUPPORTED_MODEL" && /W8A8/.test(e.message) &&
      /backends that can: ref/.test(e.message),
  );
  ref[Symbol.dispose]();
});
