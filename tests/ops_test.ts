/**
 * Op parity: every op on every available backend against naive computations written here, on seeded
 * random inputs, with NaN/Inf checks and one NMSE bound per weight dtype (tests/_util.ts).
 */
import assert from "node:assert/strict";
import type { Backend } from "../src/backend.ts";
import type { Tensor } from "../src/tensor.ts";
import type { DType } from "../src/types.ts";
import type { KvLayer, Op, StepParams } from "../src/ops.ts";
import { dequantize, quantize, roundF16 } from "../src/dtype.ts";
import { nmse, NMSE_TOLERANCE, randn } from "./_util.ts";
import { forEachBackend } from "./_backends.ts";

async function put(
  b: Backend,
  dtype: DType,
  shape: number[],
  data: Float32Array,
  label = "t",
): Promise<Tensor> {
  const t = b.alloc(dtype, shape, dtype === "f32" && label !== "w" ? "compute" : "weights", label);
  await b.upload(t, quantize(dtype, data));
  return t;
}

async function get(b: Backend, t: Tensor, n?: number): Promise<Float32Array> {
  const f = new Float32Array(await b.download(t));
  return n === undefined ? f : f.subarray(0, n);
}

function step(nTokens: number, positions: number[], extra: Partial<StepParams> = {}): StepParams {
  return {
    nTokens,
    tokens: new Int32Array(nTokens),
    positions: Int32Array.from(positions),
    seqIndex: new Int32Array(nTokens),
    blockTables: Int32Array.of(0, 1, 2, 3),
    maxBlocksPerSeq: 4,
    logitRows: new Int32Array(0),
    ...extra,
  };
}

async function run(b: Backend, ops: Op[], s: StepParams): Promise<void> {
  using g = b.compile(ops);
  await g.run(s);
  await b.synchronize();
}

function finite(a: Float32Array, what: string): void {
  for (const v of a) assert.ok(Number.isFinite(v), `${what}: non-finite output ${v}`);
}

const WEIGHT_DTYPES: DType[] = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k", "q6_k"];

/** Random bytes that form valid blocks for k-quants (whose reference quantizer we do not have). */
function weightBytes(dtype: DType, n: number, seed: number): { bytes: Uint8Array; values: Float32Array } {
  let bytes: Uint8Array;
  if (dtype === "q4_k" || dtype === "q6_k") {
    const per = dtype === "q4_k" ? 144 : 210;
    bytes = new Uint8Array((n / 256) * per);
    const r = randn(bytes.length, seed);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor((r[i] + 1) * 128) & 0xff;
    // keep the f16 super-block scales small and finite
    const dv = new DataView(bytes.buffer);
    for (let blk = 0; blk < n / 256; blk++) {
      const at = dtype === "q4_k" ? [blk * per, blk * per + 2] : [blk * per + 208];
      for (const o of at) dv.setUint16(o, 0x2000 + (blk & 0xff), true);
    }
  } else {
    bytes = quantize(dtype, randn(n, seed, 0.5));
  }
  const values = new Float32Array(n);
  dequantize(dtype, bytes, values);
  return { bytes, values };
}

for (const dtype of WEIGHT_DTYPES) {
  // 5 rows: a decode-sized step (GPU backends: GEMV); 20 rows: a prefill-sized one (GEMM)
  Deno.test(`matmul ${dtype} matches a naive matmul`, async () => {
    const k = dtype.endsWith("_k") ? 512 : 96, m = 37;
    const { bytes, values } = weightBytes(dtype, m * k, 11);
    const x = randn(24 * k, 12);
    const want = new Float32Array(24 * m);
    for (let r = 0; r < 24; r++) {
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let i = 0; i < k; i++) s += x[r * k + i] * values[j * k + i];
        want[r * m + j] = s;
      }
    }
    await forEachBackend(async (b) => {
      if (!b.caps.weightDTypes.includes(dtype)) return console.warn(`SKIP ${b.name}: no ${dtype} weights`);
      const w = b.alloc(dtype, [m, k], "weights", "w");
      await b.upload(w, bytes);
      const xt = await put(b, "f32", [24, k], x);
      const out = b.alloc("f32", [24, m], "compute", "out");
      for (const rows of [5, 20]) {
        const pos = Array.from({ length: rows }, (_, i) => i);
        await run(b, [{ op: "matmul", x: xt, w, out, rows: "tokens" }], step(rows, pos));
        const got = await get(b, out, rows * m);
        finite(got, `${b.name} matmul ${dtype}`);
        const e = nmse(got, want.subarray(0, rows * m));
        const tol = b.name === "ref" ? 1e-12 : NMSE_TOLERANCE[dtype];
        assert.ok(e < tol, `${b.name} ${dtype} ${rows} rows nmse ${e}`);
      }
    });
  });

  Deno.test(`embed ${dtype} gathers dequantized rows`, async () => {
    const dim = dtype.endsWith("_k") ? 256 : 64, vocab = 10;
    const { bytes, values } = weightBytes(dtype, vocab * dim, 21);
    const ids = [3, 0, 9, 3];
    await forEachBackend(async (b) => {
      if (!b.caps.weightDTypes.includes(dtype)) return;
      const table = b.alloc(dtype, [vocab, dim], "weights", "table");
      await b.upload(table, bytes);
      const out = b.alloc("f32", [4, dim], "compute", "out");
      await run(b, [{ op: "embed", table, out }], step(4, [0, 1, 2, 3], { tokens: Int32Array.from(ids) }));
      const got = await get(b, out);
      ids.forEach((id, r) => {
        assert.deepEqual([...got.subarray(r * dim, (r + 1) * dim)], [
          ...values.subarray(id * dim, (id + 1) * dim),
        ]);
      });
    });
  });
}

