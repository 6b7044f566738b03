/**
 * WGSL kernels that no graph op reaches yet, run directly on the WebGPU device: top-k and softmax (the
 * building blocks of sampling on the device), against plain TypeScript. Skips visibly without an adapter.
 */
import assert from "node:assert/strict";
import { type Gpu, openGpu, STORAGE } from "../src/backends/webgpu/device.ts";
import type { KernelName } from "../src/backends/webgpu/kernels.ts";
import { randn } from "./_util.ts";

const opened = await openGpu();
const gpu = "device" in opened ? opened : undefined;
if (!gpu) console.warn(`SKIP webgpu kernel tests: ${(opened as { reason: string }).reason}`);

/** Run `kernel` once over `rows` logit rows; returns the read-write buffers' contents. */
async function runKernel(
  g: Gpu,
  kernel: KernelName,
  params: Record<string, number>,
  inputs: { data: ArrayBufferView; rw?: boolean }[],
  rows: number,
): Promise<ArrayBuffer[]> {
  const d = g.device;
  const step = new Int32Array(64);
  step.set([rows, rows, 1, 1, 0, 0, 0, 1, 16, 16, 16, 16, 16, 1]);
  const stepBuf = g.buffer(step.byteLength, STORAGE, "step");
  const tok = g.buffer(64, STORAGE, "tok");
  d.queue.writeBuffer(stepBuf, 0, step);
  const bufs = inputs.map((x, i) => {
    const b = g.buffer(x.data.byteLength, STORAGE, `in${i}`);
    d.queue.writeBuffer(b, 0, x.data as ArrayBufferView<ArrayBuffer>);
    return b;
  });
  const p = g.pipeline(kernel);
  const uniform = g.params(kernel, params, kernel);
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(p.pipeline);
  pass.setBindGroup(
    0,
    d.createBindGroup({
      layout: p.layout,
      entries: [uniform, ...bufs].map((buffer, binding) => ({ binding, resource: { buffer } })),
    }),
  );
  pass.setBindGroup(
    1,
    d.createBindGroup({
      layout: g.stepLayout,
      entries: [{ binding: 0, resource: { buffer: stepBuf } }, { binding: 1, resource: { buffer: tok } }],
    }),
  );
  pass.dispatchWorkgroups(rows);
  pass.end();
  const reads = inputs.flatMap((x, i) => x.rw ? [{ src: bufs[i], size: x.data.byteLength }] : []);
  const rbs = reads.map((r) => {
    const rb = g.buffer(r.size, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "rb");
    enc.copyBufferToBuffer(r.src, 0, rb, 0, Math.ceil(r.size / 4) * 4);
    return rb;
  });
  d.queue.submit([enc.finish()]);
  const out: ArrayBuffer[] = [];
  for (const rb of rbs) {
    await rb.mapAsync(GPUMapMode.READ);
    out.push(rb.getMappedRange().slice(0));
    rb.unmap();
  }
  g.check(kernel);
  for (const b of [stepBuf, tok, uniform, ...bufs, ...rbs]) g.destroy(b);
  return out;
}

Deno.test({
  name: "webgpu topk: the k largest per row, sorted, lower index first on ties, NaN lowest",
  ignore: !gpu,
  fn: async () => {
    for (const [n, k] of [[1000, 40], [32003, 256], [7, 5], [300, 1]]) {
      const rows = 3;
      const x = randn(rows * n, n + k);
      for (let i = 0; i < n; i += 97) x[i] = 0.5; // ties
      x[n + 3] = NaN;
      x[2 * n + 1] = -Infinity;
      const [vals, ids] = await runKernel(gpu!, "topk", { n, k }, [
        { data: x },
        { data: new Float32Array(rows * k), rw: true },
        { data: new Uint32Array(rows * k), rw: true },
      ], rows);
      const gv = new Float32Array(vals), gi = new Uint32Array(ids);
      for (let r = 0; r < rows; r++) {
        const row = Array.from(
          x.subarray(r * n, (r + 1) * n),
          (v, i) => ({ v: Number.isNaN(v) ? -Infinity : v, i, nan: Number.isNaN(v) }),
        );
        row.sort((a, b) => (b.v - a.v) || (a.nan === b.nan ? a.i - b.i : a.nan ? 1 : -1));
        const want = row.slice(0, k);
        assert.deepEqual(
          [...gi.subarray(r * k, (r + 1) * k)],
          want.map((e) => e.i),
          `n ${n} k ${k} row ${r} ids`,
        );
        want.forEach((e, j) => {
          const v = gv[r * k + j];
          assert.ok(e.nan ? Number.isNaN(v) : v === e.v, `n ${n} row ${r} value ${j}: ${v} vs ${e.v}`);
        });
      }
    }
  },
});

Deno.test({
  name: "webgpu softmax: rows sum to one and match exp((x - max) / T) / sum",
  ignore: !gpu,
  fn: async () => {
    for (const [n, temperature] of [[32000, 1], [513, 0.7], [1, 2]]) {
      const rows = 2, x = randn(rows * n, n, 8);
      const [out] = await runKernel(gpu!, "softmax", { n, temperature }, [{ data: x, rw: true }], rows);
      const got = new Float32Array(out);
      for (let r = 0; r < rows; r++) {
        const row = x.subarray(r * n, (r + 1) * n);
        const mx = Math.max(...row);
        const e = Array.from(row, (v) => Math.exp((v - mx) / temperature));
        const z = e.reduce((a, b) => a + b, 0);
        let err = 0, sum = 0;
        for (let i = 0; i < n; i++) {
          err = Math.max(err, Math.abs(got[r * n + i] - e[i] / z));
          sum += got[r * n + i];
        }
        assert.ok(err < 1e-6, `n ${n} T ${temperature} row ${r}: max error ${err}`);
        assert.ok(Math.abs(sum - 1) < 1e-4, `row sum ${sum}`);
      }
    }
  },
});
