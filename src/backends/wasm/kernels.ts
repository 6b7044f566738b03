/**
 * Picks and compiles the kernel build this host can run: with threads (shared memory, atomics) or not,
 * with relaxed SIMD where the engine validates it (it makes the int8 dot products one instruction) or
 * plain SIMD128. Modules are compiled once per process.
 * @module
 */
import { LlmError } from "../../errors.ts";
import { WASM_KERNELS } from "./kernels_wasm.ts";

/** One of the four kernel builds. */
export type KernelVariant = keyof typeof WASM_KERNELS;

const compiled = new Map<KernelVariant, Promise<WebAssembly.Module>>();
const bytesCache = new Map<KernelVariant, Uint8Array<ArrayBuffer>>();

function bytesOf(v: KernelVariant): Uint8Array<ArrayBuffer> {
  let b = bytesCache.get(v);
  if (!b) {
    const s = atob(WASM_KERNELS[v]);
    b = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
    bytesCache.set(v, b);
  }
  return b;
}

/** The kernel module and a fresh memory for it (shared when `threads`). */
export async function loadKernels(
  options: { threads: boolean; relaxed?: boolean },
): Promise<{ module: WebAssembly.Module; memory: WebAssembly.Memory; variant: KernelVariant }> {
  const mode = options.threads ? "mt" : "st";
  let variant: KernelVariant = `${mode}_relaxed`;
  if (options.relaxed === false || !WebAssembly.validate(bytesOf(variant))) variant = `${mode}_simd`;
  const bytes = bytesOf(variant);
  if (!WebAssembly.validate(bytes)) {
    throw new LlmError(
      "BACKEND_UNAVAILABLE",
      `wasm: this engine cannot run WebAssembly SIMD128${options.threads ? " with threads" : ""}`,
    );
  }
  let p = compiled.get(variant);
  if (!p) {
    p = WebAssembly.compile(bytes);
    compiled.set(variant, p);
  }
  const module = await p;
  // 32 pages (2 MiB) covers the module's stack and data; the heap grows on demand up to 4 GiB
  const memory = new WebAssembly.Memory({ initial: 32, maximum: 65536, shared: options.threads });
  return { module, memory, variant };
}