// Sizes that are not multiples of the SIMD width or of kernel tiles: k % 4 != 0 for float weights,
// m % 4 != 0 (column tails), an odd row count (row-tile tails).
for (const [dtype, k] of [["f32", 37], ["f16", 61], ["bf16", 5], ["q8_0", 160], ["q4_0", 96]] as const) {
  Deno.test(`matmul ${dtype} on odd shapes (k ${k}, m 13, 7 rows)`, async () => {
    const m = 13, rows = 7;
    const { bytes, values } = weightBytes(dtype, m * k, 71);
    const x = randn(rows * k, 72);
    const want = new Float32Array(rows * m);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let i = 0; i < k; i++) s += x[r * k + i] * values[j * k + i];
        want[r * m + j] = s;
      }
    }
    await forEachBackend(async (b) => {
      const w = b.alloc(dtype, [m, k], "weights", "w");
      await b.upload(w, bytes);
      const xt = await put(b, "f32", [rows, k], x);
      const out = b.alloc("f32", [rows, m], "compute", "out");
      await run(b, [{ op: "matmul", x: xt, w, out, rows: "tokens" }], step(rows, [0, 1, 2, 3, 4, 5, 6]));
      const got = await get(b, out);
      finite(got, `${b.name} matmul ${dtype}`);
      const e = nmse(got, want);
      assert.ok(e < (b.name === "ref" ? 1e-12 : NMSE_TOLERANCE[dtype]), `${b.name} ${dtype} nmse ${e}`);
    });
  });
}

// One row of x (decode: the GPU backends' one-row GEMV path) with k long enough that each thread walks
// several 16-byte chunks of a row, so the next chunk's weights and group scales are loaded ahead of use
for (const dtype of ["q8_0", "q4_0", "f16"] as const) {
  Deno.test(`matmul ${dtype}, one row of x, k 2304 (several chunks per thread) matches a naive matmul`, async () => {
    const k = 2304, m = 37;
    const { bytes, values } = weightBytes(dtype, m * k, 81);
    const x = randn(k, 82);
    const want = new Float32Array(m);
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += x[i] * values[j * k + i];
      want[j] = s;
    }
    await forEachBackend(async (b) => {
      const w = b.alloc(dtype, [m, k], "weights", "w");
      await b.upload(w, bytes);
      const xt = await put(b, "f32", [1, k], x);
      const out = b.alloc("f32", [1, m], "compute", "out");
      await run(b, [{ op: "matmul", x: xt, w, out, rows: "tokens" }], step(1, [0]));
      const got = await get(b, out);
      finite(got, `${b.name} matmul ${dtype}`);
      const e = nmse(got, want);
      assert.ok(e < (b.name === "ref" ? 1e-12 : NMSE_TOLERANCE[dtype]), `${b.name} ${dtype} nmse ${e}`);
    });
  });
}

Deno.test("embed rejects token ids outside the vocabulary", async () => {
  await forEachBackend(async (b) => {
    const table = await put(b, "f32", [4, 8], randn(32, 1), "w");
    const out = b.alloc("f32", [1, 8], "compute", "out");
    await assert.rejects(
      run(b, [{ op: "embed", table, out }], step(1, [0], { tokens: Int32Array.of(4) })),
      /outside the vocabulary/,
    );
  });
});

