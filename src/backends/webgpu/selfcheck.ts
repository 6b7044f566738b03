/**
 * The second half of the shader-f16 self-check (the first, f16_check.wgsl, runs when the device opens):
 * the f16 matmul kernels themselves, GEMV and GEMM on f16 and q8_0 weights, against f64 products
 * computed here. A wrong result turns the f16 variants off for the process.
 * @module
 */
import type { Backend } from "../../backend.ts";
import type { Gpu } from "./device.ts";
import type { StepParams } from "../../ops.ts";
import { dequantize, quantize } from "../../dtype.ts";

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Run the f16 matmul checks on `backend` (made with f16 on); sets gpu.f16Ok / gpu.f16Note. */
export async function checkF16Matmul(gpu: Gpu, backend: Backend): Promise<void> {
  const m = 40, k = 160, rows = 20;
  for (const dtype of ["f16", "q8_0"] as const) {
    const bytes = quantize(dtype, values(m * k, 7));
    const w = new Float32Array(m * k);
    dequantize(dtype, bytes, w);
    const x = values(rows * k, 11);
    const wt = backend.alloc(dtype, [m, k], "weights", "f16 check w");
    const xt = backend.alloc("f32", [rows, k], "compute", "f16 check x");
    const ot = backend.alloc("f32", [rows, m], "compute", "f16 check out");
    try {
      await backend.upload(wt, bytes);
      await backend.upload(xt, x);
      using g = backend.compile([{ op: "matmul", x: xt, w: wt, out: ot, rows: "tokens" }]);
      for (const n of [1, rows]) {
        const step: StepParams = {
          nTokens: n,
          tokens: new Int32Array(n),
          positions: new Int32Array(n),
          seqIndex: new Int32Array(n),
          blockTables: new Int32Array(1),
          maxBlocksPerSeq: 1,
          logitRows: new Int32Array(0),
        };
        await g.run(step);
        const got = new Float32Array(await backend.download(ot, { byteLength: n * m * 4 }));
        let num = 0, den = 0;
        for (let r = 0; r < n; r++) {
          for (let j = 0; j < m; j++) {
            let s = 0;
            for (let i = 0; i < k; i++) s += x[r * k + i] * w[j * k + i];
            num += (got[r * m + j] - s) ** 2;
            den += s * s;
          }
        }
        const nmse = num / den;
        if (!(nmse < 1e-5)) {
          gpu.f16Ok = false;
          gpu.f16Note = `shader-f16 self-check: ${dtype} matmul of ${n} rows has NMSE ${nmse} against f64`;
          return;
        }
      }
    } finally {
      for (const t of [wt, xt, ot]) backend.free(t);
    }
  }
}
