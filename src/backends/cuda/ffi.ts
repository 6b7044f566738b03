/**
 * The CUDA library's FFI binding: the one symbol table (checked against kernels/cuda/llama_ts_cuda.h by
 * tests/cuda_test.ts), library discovery, the ABI handshake, and status codes turned into LlmErrors.
 * @module
 */
import { LlmError, type LlmErrorCode } from "../../errors.ts";

/** Must equal LLAMA_TS_CUDA_ABI_VERSION in llama_ts_cuda.h. */
export const CUDA_ABI_VERSION = 5;

/** LLAMA_TS_QUEUE_SLOTS of llama_ts_cuda.h: steps a program may have queued. */
export const CUDA_QUEUE_SLOTS = 4;

/** The C ABI, one entry per exported function of llama_ts_cuda.h. */
export const SYMBOLS = {
  llama_ts_abi_version: { parameters: [], result: "i32" },
  llama_ts_error_message: { parameters: ["buffer", "i32"], result: "i32" },
  llama_ts_device_init: { parameters: ["i32", "buffer", "buffer", "buffer"], result: "i32" },
  llama_ts_mem_alloc: { parameters: ["u64", "buffer"], result: "i32" },
  llama_ts_mem_free: { parameters: ["u64"], result: "i32" },
  llama_ts_mem_info: { parameters: ["buffer"], result: "i32" },
  llama_ts_mem_upload: { parameters: ["u64", "buffer", "u64"], result: "i32", nonblocking: true },
  llama_ts_mem_download: { parameters: ["buffer", "u64", "u64"], result: "i32", nonblocking: true },
  llama_ts_synchronize: { parameters: [], result: "i32", nonblocking: true },
  llama_ts_weight_prepare: { parameters: ["buffer"], result: "i32", nonblocking: true },
  llama_ts_program_create: { parameters: ["buffer", "i32", "buffer", "buffer"], result: "i32" },
  llama_ts_program_run: {
    parameters: ["u64", "buffer", "i32", "buffer", "u64"],
    result: "i32",
    nonblocking: true,
  },
  // synchronous: it only queues (the first step of a shape also captures its graph, a few ms)
  llama_ts_program_queue: { parameters: ["u64", "buffer", "i32", "i32", "i32"], result: "i32" },
  llama_ts_program_take: { parameters: ["u64", "i32", "buffer", "u64"], result: "i32", nonblocking: true },
  llama_ts_program_destroy: { parameters: ["u64"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's functions. */
export type CudaLib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const STATUS: Record<number, [LlmErrorCode, string]> = {
  [-1]: ["INTERNAL", "CUDA error"],
  [-2]: ["BACKEND_UNAVAILABLE", "no CUDA device"],
  [-3]: ["OUT_OF_MEMORY", "out of device memory"],
  [-4]: ["INTERNAL", "invalid argument"],
  [-5]: ["UNSUPPORTED_DTYPE", "unsupported by the CUDA kernels"],
};

/** Throw an LlmError for a non-zero status, with the library's own message. */
export function check(lib: CudaLib, status: number, what: string): void {
  if (status === 0) return;
  const buf = new Uint8Array(1024);
  lib.llama_ts_error_message(buf, buf.length);
  const msg = new TextDecoder().decode(buf.subarray(0, buf.indexOf(0) < 0 ? buf.length : buf.indexOf(0)));
  const [code, kind] = STATUS[status] ?? ["INTERNAL", `status ${status}`];
  throw new LlmError(code, `cuda ${what}: ${kind}: ${msg}`);
}

/** Where the library is looked for when no path is given. */
export function defaultLibraryPath(): string {
  return new URL("../../../build/libllama_ts_cuda.so", import.meta.url).pathname;
}

const HOW_TO_BUILD = "build it with `deno task build:cuda` (needs nvcc) or pass its path with --cuda-lib";

/** Open the library and check its ABI version. Throws BACKEND_UNAVAILABLE saying how to build it. */
export function openLibrary(path = defaultLibraryPath()): { lib: CudaLib; close(): void } {
  let dl: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    dl = Deno.dlopen(path, SYMBOLS);
  } catch (e) {
    const why = e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied
      ? "FFI permission denied: run deno with --allow-ffi"
      : `cannot load ${path} (${(e as Error).message})`;
    throw new LlmError("BACKEND_UNAVAILABLE", `cuda: ${why}; ${HOW_TO_BUILD}`, { cause: e });
  }
  const v = dl.symbols.llama_ts_abi_version();
  if (v !== CUDA_ABI_VERSION) {
    dl.close();
    throw new LlmError(
      "BACKEND_UNAVAILABLE",
      `cuda: ${path} speaks ABI ${v}, this code speaks ${CUDA_ABI_VERSION}; rebuild it with \`deno task build:cuda\``,
    );
  }
  return { lib: dl.symbols, close: () => dl.close() };
}
