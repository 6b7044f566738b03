/**
 * Backend iteration for parity tests (kept apart from _util.ts so format tests need not load mod.ts).
 * @module
 */
import type { Backend } from "../src/backend.ts";
import { pickBackend, registeredBackends } from "../mod.ts";
import { createWebGpuBackend, webGpuInfo } from "../src/backends/webgpu/webgpu.ts";

/**
 * Run `fn` once per backend that can run on this machine (ref always). Backends that cannot run here
 * are reported with a visible SKIP line. Where WebGPU uses its f16 kernel variants, it runs a second
 * time with the f32 variants only ("webgpu-f32"), so both are checked.
 */
export async function forEachBackend(fn: (b: Backend) => Promise<void>): Promise<void> {
  const runs: { name: string; make: () => Promise<Backend> }[] = registeredBackends().map((name) => ({
    name,
    make: () => pickBackend(name),
  }));
  if (registeredBackends().includes("webgpu")) {
    runs.push({
      name: "webgpu-f32",
      make: async () => {
        const info = await webGpuInfo();
        if (!info.available) throw new Error(info.reason);
        if (!info.f16) throw new Error(`the f16 variants are off (${info.f16Note}); webgpu ran the f32 ones`);
        return await createWebGpuBackend({ f16: false });
      },
    });
  }
  for (const { name, make } of runs) {
    let b: Backend;
    try {
      b = await make();
    } catch (e) {
      console.warn(`SKIP backend ${name}: ${(e as Error).message}`);
      continue;
    }
    try {
      await fn(b);
    } catch (e) {
      throw new Error(`backend ${name}: ${(e as Error).message}`, { cause: e });
    } finally {
      b[Symbol.dispose]();
    }
  }
}
