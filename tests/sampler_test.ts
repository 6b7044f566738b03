import assert from "node:assert/strict";
import { Sampler, type SamplingOptions, validateSamplingOptions } from "../src/sample/sampler.ts";
import { MAX_STOPS, StopMatcher } from "../src/sample/stop.ts";
import { LlmError } from "../src/errors.ts";
import { randn } from "./_util.ts";

/** Logits whose softmax is exactly `probs` (up to float rounding). */
function logitsOf(probs: number[]): Float32Array {
  return Float32Array.from(probs, (p) => (p > 0 ? Math.log(p) : -Infinity));
}

function counts(s: Sampler, logits: Float32Array, n: number, history: number[] = []): Map<number, number> {
  const c = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const t = s.sample(logits, history);
    c.set(t, (c.get(t) ?? 0) + 1);
  }
  return c;
}

/** Pearson chi-square of observed counts against expected probabilities (over the expected support). */
function chiSquare(c: Map<number, number>, expected: Map<number, number>, n: number): number {
  let x = 0;
  for (const [t, p] of expected) {
    const e = p * n;
    x += ((c.get(t) ?? 0) - e) ** 2 / e;
  }
  return x;
}

function assertSupport(c: Map<number, number>, allowed: number[]): void {
  for (const t of c.keys()) {
    assert.ok(allowed.includes(t), `token ${t} is outside the allowed set ${allowed}`);
  }
}

function code(fn: () => unknown, expected: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LlmError, `expected LlmError, got ${e}`);
    assert.equal(e.code, expected);
    if (re) assert.match(e.message, re);
    return true;
  });
}

Deno.test("greedy picks the argmax, lowest index on ties", () => {
  const s = new Sampler(5, { temperature: 0 });
  assert.equal(s.sample(Float32Array.of(0.1, 3, -2, 2.9, 1)), 1);
  assert.equal(s.sample(Float32Array.of(1, 5, 2, 5, 5)), 1);
  assert.equal(s.sample(Float32Array.of(-Infinity, -Infinity, -7, -Infinity, -7)), 2);
  assert.equal(s.sample(new Float32Array(5)), 0); // all equal
});

Deno.test("temperature 0 vs a tiny temperature", () => {
  const distinct = Float32Array.of(0.5, 2, 1.999, -3);
  const tiny = new Sampler(4, { temperature: 1e-4, seed: 1 });
  for (let i = 0; i < 200; i++) assert.equal(tiny.sample(distinct), 1);
  // On an exact tie greedy is deterministic, while any positive temperature splits the mass evenly.
  const tie = Float32Array.of(0, 4, 4, 1);
  const greedy = new Sampler(4, { temperature: 0, seed: 1 });
  for (let i = 0; i < 50; i++) assert.equal(greedy.sample(tie), 1);
  const c = counts(new Sampler(4, { temperature: 1e-4, seed: 2 }), tie, 4000);
  assertSupport(c, [1, 2]);
  assert.ok(chiSquare(c, new Map([[1, 0.5], [2, 0.5]]), 4000) < 10.83);
});

Deno.test("top-k = 1 equals greedy", () => {
  for (let seed = 0; seed < 20; seed++) {
    const logits = randn(1000, seed, 5);
    const g = new Sampler(1000, { temperature: 0 }).sample(logits);
    const k1 = new Sampler(1000, { topK: 1, temperature: 1.5, seed });
    for (let i = 0; i < 5; i++) assert.equal(k1.sample(logits), g);
  }
});

Deno.test("temperature 1 with no filters follows the softmax", () => {
  const probs = [0.1, 0.2, 0.3, 0.4];
  const n = 20000;
  const c = counts(new Sampler(4, { seed: 7 }), logitsOf(probs), n);
  assert.ok(chiSquare(c, new Map(probs.map((p, i) => [i, p])), n) < 16.27); // df 3, p = 0.001
});

