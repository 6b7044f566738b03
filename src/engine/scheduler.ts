/**
 * In-flight batching. Many sequences share one compiled decoder step: between steps the scheduler retires
 * finished and cancelled sequences, admits waiting ones (FIFO, while batch slots and KV blocks allow), then
 * packs one step with a decode row for every generating sequence and fills the rest of the step's rows with
 * prompt chunks (chunked prefill, so a long prompt never starves the decode rows). Each sequence has its own
 * block table into the shared paged KV cache; full prompt blocks are offered to a prefix cache so a later
 * prompt with the same prefix skips their prefill.
 *
 * KV admission is by reservation: a sequence is admitted only when the blocks its prompt plus `maxTokens`
 * can need are free (or held only by the prefix cache), so a running sequence never waits for memory and
 * nothing is ever preempted; blocks are taken as the sequence grows and given back when it ends.
 * @module
 */
import type { Backend, CompiledGraph } from "../backend.ts";
import type { StepParams } from "../ops.ts";
import type { Tensor } from "../tensor.ts";
import type { KvCache } from "../model/kv_cache.ts";
import type { LlamaGraph } from "../model/llama.ts";
import { LlmError } from "../errors.ts";
import { PICK_ALL_NEG_INF, PICK_PARAMS } from "../sample/pick.ts";
import { PrefixCache } from "./prefix_cache.ts";
import { type FinishReason, type GenerationHandle, Sequence, type SequenceSpec } from "./generation.ts";

/** Scheduler limits. */
export interface SchedulerOptions {
  /** Most sequences in flight at once (and logit rows per step). */
  readonly maxBatch: number;
  /** Most prompt tokens one sequence adds per step. */
  readonly prefillChunk: number;
  /** Context length of one sequence, in tokens. */
  readonly contextSize: number;
  /** Most sequences waiting for a slot; more are refused with OVERLOADED. Default: unbounded. */
  readonly maxQueue?: number;
  /** Reuse full prompt blocks across sequences with the same prefix. Default false. */
  readonly prefixCache?: boolean;
}

/** One step as the scheduler saw it (for metrics). */
export interface StepInfo {
  /** Rows in the step. */
  readonly rows: number;
  /** Sequences in the step. */
  readonly seqs: number;
  /** Decode rows (one per generating sequence). */
  readonly decodeRows: number;
  /** Prompt rows. */
  readonly prefillRows: number;
  /** Wall time of the step, sampling included, in milliseconds. */
  readonly ms: number;
  /**
   * Of `ms`, the time inside the backend: the compiled step's run and the read-back of its logits or ids
   * (on a GPU backend, device time plus launch and copy overheads).
   */
  readonly backendMs: number;
  /** Of `ms`, host time before the backend run: planning rows, block tables, step arrays. */
  readonly planMs: number;
  /** Of `ms`, host time after the backend run: sampling, detokenizing, stop strings, queuing events. */
  readonly sampleMs: number;
  /**
   * Host time between the end of the previous step and the start of this one while sequences were running
   * (event-loop work: streaming the tokens to clients, HTTP, admissions); 0 for the first step of a busy
   * period.
   */
  readonly gapMs: number;
}

/** A snapshot of the scheduler's state. */
export interface SchedulerStats {
  /** Sequences waiting for admission. */
  readonly waiting: number;
  /** Sequences admitted and not finished. */
  readonly running: number;
  /** KV blocks in all. */
  readonly kvBlocksTotal: number;
  /** KV blocks held by running sequences. */
  readonly kvBlocksUsed: number;
  /** KV blocks held only by the prefix cache (reusable, evicted when needed). */
  readonly kvBlocksCached: number;
  /** Steps run so far. */
  readonly steps: number;
  /** Prompt blocks reused from the prefix cache so far. */
  readonly prefixHits: number;
}

/** What the scheduler runs on. */
export interface SchedulerParts {
  readonly backend: Backend;
  readonly kv: KvCache;
  readonly graph: LlamaGraph;
  readonly compiled: CompiledGraph;
  readonly vocabSize: number;
  /**
   * The same step with a device argmax, or a device `sample` op (`sampling`), over the logit rows
   * (backends that have one): rows whose choice needs no host work (greedy without penalties; with
   * `sampling`, any sampler without penalties) take their id from it, so such a step reads back one id
   * per row instead of the logits, and a mixed step reads back the ids and only the host rows' logits.
   */
  readonly greedy?: { readonly ids: Tensor; readonly sampling: boolean; compiled(): CompiledGraph };
}