Deno.test("rms_norm matches the formula", async () => {
  const n = 50, rows = 3, eps = 1e-5;
  const x = randn(rows * n, 31, 3), w = randn(n, 32);
  const want = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * n, (r + 1) * n);
    const rms = Math.sqrt(row.reduce((s, v) => s + v * v, 0) / n + eps);
    for (let i = 0; i < n; i++) want[r * n + i] = (row[i] / rms) * w[i];
  }
  await forEachBackend(async (b) => {
    const xt = await put(b, "f32", [rows, n], x), wt = await put(b, "f32", [n], w, "w");
    const out = b.alloc("f32", [rows, n], "compute", "out");
    await run(b, [{ op: "rms_norm", x: xt, weight: wt, out, eps, rows: "tokens" }], step(rows, [0, 1, 2]));
    assert.ok(nmse(await get(b, out), want) < 1e-10);
  });
});

for (const style of ["interleaved", "half"] as const) {
  Deno.test(`rope ${style} rotates each pair by pos * invFreq`, async () => {
    const heads = 3, hd = 8, rows = 2, pos = [5, 17];
    const x = randn(rows * heads * hd, 41);
    const inv = Float32Array.from({ length: hd / 2 }, (_, j) => 10000 ** (-2 * j / hd));
    const want = x.slice();
    for (let r = 0; r < rows; r++) {
      for (let h = 0; h < heads; h++) {
        for (let j = 0; j < hd / 2; j++) {
          const base = (r * heads + h) * hd;
          const [a, c] = style === "interleaved"
            ? [base + 2 * j, base + 2 * j + 1]
            : [base + j, base + j + hd / 2];
          const th = pos[r] * inv[j];
          // (x_a + i x_c) * e^{i th}
          want[a] = x[a] * Math.cos(th) - x[c] * Math.sin(th);
          want[c] = x[a] * Math.sin(th) + x[c] * Math.cos(th);
        }
      }
    }
    await forEachBackend(async (b) => {
      const xt = await put(b, "f32", [rows, heads * hd], x), it = await put(b, "f32", [hd / 2], inv, "w");
      await run(b, [{ op: "rope", x: xt, nHeads: heads, headDim: hd, style, invFreq: it }], step(rows, pos));
      assert.ok(nmse(await get(b, xt), want) < 1e-10);
    });
  });
}

/** Host model of the int8 KV cache: per (row, kv head) symmetric scale max|x|/127, round half away from zero. */
function roundKvI8(x: Float32Array, hd: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let o = 0; o < x.length; o += hd) {
    let amax = 0;
    for (let i = 0; i < hd; i++) amax = Math.max(amax, Math.abs(x[o + i]));
    const scale = Math.fround(amax / 127), inv = scale > 0 ? Math.fround(1 / scale) : 0;
    for (let i = 0; i < hd; i++) {
      const v = Math.fround(x[o + i] * inv);
      out[o + i] = Math.sign(v) * Math.min(127, Math.round(Math.abs(v))) * scale;
    }
  }
  return out;
}

