/**
 * Server metrics in the Prometheus text format (version 0.0.4): request and token counters, queue and
 * batch gauges, KV block use, and latency histograms (time to first token, time per output token).
 * @module
 */
import type { SchedulerStats, StepInfo } from "../engine/scheduler.ts";

class Histogram {
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative; the exposition sums them). */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Array(bounds.length).fill(0);
  }

  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]) {
        this.counts[i]++;
        return;
      }
    }
  }

  render(name: string, help: string): string {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    let cum = 0;
    this.bounds.forEach((b, i) => lines.push(`${name}_bucket{le="${b}"} ${cum += this.counts[i]}`));
    lines.push(
      `${name}_bucket{le="+Inf"} ${this.count}`,
      `${name}_sum ${this.sum}`,
      `${name}_count ${this.count}`,
    );
    return lines.join("\n");
  }
}

const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Finer buckets for the parts of one step (100 µs up). */
const STEP = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BATCH = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** Counters, gauges and histograms of one server. */
export class ServerMetrics {
  readonly #requests = new Map<string, number>();
  #promptTokens = 0;
  #cachedTokens = 0;
  #generatedTokens = 0;
  #inFlight = 0;
  #disconnects = 0;
  readonly #ttft = new Histogram(LATENCY);
  readonly #tpot = new Histogram(LATENCY);
  readonly #e2e = new Histogram(LATENCY);
  readonly #batch = new Histogram(BATCH);
  readonly #stepRows = new Histogram(BATCH);
  readonly #stepTime = new Histogram(LATENCY);
  readonly #stepBackend = new Histogram(STEP);
  readonly #stepHost = new Histogram(STEP);
  readonly #stepGap = new Histogram(STEP);
  /** Seconds by part of the step cycle: plan, backend, sample (inside a step), gap (between steps). */
  readonly #phase = { plan: 0, backend: 0, sample: 0, gap: 0 };

  /** Count a finished HTTP request. */
  request(endpoint: string, status: number): void {
    const key = `endpoint="${endpoint}",status="${status}"`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  /** A generation started (+1) or ended (-1). */
  inFlight(delta: number): void {
    this.#inFlight += delta;
  }

  /** A client went away before its generation ended. */
  disconnect(): void {
    this.#disconnects++;
  }

  /** Token counts of one finished generation. */
  tokens(prompt: number, cached: number, generated: number): void {
    this.#promptTokens += prompt;
    this.#cachedTokens += cached;
    this.#generatedTokens += generated;
  }

  /** Seconds from request arrival to the first token. */
  firstToken(seconds: number): void {
    this.#ttft.observe(seconds);
  }

  /** Seconds between consecutive tokens of one stream. */
  interToken(seconds: number): void {
    this.#tpot.observe(seconds);
  }

  /** Seconds from request arrival to its end. */
  requestDone(seconds: number): void {
    this.#e2e.observe(seconds);
  }

  /** One scheduler step. */
  step(info: StepInfo): void {
    this.#batch.observe(info.seqs);
    this.#stepRows.observe(info.rows);
    this.#stepTime.observe(info.ms / 1000);
    this.#stepBackend.observe(info.backendMs / 1000);
    this.#stepHost.observe((info.planMs + info.sampleMs) / 1000);
    if (info.gapMs > 0) this.#stepGap.observe(info.gapMs / 1000);
    const ph = this.#phase;
    ph.plan += info.planMs / 1000;
    ph.backend += info.backendMs / 1000;
    ph.sample += info.sampleMs / 1000;
    ph.gap += info.gapMs / 1000;
  }

  /**
   * The exposition text. `stats` is the scheduler's state now (absent while the model loads); `extra`
   * adds gauges from the host (process memory).
   */
  render(stats: SchedulerStats | undefined, ready: boolean, extra: Record<string, number> = {}): string {
    const out: string[] = [];
    const scalar = (name: string, type: "counter" | "gauge", help: string, value: number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
    };
    out.push(
      "# HELP llama_requests_total HTTP requests by endpoint and status.",
      "# TYPE llama_requests_total counter",
    );
    for (const [k, v] of this.#requests) out.push(`llama_requests_total{${k}} ${v}`);
    scalar("llama_ready", "gauge", "1 once the model is loaded.", ready ? 1 : 0);
    scalar(
      "llama_prompt_tokens_total",
      "counter",
      "Prompt tokens of finished generations.",
      this.#promptTokens,
    );
    scalar(
      "llama_prompt_tokens_cached_total",
      "counter",
      "Prompt tokens served from the prefix cache.",
      this.#cachedTokens,
    );
    scalar("llama_generation_tokens_total", "counter", "Generated tokens.", this.#generatedTokens);
    scalar(
      "llama_client_disconnects_total",
      "counter",
      "Generations whose client went away first.",
      this.#disconnects,
    );
    scalar("llama_requests_in_flight", "gauge", "Generations accepted and not finished.", this.#inFlight);
    if (stats) {
      scalar(
        "llama_queue_depth",
        "gauge",
        "Generations waiting for a batch slot or KV blocks.",
        stats.waiting,
      );
      scalar("llama_running_sequences", "gauge", "Sequences in the running batch.", stats.running);
      scalar("llama_kv_blocks_total", "gauge", "KV cache blocks.", stats.kvBlocksTotal);
      scalar(
        "llama_kv_blocks_in_use",
        "gauge",
        "KV cache blocks held by running sequences.",
        stats.kvBlocksUsed,
      );
      scalar(
        "llama_kv_blocks_cached",
        "gauge",
        "KV blocks held only by the prefix cache.",
        stats.kvBlocksCached,
      );
      scalar("llama_steps_total", "counter", "Batched decoder steps run.", stats.steps);
      scalar(
        "llama_prefix_cache_hits_total",
        "counter",
        "Prompt blocks reused from the prefix cache.",
        stats.prefixHits,
      );
    }
    for (const [name, v] of Object.entries(extra)) scalar(name, "gauge", "Host runtime gauge.", v);
    out.push(this.#batch.render("llama_batch_size", "Sequences per decoder step."));
    out.push(this.#stepRows.render("llama_step_tokens", "Token rows per decoder step."));
    out.push(this.#stepTime.render("llama_step_seconds", "Wall time of a decoder step, sampling included."));
    out.push(
      this.#stepBackend.render(
        "llama_step_backend_seconds",
        "Time of a decoder step inside the backend: the compiled step's run and its read-back.",
      ),
    );
    out.push(
      this.#stepHost.render(
        "llama_step_host_seconds",
        "Host time of a decoder step outside the backend: planning, sampling, detokenizing, queuing events.",
      ),
    );
    out.push(
      this.#stepGap.render(
        "llama_step_gap_seconds",
        "Host time between consecutive steps of a busy period: streaming to clients, HTTP, admissions.",
      ),
    );
    out.push(
      "# HELP llama_step_phase_seconds_total Time of the step cycle by phase: plan, backend, sample " +
        "(inside a step), gap (between steps while sequences run).",
      "# TYPE llama_step_phase_seconds_total counter",
    );
    for (const [k, v] of Object.entries(this.#phase)) {
      out.push(`llama_step_phase_seconds_total{phase="${k}"} ${v}`);
    }
    out.push(this.#ttft.render("llama_time_to_first_token_seconds", "Request arrival to first token."));
    out.push(this.#tpot.render("llama_time_per_output_token_seconds", "Time between consecutive tokens."));
    out.push(this.#e2e.render("llama_request_duration_seconds", "Request arrival to last token."));
    return out.join("\n") + "\n";
  }
}
