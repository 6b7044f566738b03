/**
 * The `sample` op (device-side sampling) on every backend that has it, against `pickToken`, the rule it
 * implements (src/sample/pick.ts): rows of different settings in one step, ties, -Infinity, +Infinity,
 * NaN, and the extreme uniforms; vocabularies of 7 to 128,256 (the cuda kernel caches a row in shared memory
 * up to ~50k logits and reads global memory past that). The webgpu kernel computes in f32: it may differ
 * only where its precision rule (tests/_pick_rule.ts) marks the row and uniform borderline, and those
 * must be few.
 * @module
 */
import assert from "node:assert/strict";
import type { Backend } from "../src/backend.ts";
import type { StepParams } from "../src/ops.ts";
import { PICK_ALL_NEG_INF, PICK_NAN, PICK_PARAMS, type PickOptions, pickToken } from "../src/sample/pick.ts";
import { randn, rng, rowsStep } from "./_util.ts";
import { forEachBackend } from "./_backends.ts";
import { isBorderline, type RowRule, rowRule } from "./_pick_rule.ts";

const SETTINGS: PickOptions[] = [
  { temperature: 0, topK: 0, topP: 1, minP: 0 },
  { temperature: 0.8, topK: 0, topP: 1, minP: 0 },
  { temperature: 1, topK: 40, topP: 1, minP: 0 },
  { temperature: 0.7, topK: 0, topP: 0.9, minP: 0 },
  { temperature: 1.2, topK: 50, topP: 0.8, minP: 0.05 },
  { temperature: 1, topK: 0, topP: 1, minP: 0.1 },
  { temperature: 1e-3, topK: 0, topP: 1, minP: 0 },
  { temperature: 1, topK: 1, topP: 1, minP: 0 },
  { temperature: 1, topK: 1 << 20, topP: 0.95, minP: 0 }, // topK above the vocabulary: off
  { temperature: 1.5, topK: 0, topP: 0.5, minP: 0 },
  { temperature: 1, topK: 3, topP: 1, minP: 0 },
  { temperature: 1, topK: 0, topP: 0.95, minP: 0 },
  { temperature: 1, topK: 2, topP: 1, minP: 0 },
  { temperature: 1, topK: 0, topP: 1, minP: 0 },
  { temperature: 1, topK: 0, topP: 1, minP: 0 },
  { temperature: 1e30, topK: 0, topP: 0.3, minP: 0 }, // every weight rounds to 1: rank order decides
  { temperature: 0.9, topK: 2000, topP: 0.9, minP: 0 }, // wider than the cuda kernel's 1,024 candidates
];

/** Row r's logits: a model-like spread with a few strong tokens, and special rows. */
function rowOf(r: number, n: number, seed: number): Float32Array {
  const l = randn(n, seed * 100 + r, 4);
  for (let j = 0; j < Math.min(5, n); j++) l[(j * 7919 + r) % n] = 9 - j * 0.5;
  switch (r) {
    case 9: // many exact ties
    case 10:
      for (let i = 0; i < n; i++) l[i] = Math.round(l[i]);
      break;
    case 11: // half the vocabulary masked out
      for (let i = 0; i < n; i += 2) l[i] = -Infinity;
      break;
    case 12: // two +Infinity logits: they share all the mass
      l[n >> 1] = Infinity;
      l[n - 1] = Infinity;
      break;
    case 13: // NaN
      l[n >> 2] = NaN;
      break;
    case 14: // nothing can be chosen
      l.fill(-Infinity);
      break;
  }
  return l;
}

async function sampleOn(
  b: Backend,
  x: Float32Array,
  n: number,
  sampling?: Float64Array,
): Promise<Int32Array> {
  const rows = x.length / n;
  const xt = b.alloc("f32", [rows, n], "compute", "logits");
  await b.upload(xt, x);
  const out = b.alloc("i32", [rows], "compute", "ids");
  const op = { op: "sample", x: xt, out } as const;
  const step: StepParams = {
    ...rowsStep(1),
    logitRows: Int32Array.from({ length: rows }, (_, i) => i),
    sampling,
  };
  try {
    using g = b.compile([op]);
    await g.run(step);
    await b.synchronize();
    return new Int32Array(await b.download(out));
  } finally {
    b.free(xt);
    b.free(out);
  }
}

