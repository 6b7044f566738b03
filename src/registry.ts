/**
 * The backend registry. Backends register themselves (their module calls `registerBackend`);
 * `pickBackend` chooses by probe score or by name.
 * @module
 */
import type { BackendName } from "./types.ts";
import {
  type Backend,
  BACKEND_API_VERSION,
  type BackendFactory,
  type BackendOptions,
  type OpFeature,
} from "./backend.ts";
import { LlmError } from "./errors.ts";

const factories = new Map<BackendName, BackendFactory>();

/** Names a user may ask for. */
export const BACKEND_CHOICES: readonly (BackendName | "auto")[] = ["auto", "ref", "wasm", "webgpu", "cuda"];

/**
 * Register a backend factory (a backend module calls this when imported). Throws BACKEND_UNAVAILABLE
 * when the factory's `apiVersion` is not the core's; a factory with the same name replaces the old one.
 *
 * @example
 * ```ts ignore
 * import { registerBackend } from "@llama-ts/llama";
 * import { myBackendFactory } from "./my_backend.ts"; // your BackendFactory implementation
 * registerBackend(myBackendFactory);
 * ```
 */
export function registerBackend(f: BackendFactory): void {
  if (f.apiVersion !== BACKEND_API_VERSION) {
    throw new LlmError(
      "BACKEND_UNAVAILABLE",
      `backend ${f.name} speaks contract version ${f.apiVersion}, this core speaks ${BACKEND_API_VERSION}; ` +
        `update the backend and the core together`,
    );
  }
  factories.set(f.name, f);
}

/**
 * Names of the registered backends. Importing the package registers `ref`.
 *
 * @example
 * ```ts
 * import { registeredBackends } from "@llama-ts/llama";
 * console.log(registeredBackends()); // e.g. ["ref"]
 * ```
 */
export function registeredBackends(): BackendName[] {
  return [...factories.keys()];
}

/** Registered backends whose factory declares an optional op variant (for "use one of these" messages). */
export function backendsWithFeature(feature: OpFeature): BackendName[] {
  return [...factories.values()].filter((f) => f.opFeatures?.includes(feature)).map((f) => f.name);
}

/**
 * Create a backend: a name picks it (BACKEND_UNAVAILABLE with the probe's reason when it cannot run
 * here); "auto" takes the highest probe score.
 *
 * @example
 * ```ts
 * import { pickBackend } from "@llama-ts/llama";
 * using backend = await pickBackend("auto");
 * console.log(backend.name);
 * ```
 */
export async function pickBackend(
  prefer: BackendName | "auto" = "auto",
  options?: BackendOptions,
): Promise<Backend> {
  if (!BACKEND_CHOICES.includes(prefer)) {
    throw new LlmError(
      "BAD_REQUEST",
      `unknown backend "${prefer}"; choose one of ${BACKEND_CHOICES.join(", ")}`,
    );
  }
  if (prefer !== "auto") {
    const f = factories.get(prefer);
    if (!f) {
      throw new LlmError(
        "BACKEND_UNAVAILABLE",
        `backend ${prefer} is not part of this build (registered: ${
          registeredBackends().join(", ") || "none"
        })`,
      );
    }
    const p = await f.probe(options);
    if (p.score <= 0) {
      throw new LlmError(
        "BACKEND_UNAVAILABLE",
        `backend ${prefer} cannot run here: ${p.reason ?? "probe failed"}`,
      );
    }
    return await f.create(options);
  }
  const scored: { f: BackendFactory; score: number; reason?: string }[] = [];
  for (const f of factories.values()) scored.push({ f, ...(await f.probe(options)) });
  scored.sort((a, b) => b.score - a.score);
  const best = scored.find((s) => s.score > 0);
  if (!best) {
    const why = scored.map((s) => `${s.f.name}: ${s.reason ?? "unavailable"}`).join("; ");
    throw new LlmError("BACKEND_UNAVAILABLE", `no backend can run here (${why || "none registered"})`);
  }
  return await best.f.create(options);
}