// headDim 8 and 32: backends may take other paths where headDim is a multiple of 16 (wasm's p*v)
for (const [kvDtype, hd] of (["f32", "f16", "i8"] as const).flatMap((d) => [[d, 8], [d, 32]] as const)) {
  Deno.test(`kv_write + attention (GQA, paged, ${kvDtype} cache, headDim ${hd}) match naive causal attention`, async () => {
    const nHeads = 4, nKvHeads = 2, kd = nKvHeads * hd, qd = nHeads * hd, blockSize = 4;
    // one sequence of 7 tokens over shuffled physical blocks; prefill 5 then decode 2 one at a time
    const blockTables = Int32Array.of(2, 0, 3, 1);
    const total = 7;
    const q = randn(total * qd, 51), k = randn(total * kd, 52), v = randn(total * kd, 53);
    const round = (x: Float32Array): Float32Array =>
      kvDtype === "f16" ? x.map(roundF16) : kvDtype === "i8" ? roundKvI8(x, hd) : x;
    const kq = round(k), vq = round(v);
    const want = new Float32Array(total * qd);
    for (let p = 0; p < total; p++) {
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / (nHeads / nKvHeads));
        const s = Array.from({ length: p + 1 }, (_, t) => {
          let d = 0;
          for (let i = 0; i < hd; i++) d += q[p * qd + h * hd + i] * kq[t * kd + kvh * hd + i];
          return d / Math.sqrt(hd);
        });
        const mx = Math.max(...s), e = s.map((z) => Math.exp(z - mx)), z = e.reduce((a, c) => a + c, 0);
        for (let i = 0; i < hd; i++) {
          want[p * qd + h * hd + i] = e.reduce((acc, w, t) => acc + (w / z) * vq[t * kd + kvh * hd + i], 0);
        }
      }
    }
    await forEachBackend(async (b) => {
      if (!b.caps.kvDTypes.includes(kvDtype)) return;
      const scales = kvDtype === "i8"
        ? {
          kScale: b.alloc("f32", [16, nKvHeads], "kv", "ks"),
          vScale: b.alloc("f32", [16, nKvHeads], "kv", "vs"),
        }
        : {};
      const cache: KvLayer = {
        k: b.alloc(kvDtype, [16, kd], "kv", "ck"),
        v: b.alloc(kvDtype, [16, kd], "kv", "cv"),
        ...scales,
        blockSize,
      };
      const got = new Float32Array(total * qd);
      const chunks = [[0, 5], [5, 6], [6, 7]];
      for (const [s0, s1] of chunks) {
        const n = s1 - s0;
        const qt = await put(b, "f32", [5, qd], padTo(q.subarray(s0 * qd, s1 * qd), 5 * qd));
        const kt = await put(b, "f32", [5, kd], padTo(k.subarray(s0 * kd, s1 * kd), 5 * kd));
        const vt = await put(b, "f32", [5, kd], padTo(v.subarray(s0 * kd, s1 * kd), 5 * kd));
        const out = b.alloc("f32", [5, qd], "compute", "out");
        const pos = Array.from({ length: n }, (_, i) => s0 + i);
        await run(b, [
          { op: "kv_write", k: kt, v: vt, cache },
          { op: "attention", q: qt, cache, out, nHeads, nKvHeads, headDim: hd, scale: 1 / Math.sqrt(hd) },
        ], step(n, pos, { blockTables, maxBlocksPerSeq: 4 }));
        got.set(await get(b, out, n * qd), s0 * qd);
      }
      finite(got, `${b.name} attention`);
      const e = nmse(got, want);
      // i8: the expected values use the same quantized cache, so only rounding-order noise remains
      assert.ok(e < (kvDtype === "f32" ? 1e-10 : 1e-6), `${b.name} ${kvDtype} attention nmse ${e}`);
    });
  });
}

Deno.test("attention over a 40-row step mixing three sequences matches naive causal attention", async () => {
  const nHeads = 4, nKvHeads = 2, hd = 8, kd = nKvHeads * hd, qd = nHeads * hd, blockSize = 4;
  // rows: seq 0 positions 0..15, seq 1 positions 0..11, seq 2 positions 3..14 (0..2 cached earlier)
  const rowsOf = [[0, 0, 16], [1, 0, 12], [2, 3, 15]] as const;
  const tables = Int32Array.of(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
  const seqs: { seq: number; pos: number }[] = [];
  for (const [seq, from, to] of rowsOf) for (let p = from; p < to; p++) seqs.push({ seq, pos: p });
  const n = seqs.length, total = 3 * 16;
  // keys/values per (seq, pos); q per row
  const k = randn(total * kd, 71), v = randn(total * kd, 72), q = randn(n * qd, 73);
  const kv = (t: Float32Array, seq: number, pos: number, i: number): number => t[(seq * 16 + pos) * kd + i];
  const want = new Float32Array(n * qd);
  seqs.forEach(({ seq, pos }, r) => {
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / 2);
      const s = Array.from({ length: pos + 1 }, (_, t) => {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[r * qd + h * hd + i] * kv(k, seq, t, kvh * hd + i);
        return d / Math.sqrt(hd);
      });
      const mx = Math.max(...s), e = s.map((z) => Math.exp(z - mx)), z = e.reduce((a, c) => a + c, 0);
      for (let i = 0; i < hd; i++) {
        want[r * qd + h * hd + i] = e.reduce((acc, w, t) => acc + (w / z) * kv(v, seq, t, kvh * hd + i), 0);
      }
    }
  });
  await forEachBackend(async (b) => {
    const cache: KvLayer = {
      k: b.alloc("f32", [48, kd], "kv", "ck"),
      v: b.alloc("f32", [48, kd], "kv", "cv"),
      blockSize,
    };
    const base = { blockTables: tables, maxBlocksPerSeq: 4 };
    // seq 2's first three positions are cached by an earlier step
    const early = [0, 1, 2].map((p) => ({ seq: 2, pos: p }));
    const stepOf = (rows: { seq: number; pos: number }[]): StepParams =>
      step(rows.length, rows.map((r) => r.pos), {
        ...base,
        seqIndex: Int32Array.from(rows.map((r) => r.seq)),
      });
    const kvRows = (rows: { seq: number; pos: number }[], t: Float32Array): Float32Array => {
      const out = new Float32Array(40 * kd);
      rows.forEach(({ seq, pos }, i) =>
        out.set(t.subarray((seq * 16 + pos) * kd, (seq * 16 + pos + 1) * kd), i * kd)
      );
      return out;
    };
    const kt = await put(b, "f32", [40, kd], kvRows(early, k)),
      vt = await put(b, "f32", [40, kd], kvRows(early, v));
    await run(b, [{ op: "kv_write", k: kt, v: vt, cache }], stepOf(early));
    const k2 = await put(b, "f32", [40, kd], kvRows(seqs, k)),
      v2 = await put(b, "f32", [40, kd], kvRows(seqs, v));
    const qt = await put(b, "f32", [40, qd], padTo(q, 40 * qd));
    const out = b.alloc("f32", [40, qd], "compute", "out");
    await run(b, [
      { op: "kv_write", k: k2, v: v2, cache },
      { op: "attention", q: qt, cache, out, nHeads, nKvHeads, headDim: hd, scale: 1 / Math.sqrt(hd) },
    ], stepOf(seqs));
    const got = await get(b, out, n * qd);
    finite(got, `${b.name} attention`);
    const e = nmse(got, want);
    assert.ok(e < 1e-10, `${b.name} mixed-sequence attention nmse ${e}`);
  });
});