const now = (): number => performance.now();

/** The error for an id the device argmax / sample op gave that is no token (src/sample/pick.ts codes). */
function badDeviceId(id: number): LlmError {
  const why = id === PICK_ALL_NEG_INF ? "every logit is -Infinity" : "the logits hold NaN";
  return new LlmError(
    "INTERNAL",
    `device sampling returned ${id}: ${why}; the model or backend kernel produced invalid numbers (try the ref backend to compare)`,
  );
}

/** Runs many sequences through one compiled step. */
export class Scheduler {
  readonly options: Required<SchedulerOptions>;
  /** Called after every step (metrics). */
  onStep: ((info: StepInfo) => void) | undefined;
  readonly #p: SchedulerParts;
  readonly #prefix: PrefixCache;
  readonly #waiting: Sequence[] = [];
  readonly #running: Sequence[] = [];
  readonly #maxBlocksPerSeq: number;
  #busy = false;
  #closed = false;
  #steps = 0;
  /** When the last step of the current busy period ended (0: none yet). */
  #lastStepEnd = 0;
  #idle: (() => void)[] = [];
  // Step inputs, allocated once (block tables grow to the most sequences a step has had).
  readonly #tokens: Int32Array;
  readonly #positions: Int32Array;
  readonly #rowSeq: Int32Array;
  readonly #logitRows: Int32Array;
  readonly #sampling: Float64Array;
  #tables = new Int32Array(0);

  constructor(parts: SchedulerParts, options: SchedulerOptions) {
    this.#p = parts;
    this.options = { maxQueue: Infinity, prefixCache: false, ...options };
    this.#prefix = new PrefixCache(parts.kv);
    this.#maxBlocksPerSeq = Math.ceil(options.contextSize / parts.kv.blockSize);
    const T = parts.graph.maxTokens;
    this.#tokens = new Int32Array(T);
    this.#positions = new Int32Array(T);
    this.#rowSeq = new Int32Array(T);
    this.#logitRows = new Int32Array(parts.graph.maxLogitRows);
    this.#sampling = new Float64Array(parts.graph.maxLogitRows * PICK_PARAMS);
    if (parts.graph.maxLogitRows < options.maxBatch || parts.graph.maxTokens < options.maxBatch) {
      throw new LlmError(
        "INTERNAL",
        `graph rows ${parts.graph.maxTokens} below the batch ${options.maxBatch}`,
      );
    }
  }

  /** Block-table width every step passes (the context's blocks). */
  get maxBlocksPerSeq(): number {
    return this.#maxBlocksPerSeq;
  }

  /** Current queue, batch and KV use. */
  stats(): SchedulerStats {
    const total = this.#p.kv.nBlocks, cached = this.#prefix.evictable;
    return {
      waiting: this.#waiting.length,
      running: this.#running.length,
      kvBlocksTotal: total,
      kvBlocksUsed: total - this.#p.kv.freeBlocks - cached,
      kvBlocksCached: cached,
      steps: this.#steps,
      prefixHits: this.#prefix.hits,
    };
  }

