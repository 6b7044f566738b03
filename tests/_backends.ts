/**
 * Backend iteration for parity tests (kept apart from _util.ts so format tests need not load mod.ts).
 * @module
 */
import type { Backend } from "../src/backend.ts";
import { pickBackend, registeredBackends } from "../mod.ts";

/**
 * Run `fn` once per backend that can run on this machine (ref always). Backends that cannot run here
 * are reported with a visible SKIP line.
 */
export async function forEachBackend(fn: (b: Backend) => Promise<void>): Promise<void> {
  for (const name of registeredBackends()) {
    let b: Backend;
    try {
      b = await pickBackend(name);
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