function padTo(a: Float32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  out.set(a);
  return out;
}

Deno.test("argmax: lowest index on ties, -1 for a row with NaN, odd widths", async () => {
  for (const n of [1, 7, 1000, 32003]) {
    const rows = 3, x = randn(rows * n, 60 + n);
    x[n + (n >> 1)] = 50; // row 1: a tie between two maxima
    x[n + n - 1] = 50;
    x[2 * n + (n >> 2)] = NaN; // row 2: NaN
    const want = [0, 1, 2].map((r) => {
      const row = x.subarray(r * n, (r + 1) * n);
      if (row.some(Number.isNaN)) return -1;
      return row.indexOf(Math.max(...row));
    });
    await forEachBackend(async (b) => {
      const xt = await put(b, "f32", [rows, n], x);
      const out = b.alloc("i32", [rows], "compute", "ids");
      const op = { op: "argmax", x: xt, out } as const;
      if (!b.supportsOp(op)) return;
      const logitRows = Int32Array.of(0, 1, 2);
      await run(b, [op], { ...step(1, [0]), logitRows });
      assert.deepEqual([...new Int32Array(await b.download(out))], want, `${b.name} argmax n=${n}`);
    });
  }
});

Deno.test("add, silu_mul and gather_rows", async () => {
  const n = 33, rows = 3;
  const a = randn(rows * n, 61), c = randn(rows * n, 62);
  await forEachBackend(async (b) => {
    const at = await put(b, "f32", [rows, n], a), ct = await put(b, "f32", [rows, n], c);
    const sum = b.alloc("f32", [rows, n], "compute", "sum"), sm = b.alloc("f32", [rows, n], "compute", "sm");
    const gat = b.alloc("f32", [2, n], "compute", "g");
    await run(b, [
      { op: "add", a: at, b: ct, out: sum, rows: "tokens" },
      { op: "silu_mul", gate: at, up: ct, out: sm },
      { op: "gather_rows", x: at, out: gat },
    ], step(rows, [0, 1, 2], { logitRows: Int32Array.of(2, 0) }));
    assert.ok(nmse(await get(b, sum), a.map((x, i) => x + c[i])) < 1e-12);
    assert.ok(nmse(await get(b, sm), a.map((x, i) => (x / (1 + Math.exp(-x))) * c[i])) < 1e-12);
    const g = await get(b, gat);
    assert.deepEqual([...g.subarray(0, n)], [...a.subarray(2 * n, 3 * n)]);
    assert.deepEqual([...g.subarray(n)], [...a.subarray(0, n)]);
  });
});
