/**
 * Worker threads for the wasm backend: N-1 workers plus the calling thread run every step together on
 * one shared WebAssembly.Memory. Workers start from a Blob URL made from `workerMain`'s source, so they
 * need no separate file (and work inside a bundle). A step is one notify; the runtime's barriers keep the
 * threads in lockstep; the calling thread returns when the last op is done.
 * @module
 */
import { LlmError } from "../../errors.ts";
import { CMD, CTRL, workerMain } from "./worker_main.ts";

/** Whether this host can run wasm threads (shared memory, Workers, Atomics). */
export function threadsAvailable(): string | undefined {
  if (typeof SharedArrayBuffer === "undefined") return "SharedArrayBuffer is not available";
  if (typeof Worker === "undefined") return "Workers are not available";
  if (typeof Atomics === "undefined") return "Atomics is not available";
  if (typeof Blob === "undefined" || typeof URL?.createObjectURL !== "function") {
    return "Blob URLs are not available";
  }
  return undefined;
}

/** Whether this thread may block in Atomics.wait (Deno's main thread may; a browser's may not). */
export function mainCanWait(): boolean {
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

let workerUrl: string | undefined;

function workerSource(): string {
  return workerUrl ??= URL.createObjectURL(
    new Blob([`(${workerMain.toString()})();\n`], { type: "text/javascript" }),
  );
}

/** A running pool of workers bound to one memory and control block. */
export class ThreadPool implements Disposable {
  readonly threads: number;
  #workers: Worker[];
  #ctrl: Int32Array;
  #ctrlPtr: number;

  private constructor(workers: Worker[], ctrl: Int32Array, ctrlPtr: number) {
    this.#workers = workers;
    this.threads = workers.length + 1;
    this.#ctrl = ctrl;
    this.#ctrlPtr = ctrlPtr;
  }

  /** Start `threads - 1` workers; `stacks[i]` is the top of worker i's stack in the shared memory. */
  static async start(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    options: { threads: number; ctrlPtr: number; stacks: readonly number[] },
  ): Promise<ThreadPool> {
    const ctrl = new Int32Array(memory.buffer, options.ctrlPtr, CTRL.WORDS);
    ctrl.fill(0);
    const workers: Worker[] = [];
    try {
      const ready: Promise<void>[] = [];
      for (let i = 1; i < options.threads; i++) {
        const w = new Worker(workerSource(), { type: "module", name: `llama-ts-wasm-${i}` });
        workers.push(w);
        ready.push(
          new Promise<void>((resolve, reject) => {
            w.onmessage = (e: MessageEvent<{ ok: boolean; error?: string }>) =>
              e.data.ok ? resolve() : reject(new Error(e.data.error));
            w.onerror = (e: ErrorEvent) => {
              e.preventDefault();
              reject(new Error(e.message));
            };
          }),
        );
        w.postMessage({
          module,
          memory,
          stack: options.stacks[i - 1],
          ctrl: options.ctrlPtr,
          tid: i,
          nth: options.threads,
          go: 0,
        });
      }
      await Promise.all(ready);
    } catch (e) {
      for (const w of workers) w.terminate();
      throw new LlmError(
        "BACKEND_UNAVAILABLE",
        `wasm: starting worker threads failed: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    return new ThreadPool(workers, ctrl, options.ctrlPtr);
  }

  /** Address of the barrier words the runtime uses. */
  get syncPtr(): number {
    return this.#ctrlPtr + CTRL.SYNC * 4;
  }

  /** Run one step on every thread; `runMain` runs the calling thread's share and returns when all are done. */
  run(prog: number, step: number, runMain: () => void): void {
    const c = this.#ctrl;
    c[CTRL.PROG] = prog;
    c[CTRL.STEP] = step;
    Atomics.store(c, CTRL.CMD, CMD.RUN);
    Atomics.add(c, CTRL.GO, 1);
    Atomics.notify(c, CTRL.GO);
    try {
      runMain();
    } catch (e) {
      Atomics.store(c, CTRL.ABORT, 1);
      Atomics.notify(c, CTRL.SYNC + 1);
      throw e;
    }
    if (Atomics.load(c, CTRL.ABORT)) {
      throw new LlmError("INTERNAL", "wasm: a worker thread failed during the step; the backend is unusable");
    }
  }

  [Symbol.dispose](): void {
    const c = this.#ctrl;
    Atomics.store(c, CTRL.CMD, CMD.QUIT);
    Atomics.add(c, CTRL.GO, 1);
    Atomics.notify(c, CTRL.GO);
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
  }
}
