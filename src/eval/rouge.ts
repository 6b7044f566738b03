/**
 * ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum (Lin, 2004), as the summarization evaluations of HF `evaluate`
 * and TensorRT-LLM's summarize.py report them: F-measures over lowercase alphanumeric tokens.
 *
 * Choices (written here because every ROUGE implementation makes them):
 * - Tokens: the text lowercased, every run of characters outside `[a-z0-9]` a separator (so "don't" is
 *   "don" "t", and accented or non-Latin letters separate words). No stemming and no stopword removal
 *   (`evaluate`'s default, `use_stemmer=False`).
 * - ROUGE-N: clipped n-gram overlap; precision over the prediction's n-grams, recall over the reference's.
 * - ROUGE-L: the longest common subsequence of the two token sequences.
 * - ROUGE-Lsum: summary-level LCS. Both texts are split into sentences on newlines; for each reference
 *   sentence the union of its tokens that lie on an LCS with any prediction sentence counts, each token
 *   at most as often as it occurs in both summaries. When several LCSs exist, the one found by
 *   backtracking that prefers matches, then moving up in the reference, is used.
 * - F = 2PR / (P + R), 0 when both are 0; an empty side scores 0.
 * - A corpus score is the mean of the per-record F-measures (`evaluate`'s bootstrap aggregate is a
 *   resampled estimate of the same mean).
 * @module
 */

/** Precision, recall and F-measure of one comparison. */
export interface RougeScore {
  readonly precision: number;
  readonly recall: number;
  readonly f: number;
}

/** The four ROUGE variants of one prediction against one reference. */
export interface RougeScores {
  readonly rouge1: RougeScore;
  readonly rouge2: RougeScore;
  readonly rougeL: RougeScore;
  readonly rougeLsum: RougeScore;
}

/** Lowercase alphanumeric tokens (see the module notes). */
export function rougeTokens(text: string): string[] {
  return text.toLowerCase().split(/[^a-z0-9]+/).filter((t) => t.length > 0);
}

function score(hits: number, predCount: number, refCount: number): RougeScore {
  const precision = predCount ? hits / predCount : 0, recall = refCount ? hits / refCount : 0;
  const f = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, f };
}

function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const g = tokens.slice(i, i + n).join(" ");
    m.set(g, (m.get(g) ?? 0) + 1);
  }
  return m;
}

/** ROUGE-N of token sequences. */
export function rougeN(pred: readonly string[], ref: readonly string[], n: number): RougeScore {
  const p = ngrams(pred, n), r = ngrams(ref, n);
  let hits = 0;
  for (const [g, c] of p) hits += Math.min(c, r.get(g) ?? 0);
  return score(hits, Math.max(0, pred.length - n + 1), Math.max(0, ref.length - n + 1));
}

/** The LCS length table of a (rows) against b (columns), (a.length + 1) x (b.length + 1). */
function lcsTable(a: readonly string[], b: readonly string[]): Uint32Array[] {
  const t = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      t[i][j] = a[i - 1] === b[j - 1] ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
    }
  }
  return t;
}

/** ROUGE-L of token sequences. */
export function rougeL(pred: readonly string[], ref: readonly string[]): RougeScore {
  const lcs = lcsTable(ref, pred)[ref.length][pred.length];
  return score(lcs, pred.length, ref.length);
}

/** Indices into `ref` of one LCS of `ref` and `pred`. */
function lcsIndices(ref: readonly string[], pred: readonly string[]): number[] {
  const t = lcsTable(ref, pred), out: number[] = [];
  let i = ref.length, j = pred.length;
  while (i > 0 && j > 0) {
    if (ref[i - 1] === pred[j - 1]) {
      out.push(i - 1);
      i--;
      j--;
    } else if (t[i - 1][j] >= t[i][j - 1]) i--;
    else j--;
  }
  return out.reverse();
}

function counts(tokens: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of tokens) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

/** ROUGE-Lsum: summary-level LCS over newline-separated sentences. */
export function rougeLsum(pred: string, ref: string): RougeScore {
  const sentences = (s: string): string[][] => s.split("\n").map(rougeTokens).filter((t) => t.length > 0);
  const predS = sentences(pred), refS = sentences(ref);
  const predAll = predS.flat(), refAll = refS.flat();
  const leftPred = counts(predAll), leftRef = counts(refAll);
  let hits = 0;
  for (const r of refS) {
    const union = new Set<number>();
    for (const c of predS) for (const i of lcsIndices(r, c)) union.add(i);
    for (const i of [...union].sort((a, b) => a - b)) {
      const tok = r[i];
      if ((leftPred.get(tok) ?? 0) > 0 && (leftRef.get(tok) ?? 0) > 0) {
        hits++;
        leftPred.set(tok, leftPred.get(tok)! - 1);
        leftRef.set(tok, leftRef.get(tok)! - 1);
      }
    }
  }
  return score(hits, predAll.length, refAll.length);
}

/** All four variants of a prediction against a reference summary. */
export function rougeScores(prediction: string, reference: string): RougeScores {
  const p = rougeTokens(prediction), r = rougeTokens(reference);
  return {
    rouge1: rougeN(p, r, 1),
    rouge2: rougeN(p, r, 2),
    rougeL: rougeL(p, r),
    rougeLsum: rougeLsum(prediction, reference),
  };
}

/** Mean F-measure of each variant over records (0 for none). */
export function meanRougeF(scores: readonly RougeScores[]): Record<keyof RougeScores, number> {
  const mean = (k: keyof RougeScores): number =>
    scores.length ? scores.reduce((s, x) => s + x[k].f, 0) / scores.length : 0;
  return {
    rouge1: mean("rouge1"),
    rouge2: mean("rouge2"),
    rougeL: mean("rougeL"),
    rougeLsum: mean("rougeLsum"),
  };
}
