/**
 * A sampling CPU profile of another Deno process over the V8 inspector protocol (the process runs with
 * `--inspect=127.0.0.1:0` and prints its WebSocket address), and a summary of it: self time by function
 * and by source file, so a benchmark can say where a server's main thread spends its time.
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
/** A V8 `.cpuprofile` (Chrome DevTools can open it). */
export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One line of a summary: self time in milliseconds and its share of the profile. */
export interface ProfileEntry {
  name: string;
  ms: number;
  pct: number;
}

/** Areas of the serving path by source file, first match wins. */
export const AREAS: readonly [string, RegExp][] = [
  ["backend", /\/src\/(backends\/|dtype\.ts)/],
  ["scheduler", /\/src\/(engine\/(scheduler|prefix_cache)|model\/kv_cache)\.ts/],
  ["sequence+events", /\/src\/engine\/generation\.ts/],
  ["sampler", /\/src\/sample\/sampler\.ts/],
  ["stop strings", /\/src\/sample\/stop\.ts/],
  ["detokenize", /\/src\/format\/tokenizer/],
  ["metrics", /\/src\/server\/metrics\.ts/],
  ["http handler+SSE", /\/src\/server\//],
  ["engine", /\/src\/engine\//],
  ["other project code", /./],
];

/** A profiling session on one inspector WebSocket. */
export class Profiler {
  readonly #ws: WebSocket;
  #next = 1;
  readonly #pending = new Map<number, { ok(v: unknown): void; fail(e: Error): void }>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data as string);
      const p = m.id !== undefined ? this.#pending.get(m.id) : undefined;
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.error) p.fail(new Error(`inspector: ${JSON.stringify(m.error)}`));
      else p.ok(m.result);
    };
  }

  /** Connect to `ws://host:port/<id>` as printed by `deno --inspect`. */
  static async connect(url: string): Promise<Profiler> {
    const ws = new WebSocket(url);
    await new Promise<void>((ok, fail) => {
      ws.onopen = () => ok();
      ws.onerror = () => fail(new Error(`cannot connect to the inspector at ${url}`));
    });
    const p = new Profiler(ws);
    await p.#call("Profiler.enable");
    await p.#call("Profiler.setSamplingInterval", { interval: 200 }); // µs
    return p;
  }

  #call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#next++;
    return new Promise((ok, fail) => {
      this.#pending.set(id, { ok, fail });
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Start sampling. */
  async start(): Promise<void> {
    await this.#call("Profiler.start");
  }

  /** Stop sampling and return the profile. */
  async stop(): Promise<CpuProfile> {
    const r = await this.#call("Profiler.stop") as { profile: CpuProfile };
    return r.profile;
  }

  /** Close the connection. */
  close(): void {
    this.#ws.close();
  }
}

/**
 * Self time per function (`name file:line`) and per source file, largest first; `byOwner` charges each
 * sample to the innermost function of the project's own code on its stack (so runtime internals such as
 * JSON, text encoding and stream writes count for the project function that called them; samples with no
 * project frame, e.g. the HTTP server's own work, keep their leaf).
 */
export function summarize(p: CpuProfile, top = 25): {
  totalMs: number;
  idleMs: number;
  byFunction: ProfileEntry[];
  byFile: ProfileEntry[];
  byOwner: ProfileEntry[];
  /**
   * Milliseconds by section: `backend` (samples owned by src/backends/ or src/dtype.ts: model compute or,
   * on a GPU backend, its host side), `idle`, `gc`, and `host` (everything else: scheduling, sampling,
   * detokenizing, streaming, HTTP).
   */
  sections: { backend: number; host: number; gc: number; idle: number };
  /** Milliseconds by area of the code that owns the sample (see {@link AREAS}); `runtime`: no project frame. */
  byArea: Record<string, number>;
} {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const own = (url: string): boolean => /\/(src|bench|mod\.ts|cli\.ts)/.test(url) && url.startsWith("file:");
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const totalUs = p.endTime - p.startTime;
  const fn = new Map<string, number>(), file = new Map<string, number>(), owner = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, us: number): void => void m.set(k, (m.get(k) ?? 0) + us);
  const short = (f: CallFrame): string => f.url.replace(/^.*\/(src|bench|tests|ext:)/, "$1");
  const keyOf = (f: CallFrame): string =>
    `${f.functionName || "(anonymous)"} ${short(f)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
  let idle = 0;
  const sections = { backend: 0, host: 0, gc: 0, idle: 0 };
  const area = new Map<string, number>();
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    if (f.functionName === "(idle)") idle += us;
    add(fn, keyOf(f), us);
    add(file, f.url ? short(f) : f.functionName, us);
    let o: number | undefined = id;
    while (o !== undefined && !own(byId.get(o)!.callFrame.url)) o = parent.get(o);
    const of = byId.get(o ?? id)!.callFrame;
    add(owner, keyOf(of), us);
    if (f.functionName === "(idle)") sections.idle += us;
    else if (f.functionName === "(garbage collector)") sections.gc += us;
    else if (/\/src\/(backends\/|dtype\.ts)/.test(of.url)) sections.backend += us;
    else sections.host += us;
    const a = f.functionName === "(idle)" || f.functionName === "(garbage collector)"
      ? f.functionName
      : o === undefined
      ? "runtime (HTTP, streams, event loop)"
      : AREAS.find(([, re]) => re.test(of.url))![0];
    add(area, a, us);
  }
  const list = (m: Map<string, number>): ProfileEntry[] =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({
      name,
      ms: Number((us / 1000).toFixed(1)),
      pct: Number(((100 * us) / totalUs).toFixed(1)),
    }));
  return {
    totalMs: totalUs / 1000,
    idleMs: idle / 1000,
    byFunction: list(fn),
    byFile: list(file),
    byOwner: list(owner),
    byArea: Object.fromEntries(
      [...area].sort((a, b) => b[1] - a[1]).map(([k, us]) => [k, Number((us / 1000).toFixed(1))]),
    ),
    sections: {
      backend: Number((sections.backend / 1000).toFixed(1)),
      host: Number((sections.host / 1000).toFixed(1)),
      gc: Number((sections.gc / 1000).toFixed(1)),
      idle: Number((sections.idle / 1000).toFixed(1)),
    },
  };
}