Deno.test("top-k restricts the support and renormalizes", () => {
  const probs = [0.05, 0.4, 0.1, 0.3, 0.15];
  const n = 20000;
  const c = counts(new Sampler(5, { topK: 2, seed: 3 }), logitsOf(probs), n);
  assertSupport(c, [1, 3]);
  assert.ok(chiSquare(c, new Map([[1, 4 / 7], [3, 3 / 7]]), n) < 10.83);
});

Deno.test("top-p keeps the smallest nucleus reaching p", () => {
  const probs = [0.1, 0.5, 0.15, 0.25];
  const n = 20000;
  // 0.5 + 0.25 = 0.75 >= 0.7, so the nucleus is {1, 3}.
  const c = counts(new Sampler(4, { topP: 0.7, seed: 4 }), logitsOf(probs), n);
  assertSupport(c, [1, 3]);
  assert.ok(chiSquare(c, new Map([[1, 2 / 3], [3, 1 / 3]]), n) < 10.83);
  // Combined with top-k, p applies to the renormalized top-k set: {1,3,2} -> 0.5/0.9, 0.25/0.9 = 0.833 >= 0.8.
  const c2 = counts(new Sampler(4, { topK: 3, topP: 0.8, seed: 5 }), logitsOf(probs), n);
  assertSupport(c2, [1, 3]);
});

Deno.test("top-p on a large vocabulary (pre-filter path) matches a full-sort reference", () => {
  const V = 50000;
  const logits = randn(V, 11, 1);
  // A handful of strong tokens over a long flat tail, as a real model's distribution looks.
  const strong = [17, 4242, 31337, 49999, 0];
  strong.forEach((t, j) => (logits[t] = 12 - j * 0.7));
  const topP = 0.9;
  // Reference nucleus from a full sort.
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const max = logits[order[0]];
  let z = 0;
  for (let i = 0; i < V; i++) z += Math.exp(logits[i] - max);
  const allowed: number[] = [];
  let cum = 0;
  for (const t of order) {
    allowed.push(t);
    cum += Math.exp(logits[t] - max) / z;
    if (cum >= topP) break;
  }
  const n = 1500;
  const c = counts(new Sampler(V, { topP, seed: 12 }), logits, n);
  assertSupport(c, allowed);
  // Chi-square over the strong tokens plus one bucket for the rest of the nucleus (df 5, p = 0.001).
  let mass = 0;
  for (const t of allowed) mass += Math.exp(logits[t] - max);
  const observed = new Map<number, number>();
  const expected = new Map<number, number>();
  for (const t of allowed) {
    const b = strong.includes(t) ? t : -1;
    observed.set(b, (observed.get(b) ?? 0) + (c.get(t) ?? 0));
    expected.set(b, (expected.get(b) ?? 0) + Math.exp(logits[t] - max) / mass);
  }
  assert.ok(chiSquare(observed, expected, n) < 20.52, `chi-square ${chiSquare(observed, expected, n)}`);
});

Deno.test("min-p drops tokens below minP * p_max", () => {
  const probs = [0.1, 0.5, 0.1, 0.3];
  const n = 20000;
  // Threshold 0.5 * 0.5 = 0.25 keeps {1, 3}.
  const c = counts(new Sampler(4, { minP: 0.5, seed: 6 }), logitsOf(probs), n);
  assertSupport(c, [1, 3]);
  assert.ok(chiSquare(c, new Map([[1, 5 / 8], [3, 3 / 8]]), n) < 10.83);
  // minP = 1 keeps only the argmax (and any exact ties of it).
  const one = counts(new Sampler(4, { minP: 1, seed: 6 }), logitsOf(probs), 200);
  assertSupport(one, [1]);
  // With top-k on: min-p is relative to the top-k set's best, the same token.
  const both = counts(new Sampler(4, { topK: 3, minP: 0.5, seed: 6 }), logitsOf(probs), 2000);
  assertSupport(both, [1, 3]);
});

