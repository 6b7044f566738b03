/**
 * The body of a wasm compute worker. It is turned into source text with `Function.prototype.toString`
 * and started from a Blob URL (threads.ts), so the same code works from the package and from the edge
 * bundle, where there is no separate worker file to load. It must therefore stay self-contained: no
 * imports, no references to anything outside the function.
 *
 * Protocol: the first message brings the module, the shared memory, this thread's stack and the control
 * block address; the worker instantiates, answers `{ ok }`, then sleeps on the control block's
 * generation word and runs `llama_ts_run` each time it changes, until the command word says quit.
 * @module
 */

/** Control block words (Int32 index from the block's start); the barrier's words follow at SYNC. */
export const CTRL = { GO: 0, CMD: 1, PROG: 2, STEP: 3, SYNC: 4, ABORT: 6, WORDS: 8 } as const;
/** CTRL.CMD values. */
export const CMD = { RUN: 1, QUIT: 2 } as const;

interface Init {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  stack: number;
  ctrl: number;
  tid: number;
  nth: number;
  go: number;
}

interface WorkerScope {
  onmessage: ((e: MessageEvent<Init>) => void) | null;
  postMessage(m: unknown): void;
  close(): void;
}

/** Runs inside the worker. Indices are literals here because the function cannot see CTRL. */
export function workerMain(): void {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = (e: MessageEvent<Init>): void => {
    scope.onmessage = null;
    const d = e.data;
    WebAssembly.instantiate(d.module, { env: { memory: d.memory } }).then((inst) => {
      (inst.exports.__stack_pointer as WebAssembly.Global).value = d.stack;
      const run = inst.exports.llama_ts_run as (...a: number[]) => number;
      const c = new Int32Array(d.memory.buffer, d.ctrl, 8);
      let seen = d.go;
      scope.postMessage({ ok: true });
      for (;;) {
        Atomics.wait(c, 0, seen);
        seen = Atomics.load(c, 0);
        if (Atomics.load(c, 1) === 2) break;
        try {
          run(c[2], c[3], d.ctrl + 16, d.tid, d.nth, 1);
        } catch (_) {
          // wake everyone blocked in a barrier; the host sees the flag and reports the failure
          Atomics.store(c, 6, 1);
          Atomics.add(c, 5, 1);
          Atomics.notify(c, 5);
        }
      }
      scope.close();
    }, (err: unknown) => scope.postMessage({ ok: false, error: String(err) }));
  };
}
