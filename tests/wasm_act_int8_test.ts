/**
 * The wasm backend's int8-activation matmul (SmoothQuant W8A8) beyond tests/quant_ops_test.ts: every row
 * count from 1 to 9 (the 4/2/1 tiles), 1, 2 and 3 threads, the plain-SIMD and relaxed builds, against ref;
 * a row's bits do not depend on the row or thread count; a weight-only matmul after a W8A8 one over the
 * same x does not reuse its int8 rows; and a whole W8A8 model against ref.
 */
import assert from "node:assert/strict";
import type { Backend } from "../src/backend.ts";
import type { Op } from "../src/ops.ts";
import type { DType } from "../src/types.ts";
import type { ModelFile } from "../src/format/model_file.ts";
import { quantize } from "../src/dtype.ts";
import { Engine, pickBackend } from "../mod.ts";
import { createWasmBackend } from "../src/backends/wasm/wasm.ts";
import { nmse, NMSE_TOLERANCE, randn, rowsStep } from "./_util.ts";
import { synthWeights, TINY_CONFIG } from "./_synth.ts";
import { blockQuantModel, placeholderTokenizer } from "./_memory_model.ts";

const K = 256, M = 37, ROWS = 9;

function inputs(dtype: DType): { x: Float32Array; w: Uint8Array } {
  const x = randn(ROWS * K, 21, 1.5);
  x[4 * K + 100] = -60; // an outlier channel in row 4
  x.fill(0, 6 * K, 7 * K); // an all-zero row
  // row 7: scale 1, so x * inv is x: halves (0.5, 2.5, -3.5, ...) round away from zero, not to even
  for (let i = 0; i < K; i++) x[7 * K + i] = i === 0 ? 127 : (i % 9) - 3.5;
  return { x, w: quantize(dtype, randn(M * K, 22, 0.2)) };
}

/** out rows of `x @ w^T` with int8 activations for each row count 1..ROWS (one compiled graph). */
async function runAll(b: Backend, dtype: DType, x: Float32Array, w: Uint8Array): Promise<Float32Array[]> {
  const tx = b.alloc("f32", [ROWS, K], "compute", "x"), tw = b.alloc(dtype, [M, K], "weights", "w");
  const to = b.alloc("f32", [ROWS, M], "compute", "out");
  await b.upload(tx, x);
  await b.upload(tw, w);
  using g = b.compile([{ op: "matmul", x: tx, w: tw, out: to, rows: "tokens", actQuant: "int8" }]);
  const outs: Float32Array[] = [];
  for (let n = 1; n <= ROWS; n++) {
    await b.upload(to, new Float32Array(ROWS * M).fill(NaN));
    await g.run(rowsStep(n));
    await b.synchronize();
    outs.push(new Float32Array(await b.download(to)).slice(0, n * M));
  }
  return outs;
}

for (const dtype of ["q8_0", "q4_0"] as DType[]) {
  Deno.test(`wasm: ${dtype} with int8 activations matches ref for 1..9 rows, 1-3 threads, both builds`, async () => {
    const { x, w } = inputs(dtype);
    using ref = await pickBackend("ref");
    const want = await runAll(ref, dtype, x, w);
    const bits = new Map<boolean, Float32Array[]>();
    for (const [threads, relaxed] of [[1, true], [2, true], [3, true], [1, false], [3, false]] as const) {
      using b = await createWasmBackend({ threads }, { relaxed });
      assert.ok(b.caps.opFeatures?.includes("matmul_act_int8"));
      const got = await runAll(b, dtype, x, w);
      for (let n = 1; n <= ROWS; n++) {
        const e = nmse(got[n - 1], want[n - 1]);
        assert.ok(e < 1e-12, `${threads} threads, relaxed ${relaxed}, ${n} rows: nmse ${e}`);
        assert.ok(got[n - 1].subarray(6 * M, 7 * M).every((v) => v === 0), "zero row");
        // row r computes the same whatever tile (4, 2 or 1 rows) it fell in
        assert.deepEqual(got[n - 1], got[ROWS - 1].subarray(0, n * M), `${n} rows vs ${ROWS}`);
      }
      const first = bits.get(relaxed);
      if (first) assert.deepEqual(got, first, `${threads} threads differ from 1 (relaxed ${relaxed})`);
      else bits.set(relaxed, got);
    }
  });
}