Deno.test("repetition penalty changes the argmax as computed by hand", () => {
  const greedy = { temperature: 0, repetitionPenalty: 1.1 };
  // 2.0 / 1.1 = 1.818 < 1.9
  assert.equal(new Sampler(3, greedy).sample(Float32Array.of(2, 1.9, 0), [0]), 1);
  assert.equal(new Sampler(3, { temperature: 0 }).sample(Float32Array.of(2, 1.9, 0), [0]), 0);
  // Negative logits are multiplied: -1 * 1.1 = -1.1 < -1.05
  assert.equal(new Sampler(2, greedy).sample(Float32Array.of(-1, -1.05), [0]), 1);
  // Applied once per distinct token, not per occurrence: 2.0 / 1.1 > 1.8
  assert.equal(new Sampler(2, greedy).sample(Float32Array.of(2, 1.8), [0, 0, 0]), 0);
});

Deno.test("frequency and presence penalties, OpenAI style", () => {
  const l = Float32Array.of(1, 0.5);
  // 1 - 3 * 0.2 = 0.4 < 0.5
  assert.equal(new Sampler(2, { temperature: 0, frequencyPenalty: 0.2 }).sample(l, [0, 0, 0]), 1);
  assert.equal(new Sampler(2, { temperature: 0, frequencyPenalty: 0.2 }).sample(l, [0, 0]), 0); // 0.6
  // presence counts once: 1 - 0.6 = 0.4 regardless of count
  assert.equal(new Sampler(2, { temperature: 0, presencePenalty: 0.6 }).sample(l, [0, 0, 0, 0]), 1);
  assert.equal(new Sampler(2, { temperature: 0, presencePenalty: 0.4 }).sample(l, [0, 0, 0, 0]), 0);
  // Negative values encourage repetition.
  assert.equal(
    new Sampler(2, { temperature: 0, presencePenalty: -1 }).sample(Float32Array.of(0.5, 1), [0]),
    0,
  );
  // All together: (2 / 1.25) - 2 * 0.1 - 0.3 = 1.1 < 1.2
  const all = { temperature: 0, repetitionPenalty: 1.25, frequencyPenalty: 0.1, presencePenalty: 0.3 };
  assert.equal(new Sampler(2, all).sample(Float32Array.of(2, 1.2), [0, 0]), 1);
});

Deno.test("penaltyLastN bounds the window", () => {
  const l = Float32Array.of(1, 0.5, 0);
  const hist = [0, 2, 2];
  const o: SamplingOptions = { temperature: 0, presencePenalty: 1 };
  assert.equal(new Sampler(3, { ...o, penaltyLastN: 2 }).sample(l, hist), 0); // token 0 is outside the window
  assert.equal(new Sampler(3, { ...o, penaltyLastN: 3 }).sample(l, hist), 1);
  assert.equal(new Sampler(3, { ...o, penaltyLastN: -1 }).sample(l, hist), 1);
  assert.equal(new Sampler(3, { ...o, penaltyLastN: 0 }).sample(l, hist), 0);
  code(() => new Sampler(3, o).sample(l, [5]), "BAD_REQUEST", /history\[0\] = 5/);
});

Deno.test("the caller's logits are never mutated", () => {
  const logits = randn(256, 3, 4);
  const copy = logits.slice();
  const s = new Sampler(256, { repetitionPenalty: 1.3, frequencyPenalty: 0.5, topK: 10, topP: 0.8, seed: 1 });
  for (let i = 0; i < 20; i++) s.sample(logits, [1, 2, 3, 3, 200]);
  assert.deepEqual(logits, copy);
});

