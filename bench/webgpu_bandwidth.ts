/**
 * What this machine's WebGPU can do, measured with timestamp queries (device time, not host time):
 * - read bandwidth of bench/wgsl/read_bandwidth.wgsl over a large buffer, sweeping workgroup size,
 *   words per thread and grid size; the best is the roofline decode is measured against;
 * - the cost of one dispatch inside a compute pass (bench/wgsl/empty.wgsl, 1000 in a row);
 * - read bandwidth per dispatch size (the decode GEMVs read 17-90 MB each): with the best layout, a pass
 *   of dispatches that each read another window of the buffer (so the GPU's cache holds none of it),
 *   for windows of 4 MiB to 256 MiB: what the boundaries between dispatches cost at a GEMV's size;
 * - the host round trip of a submit plus mapAsync (Deno 2.9.6 sleeps ~10 ms in every mapAsync).
 *
 *   deno run -A bench/webgpu_bandwidth.ts [--mib 1024] [--json out.json]
 */
import { parseArgs } from "node:util";

const { values: f } = parseArgs({
  args: Deno.args,
  options: { mib: { type: "string" }, json: { type: "string" } },
});

const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
if (!adapter) {
  console.log(JSON.stringify({ error: "no WebGPU adapter" }));
  Deno.exit(0);
}
if (!adapter.features.has("timestamp-query")) {
  console.log(JSON.stringify({ error: "the adapter has no timestamp-query" }));
  Deno.exit(0);
}
const device = await adapter.requestDevice({
  requiredFeatures: ["timestamp-query"],
  requiredLimits: {
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  },
});
const dir = new URL("./wgsl/", import.meta.url);
const readCode = await Deno.readTextFile(new URL("read_bandwidth.wgsl", dir));
const emptyCode = await Deno.readTextFile(new URL("empty.wgsl", dir));

const maxBind = device.limits.maxStorageBufferBindingSize;
const bytes = Math.min(Number(f.mib ?? 1024) * 2 ** 20, Math.floor(maxBind / 16) * 16);
const words = bytes / 16;
const src = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
// touch every page once so the first timed pass does not pay for it
{
  const chunk = new Uint8Array(Math.min(bytes, 64 << 20)).fill(7);
  for (let o = 0; o < bytes; o += chunk.byteLength) {
    device.queue.writeBuffer(src, o, chunk, 0, Math.min(chunk.byteLength, bytes - o));
  }
}
const sink = device.createBuffer({ size: 64 << 20, usage: GPUBufferUsage.STORAGE });
const qs = device.createQuerySet({ type: "timestamp", count: 2 });
const resolve = device.createBuffer({
  size: 16,
  usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
});
const rb = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

/** Device time of one timed pass that `record` fills with dispatches, in microseconds. */
async function timed(record: (pass: GPUComputePassEncoder) => void): Promise<number> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass({
    timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
  });
  record(pass);
  pass.end();
  enc.resolveQuerySet(qs, 0, 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, rb, 0, 16);
  device.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(rb.getMappedRange().slice(0));
  rb.unmap();
  return Number(t[1] - t[0]) / 1000;
}

/** Device time of one pass of `reps` dispatches, in microseconds. */
function timePass(
  pipeline: GPUComputePipeline,
  bg: GPUBindGroup,
  grid: [number, number],
  reps: number,
): Promise<number> {
  return timed((pass) => {
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(grid[0], grid[1]);
  });
}

const readModule = device.createShaderModule({ code: readCode });
const results: { wg: number; unroll: number; groups: number; gbps: number }[] = [];
for (const wg of [128, 256, 512]) {
  for (const unroll of [1, 2, 4, 8]) {
    const pipeline = device.createComputePipeline({
      layout: "auto",
      compute: { module: readModule, entryPoint: "main", constants: { WG: wg, UNROLL: unroll } },
    });
    const full = Math.ceil(words / (wg * unroll));
    for (const groups of [...new Set([1024, 4096, 16384, full].map((g) => Math.min(g, full)))]) {
      const x = Math.min(groups, 65535), y = Math.ceil(groups / x);
      const params = device.createBuffer({
        size: 16,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(params, 0, Uint32Array.of(words, x * y * wg * unroll, 0, 0));
      const bg = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: src } },
          { binding: 1, resource: { buffer: sink } },
          { binding: 2, resource: { buffer: params } },
        ],
      });
      await timePass(pipeline, bg, [x, y], 2); // warm-up
      const us = await timePass(pipeline, bg, [x, y], 10);
      results.push({ wg, unroll, groups: x * y, gbps: (bytes * 10) / (us * 1e3) });
    }
  }
}
results.sort((a, b) => b.gbps - a.gbps);

const empty = device.createComputePipeline({
  layout: "auto",
  compute: { module: device.createShaderModule({ code: emptyCode }), entryPoint: "main" },
});
const ebg = device.createBindGroup({
  layout: empty.getBindGroupLayout(0),
  entries: [{ binding: 0, resource: { buffer: sink } }],
});
await timePass(empty, ebg, [1, 1], 100);
const dispatchUs = (await timePass(empty, ebg, [1, 1], 1000)) / 1000;

// bandwidth by bytes per dispatch: each dispatch of the pass reads the next window of the buffer
const ladder: { mib: number; dispatches: number; usPerDispatch: number; gbps: number }[] = [];
{
  const b = results[0];
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module: readModule, entryPoint: "main", constants: { WG: b.wg, UNROLL: b.unroll } },
  });
  for (const mib of [4, 8, 16, 32, 64, 128, 256]) {
    const win = mib * 2 ** 20;
    if (win * 2 > bytes) break;
    const nWin = Math.floor(bytes / win);
    const n = Math.max(nWin, 16);
    const w = win / 16;
    const groups = Math.ceil(w / (b.wg * b.unroll));
    const x = Math.min(groups, 65535), y = Math.ceil(groups / x);
    const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(params, 0, Uint32Array.of(w, x * y * b.wg * b.unroll, 0, 0));
    const bgs = Array.from({ length: nWin }, (_, i) =>
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: src, offset: i * win, size: win } },
          { binding: 1, resource: { buffer: sink } },
          { binding: 2, resource: { buffer: params } },
        ],
      }));
    const time = (): Promise<number> =>
      timed((pass) => {
        pass.setPipeline(pipeline);
        for (let r = 0; r < n; r++) {
          pass.setBindGroup(0, bgs[r % nWin]);
          pass.dispatchWorkgroups(x, y);
        }
      });
    await time();
    const us = Math.min(await time(), await time()) / n;
    ladder.push({ mib, dispatches: n, usPerDispatch: us, gbps: win / (us * 1e3) });
  }
}

// host round trip: an empty submit then a 4-byte map
const rt: number[] = [];
for (let i = 0; i < 5; i++) {
  const t0 = performance.now();
  device.queue.submit([device.createCommandEncoder().finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  rb.unmap();
  rt.push(performance.now() - t0);
}

const info = adapter.info;
const report = {
  date: new Date().toISOString(),
  adapter: info.description || `${info.vendor} ${info.device}`,
  runtime: `deno ${Deno.version.deno}`,
  bufferMiB: bytes / 2 ** 20,
  bestReadGBps: results[0].gbps,
  best: results[0],
  top5: results.slice(0, 5),
  emptyDispatchUs: dispatchUs,
  bytesPerDispatch: ladder,
  mapRoundTripMs: Math.min(...rt),
};
console.log(JSON.stringify(report, null, 2));
if (f.json) await Deno.writeTextFile(f.json, JSON.stringify(report, null, 2));