Deno.test("wasm: a weight-only q8_0 matmul after a W8A8 one over the same x quantizes x its own way", async () => {
  const { x, w } = inputs("q8_0");
  const outs: Float32Array[][] = [];
  for (const name of ["ref", "wasm"] as const) {
    using b = name === "ref" ? await pickBackend("ref") : await createWasmBackend({ threads: 2 });
    const tx = b.alloc("f32", [ROWS, K], "compute", "x"), tw = b.alloc("q8_0", [M, K], "weights", "w");
    const o1 = b.alloc("f32", [ROWS, M], "compute", "o1"), o2 = b.alloc("f32", [ROWS, M], "compute", "o2");
    const o3 = b.alloc("f32", [ROWS, M], "compute", "o3");
    await b.upload(tx, x);
    await b.upload(tw, w);
    const graph: Op[] = [
      { op: "matmul", x: tx, w: tw, out: o1, rows: "tokens", actQuant: "int8" },
      { op: "matmul", x: tx, w: tw, out: o2, rows: "tokens" },
      { op: "matmul", x: tx, w: tw, out: o3, rows: "tokens", actQuant: "int8" },
    ];
    using g = b.compile(graph);
    await g.run(rowsStep(5));
    const got: Float32Array[] = [];
    for (const t of [o1, o2, o3]) got.push(new Float32Array(await b.download(t)).slice(0, 5 * M));
    outs.push(got);
  }
  const [ref, wasm] = outs;
  assert.ok(nmse(wasm[0], ref[0]) < 1e-12);
  assert.ok(nmse(wasm[1], ref[1]) < NMSE_TOLERANCE.q8_0, `weight-only ${nmse(wasm[1], ref[1])}`);
  assert.ok(nmse(wasm[1], ref[0]) > 1e-7, "the weight-only matmul must not see int8 activations");
  assert.deepEqual(wasm[2], wasm[0]);
});

Deno.test("wasm: refuses int8 activations over float weights", async () => {
  using b = await createWasmBackend({ threads: 1 });
  const x = b.alloc("f32", [2, 64], "compute"), w = b.alloc("f32", [4, 64], "weights");
  const o = b.alloc("f32", [2, 4], "compute");
  const op: Op = { op: "matmul", x, w, out: o, rows: "tokens", actQuant: "int8" };
  assert.equal(b.supportsOp(op), false);
  assert.throws(() => b.compile([op]), /int8 activations need q8_0 or q4_0/);
});

/**
 * A W8A8 model in memory: `dtype` matrices where rows are whole 32-blocks, activationQuant set. The LM
 * head stays f32: it is a weight-only matmul, which wasm runs with its own (7-bit, per 32-block)
 * activation quantization where ref multiplies floats, so only the W8A8 matmuls differ from ref.
 */
function w8a8Model(dtype: DType): ModelFile {
  const config = { ...TINY_CONFIG, hiddenDim: 192, activationQuant: "int8" as const };
  return blockQuantModel(config, synthWeights(config, 5), { dtype, floatHead: true });
}

const tok = placeholderTokenizer(512);
const IDS = [1, 5, 9, 200, 17, 300, 42, 7, 99, 450, 3];

for (const dtype of ["q8_0", "q4_0"] as DType[]) {
  Deno.test(`wasm: a ${dtype} W8A8 model's logits match ref's, identical on 1 and 2 threads`, async () => {
    const logits = async (backend: "ref" | Backend): Promise<Float32Array> => {
      using e = await Engine.create(w8a8Model(dtype), tok, { backend, maxStepTokens: 8 });
      return Float32Array.from((await e.logitsFor(IDS)).flatMap((r) => [...r]));
    };
    const want = await logits("ref");
    const runs: Float32Array[] = [];
    for (const threads of [1, 2]) {
      using b = await createWasmBackend({ threads });
      runs.push(await logits(b));
    }
    const e = nmse(runs[0], want);
    assert.ok(e < 1e-9, `nmse ${e}`);
    assert.deepEqual(runs[1], runs[0]);
  });
}