Deno.test("same seed, same tokens; different seed, different tokens; unseeded exposes its seed", () => {
  const logits = randn(1000, 5, 2);
  const run = (s: Sampler): number[] => Array.from({ length: 64 }, () => s.sample(logits));
  const opts: SamplingOptions = { temperature: 1.2, topK: 100, topP: 0.95 };
  const a = run(new Sampler(1000, { ...opts, seed: 1234 }));
  const b = run(new Sampler(1000, { ...opts, seed: 1234 }));
  const c = run(new Sampler(1000, { ...opts, seed: 1235 }));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Seeds that differ only above bit 32 must differ too.
  assert.notDeepEqual(
    run(new Sampler(1000, { ...opts, seed: 2 ** 40 })),
    run(new Sampler(1000, { ...opts, seed: 0 })),
  );
  const free = new Sampler(1000, opts);
  assert.ok(Number.isSafeInteger(free.seed));
  assert.deepEqual(run(free), run(new Sampler(1000, { ...opts, seed: free.seed })));
});

Deno.test("peeked uniforms are the next draws; only committed ones are used up", () => {
  const logits = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) * 3);
  const o = { temperature: 0.9, topP: 0.95, seed: 11 };
  const plain = new Sampler(50, o);
  const want = Array.from({ length: 8 }, () => plain.sample(logits));
  const s = new Sampler(50, o);
  // peek far ahead (a queued burst), keep two steps' draws, then sample the rest on the host
  const row = new Float64Array(5);
  const peeked = [0, 1, 2, 3, 4].map((i) => s.peekUniform(i));
  s.devicePick(row, 0, { ahead: 3 });
  assert.equal(row[4], peeked[3]);
  assert.equal(s.peekUniform(0), peeked[0], "peeking draws nothing");
  s.commitUniforms(2);
  assert.equal(s.peekUniform(0), peeked[2]);
  const got = [...want.slice(0, 2), ...Array.from({ length: 6 }, () => s.sample(logits))];
  assert.deepEqual(got, want);
  // devicePick without ahead draws: the same u as sample() would have used
  const a = new Sampler(50, o), b = new Sampler(50, o);
  a.devicePick(row, 0);
  assert.equal(row[4], b.peekUniform(0));
  b.commitUniforms(1);
  assert.deepEqual([a.sample(logits), a.sample(logits)], [b.sample(logits), b.sample(logits)]);
  assert.throws(() => s.peekUniform(-1), /peekUniform/);
});

Deno.test("-Infinity logits are never sampled; all-equal logits are uniform", () => {
  const l = Float32Array.of(-Infinity, 0, -Infinity, 0, -Infinity);
  for (const o of [{}, { topK: 4 }, { topP: 0.99 }, { minP: 0.01 }] as SamplingOptions[]) {
    assertSupport(counts(new Sampler(5, { ...o, seed: 9 }), l, 500), [1, 3]);
  }
  const n = 20000;
  const c = counts(new Sampler(8, { seed: 10 }), new Float32Array(8).fill(3), n);
  assert.ok(chiSquare(c, new Map(Array.from({ length: 8 }, (_, i) => [i, 1 / 8])), n) < 24.32); // df 7
  // +Infinity: only those tokens can win.
  const inf = Float32Array.of(1, Infinity, 2, Infinity);
  assertSupport(counts(new Sampler(4, { seed: 1 }), inf, 200), [1, 3]);
  assert.equal(new Sampler(4, { temperature: 0 }).sample(inf), 1);
});

Deno.test("NaN or all -Infinity logits are INTERNAL errors", () => {
  code(() => new Sampler(3, {}).sample(Float32Array.of(0, NaN, 1)), "INTERNAL", /logit 1 is NaN/);
  code(() => new Sampler(3, { temperature: 0 }).sample(Float32Array.of(NaN, 0, 1)), "INTERNAL", /NaN/);
  code(() => new Sampler(2, {}).sample(Float32Array.of(-Infinity, -Infinity)), "INTERNAL", /-Infinity/);
  code(() => new Sampler(3, {}).sample(new Float32Array(4)), "INTERNAL", /4 logits/);
});

