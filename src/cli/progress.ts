/**
 * Terminal progress bars for downloads and loads: pure string formatting, printed by the CLI.
 * @module
 */
import type { ProgressEvent } from "../types.ts";

/** Options for {@link progressBar}. */
export interface ProgressBarOptions {
  /** Transfer rate to show, e.g. from {@link createRateMeter}. */
  bytesPerSecond?: number;
}

const UNITS: [number, string][] = [[1e9, "GB"], [1e6, "MB"], [1e3, "kB"]];

function unitFor(n: number): [number, string] {
  for (const u of UNITS) if (n >= u[0]) return u;
  return [1, "B"];
}

function fmt(n: number, [div, unit]: [number, string]): string {
  return unit === "B" ? String(Math.round(n)) : (n / div).toFixed(1);
}

/**
 * One line of a terminal progress bar (decimal units, as the hub shows sizes). Pure formatting: the caller
 * prints it to stderr after a `\r`.
 *
 * @example
 * ```ts
 * progressBar({ phase: "download", done: 1.2e9, total: 2.7e9, label: "model.gguf" }, 20, { bytesPerSecond: 35.1e6 });
 * // "model.gguf  44% [#########           ] 1.2/2.7 GB 35.1 MB/s"
 * ```
 */
export function progressBar(e: ProgressEvent, width = 20, options: ProgressBarOptions = {}): string {
  const w = Number.isFinite(width) ? Math.max(1, Math.min(200, Math.floor(width))) : 20;
  const label = e.label ?? e.phase;
  const done = Math.max(0, e.done);
  const bps = options.bytesPerSecond;
  let rate = "";
  if (bps !== undefined && Number.isFinite(bps) && bps >= 0) {
    const u = unitFor(bps);
    rate = ` ${fmt(bps, u)} ${u[1]}/s`;
  }
  if (!(e.total > 0)) {
    const u = unitFor(done);
    return `${label}  ${fmt(done, u)} ${u[1]}${rate}`;
  }
  const frac = Math.min(1, done / e.total);
  const filled = Math.round(frac * w);
  const u = unitFor(e.total);
  const pct = String(Math.floor(frac * 100)).padStart(3);
  const bar = "#".repeat(filled) + " ".repeat(w - filled);
  return `${label} ${pct}% [${bar}] ${fmt(done, u)}/${fmt(e.total, u)} ${u[1]}${rate}`;
}

/**
 * A transfer-rate meter for {@link progressBar}: feed it every event; it returns bytes per second for that
 * event's label, averaged since the label's first event (undefined until some time has passed).
 *
 * @example
 * ```ts
 * const rate = createRateMeter();
 * const onProgress = (e: ProgressEvent) => console.error(progressBar(e, 20, { bytesPerSecond: rate(e) }));
 * ```
 */
export function createRateMeter(
  options: { now?: () => number } = {},
): (e: ProgressEvent) => number | undefined {
  const now = options.now ?? ((): number => performance.now());
  const first = new Map<string, { t: number; done: number }>();
  return (e) => {
    const key = `${e.phase}:${e.label ?? ""}`;
    const t = now();
    const f = first.get(key);
    // A resumed download starts at its old size; only bytes moved in this run count toward the rate.
    if (f === undefined || e.done < f.done) {
      first.set(key, { t, done: e.done });
      return undefined;
    }
    const dt = (t - f.t) / 1000;
    return dt > 0.05 ? (e.done - f.done) / dt : undefined;
  };
}