Deno.test("sample op: every backend that has it picks what pickToken picks", async () => {
  const R = SETTINGS.length;
  await forEachBackend(async (b) => {
    const probe = b.alloc("f32", [1, 4], "compute", "probe"),
      probeOut = b.alloc("i32", [1], "compute", "ids");
    const has = b.supportsOp({ op: "sample", x: probe, out: probeOut });
    b.free(probe);
    b.free(probeOut);
    if (!has) {
      console.warn(`SKIP sample op on ${b.name}: the backend reads logits back instead`);
      return;
    }
    const f32 = b.name === "webgpu";
    let sampledOff = 0, total = 0, borderline = 0, differ = 0, upTo32k = 0, borderline32k = 0;
    for (const n of [7, 1000, 32003, 128256]) {
      const x = new Float32Array(R * n);
      for (let r = 0; r < R; r++) x.set(rowOf(r, n, n), r * n);
      const rules: RowRule[] = f32 ? SETTINGS.map((o, r) => rowRule(x.subarray(r * n, (r + 1) * n), o)) : [];
      for (let round = 0; round < 6; round++) {
        const draw = rng(n * 31 + round);
        const sampling = new Float64Array(R * PICK_PARAMS);
        const us: number[] = [];
        for (let r = 0; r < R; r++) {
          const o = SETTINGS[r];
          // the extremes of the host RNG's range on two rounds, random draws otherwise
          const u = round === 0 ? 0 : round === 1 ? 1 - 2 ** -32 : draw();
          us.push(u);
          sampling.set([o.temperature, o.topK, o.topP, o.minP, u], r * PICK_PARAMS);
        }
        const got = await sampleOn(b, x, n, sampling);
        for (let r = 0; r < R; r++) {
          const want = pickToken(x.subarray(r * n, (r + 1) * n), SETTINGS[r], () => us[r]);
          if (n <= 32003) upTo32k++;
          if (f32 && isBorderline(rules[r], us[r])) {
            borderline++;
            if (n <= 32003) borderline32k++;
            if (got[r] !== want) differ++;
            total++;
            continue;
          }
          assert.equal(
            got[r],
            want,
            `${b.name}: n ${n}, round ${round}, row ${r} ${JSON.stringify(SETTINGS[r])}`,
          );
          if (r === 13) assert.equal(got[r], PICK_NAN);
          if (r === 14) assert.equal(got[r], PICK_ALL_NEG_INF);
          const best = pickToken(x.subarray(r * n, (r + 1) * n), SETTINGS[0], () => 0);
          if (want >= 0 && want !== best) sampledOff++;
          total++;
        }
      }
      // without settings every row is greedy
      const greedy = await sampleOn(b, x, n);
      for (let r = 0; r < R; r++) {
        assert.equal(
          greedy[r],
          pickToken(x.subarray(r * n, (r + 1) * n), SETTINGS[0], () => 0),
          `greedy row ${r}`,
        );
      }
    }
    // the settings really sample: a good share of the picks are not the argmax
    assert.ok(sampledOff > total / 5, `${sampledOff} of ${total} picks differ from the argmax`);
    if (f32) {
      console.log(
        `${b.name}: ${borderline} of ${total} picks borderline by the f32 rule (${borderline32k} of ${upTo32k} ` +
          `at vocabularies up to 32,003), ${differ} of them differ`,
      );
      // The rule is a worst-case bound, and these synthetic rows are flat (N(0, 4) logits: the mass spreads
      // over thousands of tokens at 32k-128k), so it marks many top-p cuts and draws of those rows (about
      // 1 in 4 picks here; none at 7 tokens, one setting at 1,000); few of them actually differ.
      assert.ok(borderline <= total / 3, `${borderline} of ${total} picks are borderline`);
      assert.ok(differ <= borderline / 10, `${differ} of ${borderline} borderline picks differ`);
    }
  });
});

Deno.test("pickToken: the rule's corner cases by hand", () => {
  const o = (p: Partial<PickOptions>): PickOptions => ({ temperature: 1, topK: 0, topP: 1, minP: 0, ...p });
  const l = Float32Array.of(1, 3, 3, 2, -Infinity);
  // the draw walks kept tokens in id order: weights e^-2, 1, 1, e^-1 (total 2.503), id 4 never
  const w = [Math.exp(-2), 1, 1, Math.exp(-1)], z = w.reduce((a, b) => a + b);
  assert.equal(pickToken(l, o({}), () => 0), 0);
  assert.equal(pickToken(l, o({}), () => (w[0] + 0.5) / z), 1);
  assert.equal(pickToken(l, o({}), () => (w[0] + 1.5) / z), 2);
  assert.equal(pickToken(l, o({}), () => 1 - 2 ** -32), 3);
  // top-k 2 keeps the tie 1, 2 (rank order: logit desc, id asc); top-k 1 keeps id 1 only
  assert.equal(pickToken(l, o({ topK: 2 }), () => 0.99), 2);
  assert.equal(pickToken(l, o({ topK: 1 }), () => 0.99), 1);
  // top-p 0.5 of 2.503: the first of the tied pair (1.0) does not reach 1.25, both do
  assert.equal(pickToken(l, o({ topP: 0.5 }), () => 0.99), 2);
  assert.equal(pickToken(l, o({ topP: 0.3 }), () => 0.99), 1);
  // min-p 0.2 drops e^-2 (0.135) and keeps e^-1 (0.368)
  assert.equal(pickToken(l, o({ minP: 0.2 }), () => 0), 1);
  // temperature 0 is the argmax and does not draw
  assert.equal(pickToken(l, o({ temperature: 0 }), () => assert.fail("drew")), 1);
  assert.equal(pickToken(Float32Array.of(0, NaN), o({}), () => 0), PICK_NAN);
  assert.equal(pickToken(Float32Array.of(-Infinity, -Infinity), o({}), () => 0), PICK_ALL_NEG_INF);
  assert.equal(pickToken(Float32Array.of(5, Infinity, 0, Infinity), o({}), () => 0.6), 3);
});