Deno.test("validation names the field, the value and the range", () => {
  const bad: [SamplingOptions, RegExp][] = [
    [{ temperature: -0.1 }, /temperature.*>= 0.*got -0\.1/],
    [{ temperature: NaN }, /temperature.*NaN/],
    [{ temperature: Infinity }, /temperature/],
    [{ topP: 0 }, /topP.*\(0, 1\]/],
    [{ topP: 1.01 }, /topP/],
    [{ topK: -1 }, /topK.*-1/],
    [{ topK: 2.5 }, /topK.*integer/],
    [{ minP: 1.5 }, /minP.*\[0, 1\]/],
    [{ minP: -0.1 }, /minP/],
    [{ repetitionPenalty: 0 }, /repetitionPenalty.*> 0/],
    [{ repetitionPenalty: -1 }, /repetitionPenalty/],
    [{ frequencyPenalty: 3 }, /frequencyPenalty.*\[-2, 2\]/],
    [{ presencePenalty: -2.5 }, /presencePenalty/],
    [{ penaltyLastN: -2 }, /penaltyLastN/],
    [{ penaltyLastN: 1.5 }, /penaltyLastN/],
    [{ seed: 1.5 }, /seed.*safe integer/],
    [{ seed: 2 ** 60 }, /seed/],
    [{ temperature: "1" as unknown as number }, /temperature/],
  ];
  for (const [o, re] of bad) code(() => validateSamplingOptions(o), "BAD_REQUEST", re);
  code(() => new Sampler(0, {}), "BAD_REQUEST", /vocabSize/);
  const d = validateSamplingOptions({});
  assert.deepEqual(d, {
    temperature: 1,
    topK: 0,
    topP: 1,
    minP: 0,
    repetitionPenalty: 1,
    frequencyPenalty: 0,
    presencePenalty: 0,
    penaltyLastN: 64,
    seed: undefined,
  });
  assert.equal(validateSamplingOptions({ topP: 1, minP: 1, seed: -5 }).seed, -5);
});

Deno.test("128k vocabulary: top-k, top-p and min-p stay fast", () => {
  const V = 128256;
  const logits = randn(V, 21, 8);
  const cases: SamplingOptions[] = [{ topK: 40, topP: 0.95 }, { topP: 0.95 }, { minP: 0.05 }, {}];
  for (const o of cases) {
    const s = new Sampler(V, { ...o, temperature: 0.8, seed: 1, repetitionPenalty: 1.1 });
    const hist = Array.from({ length: 64 }, (_, i) => i * 7);
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) {
      const t = s.sample(logits, hist);
      assert.ok(t >= 0 && t < V);
    }
    const ms = (performance.now() - t0) / 10;
    // Generous bound: only catches an accidental O(V log V) per-token sort with a comparator on every path.
    assert.ok(ms < 200, `${JSON.stringify(o)}: ${ms.toFixed(1)} ms per sample`);
  }
});

// ---------------------------------------------------------------------------------------------------------
// StopMatcher

function feed(m: StopMatcher, chunks: string[]): { out: string; stopped: boolean } {
  let out = "";
  let stopped = false;
  for (const c of chunks) {
    const r = m.push(c);
    out += r.emit;
    stopped = r.stopped;
    if (stopped) break;
  }
  if (!stopped) out += m.flush();
  return { out, stopped };
}

Deno.test("stop string split across three chunks is caught and never emitted", () => {
  const m = new StopMatcher(["</end>"]);
  assert.deepEqual(m.push("hello </"), { emit: "hello ", stopped: false });
  assert.deepEqual(m.push("en"), { emit: "", stopped: false });
  assert.deepEqual(m.push("d> trailing"), { emit: "", stopped: true });
  assert.equal(m.matched, "</end>");
  assert.deepEqual(m.push("more"), { emit: "", stopped: true });
  assert.equal(m.flush(), "");
});