  /**
   * Queue a sequence. Throws OVERLOADED when the queue is full and CONTEXT_OVERFLOW when the sequence could
   * never fit the KV cache. The sequence starts at the next step boundary.
   */
  submit(spec: SequenceSpec): GenerationHandle {
    if (this.#closed) throw new LlmError("ABORTED", "the engine was disposed; create a new one");
    if (this.#waiting.length >= this.options.maxQueue) {
      throw new LlmError(
        "OVERLOADED",
        `${this.#waiting.length} requests are already waiting (queue limit ${this.options.maxQueue}); retry shortly`,
      );
    }
    const need = this.#blocksFor(spec);
    if (need > this.#p.kv.nBlocks) {
      throw new LlmError(
        "CONTEXT_OVERFLOW",
        `the request needs ${need} KV blocks but the cache has ${this.#p.kv.nBlocks}; lower max tokens or raise the KV capacity`,
      );
    }
    const seq = new Sequence(spec, now());
    seq.events.onReturn = () => this.#cancel(seq);
    this.#waiting.push(seq);
    this.#kick();
    return {
      events: seq.events,
      promptTokens: seq.promptLen,
      drain: () => seq.events.dropPending(),
      cancel: () => this.#cancel(seq),
    };
  }

  /** Stop every sequence and refuse new ones; `then` runs once no step is in flight. */
  close(then: () => void): void {
    this.#closed = true;
    for (const s of [...this.#waiting, ...this.#running]) s.cancelled = true;
    if (!this.#busy) {
      this.#reap();
      then();
    } else this.#idle.push(then);
  }

  #blocksFor(spec: SequenceSpec): number {
    const total = spec.onLogits
      ? spec.promptIds.length
      : Math.min(spec.promptIds.length + spec.maxTokens, this.options.contextSize);
    return Math.ceil(total / this.#p.kv.blockSize);
  }

  #cancel(seq: Sequence): void {
    if (seq.state === "done" || seq.cancelled) return;
    seq.cancelled = true;
    seq.dropUndelivered();
    if (seq.state === "waiting") {
      this.#waiting.splice(this.#waiting.indexOf(seq), 1);
      seq.finish("abort", now());
    }
    // a running sequence is retired at the next step boundary
  }

  #kick(): void {
    if (this.#busy || this.#closed) return;
    this.#busy = true;
    // start on a fresh task so submit() returns first and several submissions share the first step
    setTimeout(() => this.#loop(), 0);
  }

  async #loop(): Promise<void> {
    // A backend that computes on the calling thread (ref) resolves every step at once, so the loop would
    // be one long chain of microtasks that starves I/O (HTTP streams, new requests) until all sequences
    // end. One message-port round trip per step is a full event-loop turn (timers are clamped to ~1 ms+).
    const channel = new MessageChannel();
    let wake: (() => void) | undefined;
    channel.port1.onmessage = () => wake?.();
    const immediate = (globalThis as { setImmediate?: (f: () => void) => unknown }).setImmediate;
    const yieldToEvents = (): Promise<void> =>
      new Promise<void>((r) => {
        if (immediate) return void immediate(r);
        wake = r;
        channel.port2.postMessage(0);
      });
    try {
      while (!this.#closed) {
        this.#reap();
        this.#admit();
        if (this.#running.length === 0) break;
        if (!(await this.#burst())) await this.#step();
        await yieldToEvents();
      }
    } finally {
      channel.port1.close();
      channel.port2.close();
      this.#lastStepEnd = 0;
      this.#reap();
      this.#busy = false;
      for (const f of this.#idle.splice(0)) f();
      if (!this.#closed && this.#waiting.length) this.#kick();
    }
  }

  /** Retire cancelled sequences: free their blocks, end their streams. */
  #reap(): void {
    for (const s of this.#running.filter((s) => s.cancelled)) this.#retire(s, "abort");
    if (this.#closed) {
      for (const s of this.#waiting.splice(0)) s.finish("abort", now());
    }
  }

  #retire(s: Sequence, reason: FinishReason | Error): void {
    this.#running.splice(this.#running.indexOf(s), 1);
    this.#p.kv.release(s.blocks);
    s.blocks.length = 0;
    s.reserveLeft = 0;
    if (reason instanceof Error) s.fail(reason);
    else s.finish(reason, now());
  }

  /** Admit waiting sequences in order while a batch slot and their reserved blocks are available. */
  #admit(): void {
    const kv = this.#p.kv, bs = kv.blockSize;
    while (this.#waiting.length && this.#running.length < this.options.maxBatch) {
      const s = this.#waiting[0];
      const usePrefix = this.options.prefixCache && s.spec.prefixCache !== false && !s.spec.onLogits;
      // reuse only blocks wholly before the last prompt token: that token's row must run to give logits
      const shared = usePrefix
        ? this.#prefix.match(s.spec.promptIds, Math.floor((s.promptLen - 1) / bs))
        : [];
      const need = this.#blocksFor(s.spec) - shared.length;
      let promised = 0;
      for (const r of this.#running) promised += r.reserveLeft;
      if (kv.freeBlocks + this.#prefix.evictable - promised < need) {
        kv.release(shared);
        return; // FIFO: wait for blocks rather than let later, smaller requests overtake forever
      }
      this.#waiting.shift();
      s.blocks.push(...shared);
      s.computed = s.cachedTokens = shared.length * bs;
      s.prefixParent = shared.length ? shared[shared.length - 1] : -1;
      s.prefixOffered = shared.length;
      s.reserveLeft = need;
      s.state = "running";
      s.admittedAt = now();
      this.#running.push(s);
    }
  }

  /** Take blocks so `s` can hold `total` tokens (within its reservation). */
  #grow(s: Sequence, total: number): void {
    const kv = this.#p.kv;
    const n = Math.ceil(total / kv.blockSize) - s.blocks.length;
    if (n <= 0) return;
    if (kv.freeBlocks < n) this.#prefix.evict(n - kv.freeBlocks);
    s.blocks.push(...kv.allocBlocks(n));
    s.reserveLeft = Math.max(0, s.reserveLeft - n);
  }

  /**
   * Whether a logit row of `s` needs only its id from the device (plain greedy, no token wanted, or, with
   * a device `sample` op, sampling without penalties), so the step can skip reading its logits back.
   */
  #idOnly(s: Sequence): boolean {
    if (s.spec.onLogits) return false;
    if (s.spec.maxTokens === 0 || s.spec.sampler?.isPlainGreedy === true) return true;
    return this.#p.greedy?.sampling === true && s.spec.sampler?.canPickOnDevice === true;
  }

  /**
   * Decoding queued on the device, for backends whose compiled greedy graph has `decodeGreedy` (WebGPU:
   * every read back waits ~10 ms in Deno, so one step per read would cap decoding near 90 tok/s). When
   * every running sequence is generating with plain greedy sampling, or (with a device `sample` op) with
   * any sampler without penalties, and none waits, decode steps run back to back, each step's tokens the
   * device's choice of the step before, and the ids come back in batches. Sampled rows get each step's
   * uniform ahead of time by peeking their sampler's RNG, and only the steps whose tokens are kept use
   * their draws up, so a burst cut short leaves every RNG where step-by-step decoding would: the same
   * seed gives the same text either way. The burst stops at the first sequence's length limit, when a
   * sequence stops, or when a request arrives or one is cancelled. Returns false when it does not apply.
   */
  async #burst(): Promise<boolean> {
    const g = this.#p.greedy, seqs = [...this.#running], ctx = this.options.contextSize;
    if (!g || this.#waiting.length || seqs.length === 0) return false;
    const queued = (s: Sequence): boolean =>
      s.spec.sampler?.isPlainGreedy === true || (g.sampling && s.spec.sampler?.canPickOnDevice === true);
    if (seqs.some((s) => !s.prefilled || s.cancelled || s.spec.onLogits || !queued(s))) return false;
    const n = Math.min(
      ...seqs.map((s) => Math.min(s.spec.maxTokens - s.generated.length, ctx - s.tokens.length)),
    );
    const compiled = n >= 2 ? g.compiled() : undefined;
    if (!compiled?.decodeGreedy) return false;
    const W = this.#maxBlocksPerSeq, V = this.#p.vocabSize;
    const base = seqs.map((s) => s.computed); // each row's input token position
    // sampled rows: draws kept so far in this burst (step i's uniform is the (i - kept)-th peeked one)
    const draws = seqs.map((s) => s.spec.sampler!.options.temperature > 0);
    const kept = seqs.map(() => 0);
    const sampling = (i: number): Float64Array | undefined => {
      if (!draws.some((d) => d)) return undefined;
      const sp = new Float64Array(seqs.length * PICK_PARAMS);
      seqs.forEach((s, r) => s.spec.sampler!.devicePick(sp, r * PICK_PARAMS, { ahead: i - kept[r] }));
      return sp;
    };
    const stepAt = (i: number): StepParams => {
      const tables = new Int32Array(seqs.length * W).fill(-1);
      seqs.forEach((s, r) => {
        this.#grow(s, base[r] + i + 1);
        tables.set(s.blocks, r * W);
      });
      return {
        nTokens: seqs.length,
        tokens: Int32Array.from(seqs, (s, r) => s.tokens[base[r]]), // read by the first step only
        positions: Int32Array.from(base, (b) => b + i),
        seqIndex: Int32Array.from(seqs, (_, r) => r),
        blockTables: tables,
        maxBlocksPerSeq: W,
        logitRows: Int32Array.from(seqs, (_, r) => r),
        sampling: sampling(i),
      };
    };
    const finished = new Map<Sequence, FinishReason | Error>();
    let steps = 0, t = now();
    try {
      const ids = compiled.decodeGreedy({ first: stepAt(0), next: (i) => (i < n ? stepAt(i) : undefined) });
      for await (const row of ids) {
        const tIds = now();
        steps++;
        seqs.forEach((s, r) => {
          if (finished.has(s) || s.cancelled) return;
          s.computed = base[r] + steps;
          const id = row[r];
          if (!(id >= 0 && id < V)) {
            finished.set(s, badDeviceId(id));
            return;
          }
          if (draws[r]) {
            s.spec.sampler!.commitUniforms(1);
            kept[r]++;
          }
          const reason = s.accept(id, ctx);
          if (reason) finished.set(s, reason);
        });
        this.#steps++;
        const t1 = now();
        // queued steps are planned ahead (next) and their ids arrive in batches: the wait is backend time
        this.onStep?.({
          rows: seqs.length,
          seqs: seqs.length,
          decodeRows: seqs.length,
          prefillRows: 0,
          ms: t1 - t,
          backendMs: tIds - t,
          planMs: 0,
          sampleMs: t1 - tIds,
          gapMs: 0,
        });
        t = t1;
        this.#lastStepEnd = t1;
        const active = seqs.filter((s) => !finished.has(s) && !s.cancelled);
        if (active.length < seqs.length || this.#waiting.length) break;
      }
    } catch (e) {
      for (const s of seqs) {
        if (!finished.has(s)) finished.set(s, e instanceof Error ? e : new Error(String(e)));
      }
    }
    for (const [s, reason] of finished) if (s.state === "running") this.#retire(s, reason);
    return true;
  }

  /** Plan, run and sample one step. */
  async #step(): Promise<void> {
    const t0 = now();
    const T = this.#p.graph.maxTokens, V = this.#p.vocabSize, W = this.#maxBlocksPerSeq;
    const tokens = this.#tokens, positions = this.#positions, rowSeq = this.#rowSeq;
    const seqs: Sequence[] = [];
    // Logit rows that need their logits on the host (sampled, teacher-forced) come first and id-only rows
    // after them, so a step with a device argmax reads back the ids and only the leading logit rows.
    const hostRows: number[] = [], hostOf: Sequence[] = [], hostPos: number[] = [];
    const idRows: number[] = [], idOf: Sequence[] = [];
    const hasArgmax = this.#p.greedy !== undefined;
    let nT = 0, decodeRows = 0;
    const add = (s: Sequence, from: number, n: number, logits: "last" | "all" | "none"): void => {
      if (s.stepSlot < 0) s.stepSlot = seqs.push(s) - 1;
      for (let i = 0; i < n; i++) {
        const pos = from + i;
        if (logits === "all" || (logits === "last" && i === n - 1)) {
          if (hasArgmax && this.#idOnly(s)) {
            idRows.push(nT);
            idOf.push(s);
          } else {
            hostRows.push(nT);
            hostOf.push(s);
            hostPos.push(pos);
          }
        }
        tokens[nT] = s.tokens[pos];
        positions[nT] = pos;
        rowSeq[nT++] = s.stepSlot;
      }
      s.stepUpto = from + n;
    };
    // decode rows first: one per generating sequence
    for (const s of this.#running) {
      if (s.prefilled && !s.spec.onLogits) {
        add(s, s.computed, 1, "last");
        decodeRows++;
      }
    }
    // then prompt chunks in admission order, within the step's rows (and logit rows for teacher forcing)
    for (const s of this.#running) {
      if (s.prefilled) continue;
      let n = Math.min(T - nT, s.promptLen - s.computed, s.spec.chunk ?? this.options.prefillChunk);
      if (s.spec.onLogits) {
        n = Math.min(n, this.#p.graph.maxLogitRows - hostRows.length - idRows.length);
      }
      if (n <= 0) continue;
      add(s, s.computed, n, s.spec.onLogits ? "all" : s.computed + n === s.promptLen ? "last" : "none");
    }
    if (nT === 0) return;
    const gapMs = this.#lastStepEnd ? t0 - this.#lastStepEnd : 0;
    if (this.#tables.length < seqs.length * W) this.#tables = new Int32Array(seqs.length * W);
    const tables = this.#tables.subarray(0, seqs.length * W).fill(-1);
    for (const s of seqs) s.stepSlot = -1;
    for (let i = 0; i < seqs.length; i++) {
      this.#grow(seqs[i], seqs[i].stepUpto);
      tables.set(seqs[i].blocks, i * W);
    }
    const nS = hostRows.length, nL = nS + idRows.length;
    const logitRows = this.#logitRows.subarray(0, nL);
    logitRows.set(hostRows);
    logitRows.set(idRows, nS);
    // device-sampled rows: their settings and uniform (drawn now from the row's sampler, in the order
    // its host sampling would have drawn); host and greedy rows stay zeros (greedy)
    let sampling: Float64Array | undefined;
    if (this.#p.greedy?.sampling) {
      for (let i = 0; i < idOf.length; i++) {
        const sp = idOf[i].spec.sampler;
        if (!sp || sp.isPlainGreedy || idOf[i].spec.maxTokens === 0) continue;
        sampling ??= this.#sampling.subarray(0, nL * PICK_PARAMS).fill(0);
        sp.devicePick(sampling, (nS + i) * PICK_PARAMS);
      }
    }
    const step: StepParams = {
      sampling,
      nTokens: nT,
      tokens: tokens.subarray(0, nT),
      positions: positions.subarray(0, nT),
      seqIndex: rowSeq.subarray(0, nT),
      blockTables: tables,
      maxBlocksPerSeq: W,
      logitRows,
    };
    // id-only rows present: the graph with the device argmax; it leaves the logits of every row in the
    // logits tensor too, so sampled rows read theirs back after it
    const greedy = idRows.length ? this.#p.greedy : undefined;
    let logits: Float32Array | undefined, ids: Int32Array | undefined;
    const tRun = now();
    try {
      const b = this.#p.backend;
      await (greedy ? greedy.compiled() : this.#p.compiled).run(step);
      if (greedy) ids = new Int32Array(await b.download(greedy.ids, { byteLength: nL * 4 }));
      if (nS) logits = new Float32Array(await b.download(this.#p.graph.logits, { byteLength: nS * V * 4 }));
    } catch (e) {
      // a failed step fails the sequences in it; the others go on
      this.#lastStepEnd = now();
      for (const s of seqs) this.#retire(s, e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.#steps++;
    const tDone = now();
    for (const s of seqs) s.computed = s.stepUpto;
    const finished = new Map<Sequence, FinishReason | Error>();
    for (let i = 0; i < nL; i++) {
      const s = i < nS ? hostOf[i] : idOf[i - nS];
      if (s.cancelled || finished.has(s)) continue;
      try {
        if (s.spec.onLogits) {
          const pos = hostPos[i];
          s.spec.onLogits(pos, logits!.slice(i * V, (i + 1) * V));
          if (pos === s.promptLen - 1) finished.set(s, "length");
          continue;
        }
        if (!s.prefillEndAt) s.prefillEndAt = tDone;
        if (s.spec.maxTokens === 0) {
          finished.set(s, "length");
          continue;
        }
        let id: number;
        if (i < nS) id = s.spec.sampler!.sample(logits!.subarray(i * V, (i + 1) * V), s.tokens);
        else {
          id = ids![i];
          if (!(id >= 0 && id < V)) throw badDeviceId(id);
        }
        const reason = s.accept(id, this.options.contextSize);
        if (reason) finished.set(s, reason);
      } catch (e) {
        finished.set(s, e instanceof Error ? e : new Error(String(e)));
      }
    }
    if (this.options.prefixCache) { for (const s of seqs) this.#offerPrefix(s); }
    for (const [s, reason] of finished) if (s.state === "running") this.#retire(s, reason);
    const tEnd = now();
    this.#lastStepEnd = tEnd;
    this.onStep?.({
      rows: nT,
      seqs: seqs.length,
      decodeRows,
      prefillRows: nT - decodeRows,
      ms: tEnd - t0,
      backendMs: tDone - tRun,
      planMs: tRun - t0,
      sampleMs: tEnd - tDone,
      gapMs,
    });
  }

  /** Offer the sequence's computed full prompt blocks to the prefix cache, in order. */
  #offerPrefix(s: Sequence): void {
    if (s.spec.prefixCache === false || s.spec.onLogits) return;
    const bs = this.#p.kv.blockSize;
    const full = Math.floor(Math.min(s.computed, s.promptLen) / bs);
    for (let b = s.prefixOffered; b < full; b++) {
      s.prefixParent = this.#prefix.insert(
        s.prefixParent,
        s.spec.promptIds.slice(b * bs, (b + 1) * bs),
        s.blocks[b],
      );
    }
    s.prefixOffered = Math.max(s.prefixOffered, full);
  }
}
