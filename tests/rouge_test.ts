/** ROUGE against cases computed by hand (the arithmetic is in the comments). */
import assert from "node:assert/strict";
import { rougeL, rougeLsum, rougeN, rougeScores, rougeTokens } from "../src/eval/rouge.ts";
import { meanRougeF } from "../src/eval/rouge.ts";

const close = (a: number, b: number, what: string): void =>
  assert.ok(Math.abs(a - b) < 1e-12, `${what}: ${a} != ${b}`);

Deno.test("rouge tokens: lowercase alphanumeric runs, everything else separates", () => {
  assert.deepEqual(rougeTokens("Don't STOP—now! 42x"), ["don", "t", "stop", "now", "42x"]);
  assert.deepEqual(rougeTokens("café, naïve"), ["caf", "na", "ve"]);
  assert.deepEqual(rougeTokens("  ...  "), []);
});

Deno.test("ROUGE-1/2/L: 'the cat sat on the mat' against 'the cat is on the mat'", () => {
  const p = rougeTokens("The cat sat on the mat."), r = rougeTokens("the cat is on the mat");
  // unigrams: the x2, cat, on, mat shared (sat/is not): 5 of 6 each way
  const r1 = rougeN(p, r, 1);
  close(r1.precision, 5 / 6, "R1 P");
  close(r1.recall, 5 / 6, "R1 R");
  close(r1.f, 5 / 6, "R1 F");
  // bigrams: "the cat", "on the", "the mat" shared of 5 each
  close(rougeN(p, r, 2).f, 3 / 5, "R2 F");
  // LCS: the cat on the mat = 5
  close(rougeL(p, r).f, 5 / 6, "RL F");
});

Deno.test("ROUGE-L on uneven lengths: P = LCS / |pred|, R = LCS / |ref|", () => {
  // pred a b f g h a c h i e (10), ref a b c d e (5): LCS a b c e = 4
  const s = rougeL(rougeTokens("a b f g h a c h i e"), rougeTokens("a b c d e"));
  close(s.precision, 0.4, "P");
  close(s.recall, 0.8, "R");
  close(s.f, (2 * 0.4 * 0.8) / 1.2, "F");
});

Deno.test("ROUGE-Lsum: Lin's union-LCS example and sentence order", () => {
  // ref r = a b c d e; candidate sentences c1 = a b f g h, c2 = a c h i e.
  // LCS(r, c1) = a b, LCS(r, c2) = a c e; union {a, b, c, e} = 4 hits; |ref| 5, |pred| 10
  const s = rougeLsum("a b f g h\na c h i e", "a b c d e");
  close(s.recall, 4 / 5, "R");
  close(s.precision, 4 / 10, "P");
  close(s.f, (2 * 0.4 * 0.8) / 1.2, "F");
  // swapped sentences: plain LCS of "a b c d" and "c d a b" is 2, the union over sentences is 4
  close(rougeLsum("c d\na b", "a b c d").f, 1, "Lsum F");
  close(rougeL(rougeTokens("c d\na b"), rougeTokens("a b c d")).f, 0.5, "L F");
});

Deno.test("ROUGE-Lsum counts a token at most as often as both summaries hold it", () => {
  // ref sentences [a], [a]; pred [a]: the first ref sentence takes the only predicted a, the second
  // finds none left: hits 1, P = 1/1, R = 1/2
  const s = rougeLsum("a", "a\na");
  close(s.precision, 1, "P");
  close(s.recall, 0.5, "R");
  close(s.f, 2 / 3, "F");
  // ref [a a b], pred [a b], [a]: union of LCS indices {1, 2} -> a, b: 2 hits of 3 and 3
  const t = rougeLsum("a b\na", "a a b");
  close(t.precision, 2 / 3, "P2");
  close(t.recall, 2 / 3, "R2");
});

Deno.test("ROUGE edge cases: empty sides score 0, short texts have no bigrams", () => {
  const e = rougeScores("", "the cat");
  for (const k of ["rouge1", "rouge2", "rougeL", "rougeLsum"] as const) assert.equal(e[k].f, 0);
  const one = rougeScores("cat", "cat");
  assert.equal(one.rouge1.f, 1);
  assert.equal(one.rouge2.f, 0); // no bigrams on either side
  const m = meanRougeF([rougeScores("a b", "a b"), rougeScores("c", "d")]);
  close(m.rouge1, 0.5, "mean R1");
  assert.deepEqual(meanRougeF([]), { rouge1: 0, rouge2: 0, rougeL: 0, rougeLsum: 0 });
});