Deno.test("held text is released once it cannot be a stop", () => {
  const m = new StopMatcher(["STOP"]);
  assert.deepEqual(m.push("aST"), { emit: "a", stopped: false });
  assert.deepEqual(m.push("x"), { emit: "STx", stopped: false });
  assert.deepEqual(m.push("S"), { emit: "", stopped: false });
  assert.equal(m.flush(), "S");
  assert.equal(m.stopped, false);
});

Deno.test("overlapping partial matches: stop 'aab' in 'aaab'", () => {
  assert.deepEqual(feed(new StopMatcher(["aab"]), ["a", "a", "a", "b", "c"]), { out: "a", stopped: true });
  assert.deepEqual(feed(new StopMatcher(["aab"]), ["aaab"]), { out: "a", stopped: true });
  assert.deepEqual(feed(new StopMatcher(["aab"]), ["xaa", "ab"]), { out: "xa", stopped: true });
  assert.deepEqual(feed(new StopMatcher(["abab"]), ["aba", "bab"]), { out: "", stopped: true });
  assert.deepEqual(feed(new StopMatcher(["aab"]), ["aa", "a", "c"]), { out: "aaac", stopped: false });
});

Deno.test("multiple stops: the earliest occurrence wins", () => {
  const m = new StopMatcher(["world", "lo w"]);
  assert.deepEqual(feed(m, ["hel", "lo wor", "ld"]), { out: "hel", stopped: true });
  assert.equal(m.matched, "lo w");
  // A longer partial match on one stop must not hide a full match on another.
  assert.deepEqual(feed(new StopMatcher(["abcdef", "cd"]), ["abc", "de"]), { out: "ab", stopped: true });
  assert.deepEqual(feed(new StopMatcher(["\n\n", "User:"]), ["Hi\n", "Us", "er: x"]), {
    out: "Hi\n",
    stopped: true,
  });
});

Deno.test("stop at the very start and whole-chunk stops", () => {
  assert.deepEqual(new StopMatcher(["<s>"]).push("<s>abc"), { emit: "", stopped: true });
  assert.deepEqual(feed(new StopMatcher(["x"]), ["x"]), { out: "", stopped: true });
  assert.deepEqual(feed(new StopMatcher([]), ["any", " text"]), { out: "any text", stopped: false });
  assert.deepEqual(feed(new StopMatcher(["x"]), ["", "", "abc"]), { out: "abc", stopped: false });
});

Deno.test("unicode stops, including astral characters split mid-pair", () => {
  assert.deepEqual(feed(new StopMatcher(["終わり"]), ["これで", "終", "わ", "り です"]), {
    out: "これで",
    stopped: true,
  });
  assert.deepEqual(feed(new StopMatcher(["🛑"]), ["go ", "\ud83d", "\uded1 no"]), {
    out: "go ",
    stopped: true,
  });
  // A split astral character that is not a stop is emitted whole, never half a surrogate pair.
  const m = new StopMatcher(["STOP"]);
  const r1 = m.push("ok \ud83d");
  assert.equal(r1.emit, "ok ");
  assert.equal(m.push("\ude00!").emit, "\ud83d\ude00!");
  assert.deepEqual(feed(new StopMatcher(["é!"]), ["caf", "é", "!"]), { out: "caf", stopped: true });
});

Deno.test("stop validation", () => {
  code(() => new StopMatcher([""]), "BAD_REQUEST", /stop\[0\].*non-empty/);
  code(() => new StopMatcher(["a", ""]), "BAD_REQUEST", /stop\[1\]/);
  code(
    () => new StopMatcher(Array.from({ length: MAX_STOPS + 1 }, (_, i) => `s${i}`)),
    "BAD_REQUEST",
    /at most 16/,
  );
  code(() => new StopMatcher([3 as unknown as string]), "BAD_REQUEST", /stop\[0\]/);
  code(() => new StopMatcher("stop" as unknown as string[]), "BAD_REQUEST", /array/);
  new StopMatcher(Array.from({ length: MAX_STOPS }, (_, i) => `s${i}`));
});
