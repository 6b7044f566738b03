/**
 * Accuracy of a (quantized) model, alone and against its reference: perplexity over a text, the KL
 * divergence KL(reference || model) and top-1 agreement of the next-token distributions at every
 * position (teacher-forced, so both models see the same prefixes), and summaries scored with ROUGE.
 *
 * Text windows: the text is tokenized once (no BOS), cut into windows of at most `window - 1` tokens,
 * and each window runs as BOS + its tokens; every position of a window predicts the next token of that
 * window (its first tokens therefore see little context, as in llama2.c-style evaluation, and unlike
 * llama.cpp's perplexity tool, which scores only each window's second half).
 * @module
 */
import type { Engine } from "../engine/engine.ts";
import { LlmError } from "../errors.ts";
import { meanRougeF, type RougeScores, rougeScores } from "./rouge.ts";

/** log-softmax of a logit row, in f64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum), out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i] - lse;
  return out;
}

/** KL(p || q) of two log-probability rows. */
export function klDivergence(logP: Float64Array, logQ: Float64Array): number {
  let kl = 0;
  for (let i = 0; i < logP.length; i++) {
    const p = Math.exp(logP[i]);
    if (p > 0) kl += p * (logP[i] - logQ[i]);
  }
  return Math.max(0, kl);
}

/** Index of the largest value (lowest on ties). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Perplexity of one model over a text. */
export interface PerplexityResult {
  /** Scored positions. */
  readonly tokens: number;
  /** Mean negative log-likelihood (nats per token). */
  readonly nll: number;
  /** exp(nll). */
  readonly perplexity: number;
}

/** A model against its reference over a text. */
export interface TextEvalResult {
  readonly windows: number;
  readonly model: PerplexityResult;
  readonly reference?: PerplexityResult;
  /** Mean over positions of KL(reference || model), nats. */
  readonly klMean?: number;
  /** Largest per-position KL. */
  readonly klMax?: number;
  /** Fraction of positions where both models' most likely next token is the same. */
  readonly top1Agreement?: number;
}

/** Cut ids into windows of at most `window - 1` tokens, each led by `bos` (when the tokenizer has one). */
export function textWindows(ids: readonly number[], window: number, bos?: number): number[][] {
  const per = window - (bos === undefined ? 0 : 1);
  if (per < 2) throw new LlmError("BAD_REQUEST", `an evaluation window of ${window} tokens is too short`);
  const out: number[][] = [];
  for (let at = 0; at < ids.length; at += per) {
    const w = ids.slice(at, at + per);
    if (w.length + (bos === undefined ? 0 : 1) >= 2) out.push(bos === undefined ? w : [bos, ...w]);
  }
  return out;
}

/** The evaluation windows of `text` for an engine (its tokenizer, BOS and context size). */
export function evaluationWindows(
  engine: Engine,
  text: string,
  options: { maxTokens?: number; window?: number } = {},
): number[][] {
  const ids = engine.tokenizer.encode(text, { addBos: false }).slice(0, options.maxTokens ?? Infinity);
  const windows = textWindows(ids, options.window ?? engine.contextSize, engine.tokenizer.bosId);
  if (windows.length === 0) {
    throw new LlmError(
      "BAD_REQUEST",
      `the evaluation text encodes to ${ids.length} tokens; it needs at least 2`,
    );
  }
  return windows;
}

/** Teacher-forced logits of every window (rows per window, as `Engine.logitsFor` returns them). */
export async function windowLogits(
  engine: Engine,
  windows: readonly number[][],
  signal?: AbortSignal,
): Promise<Float32Array[][]> {
  const out: Float32Array[][] = [];
  for (const w of windows) {
    if (w.length > engine.contextSize) {
      throw new LlmError(
        "BAD_REQUEST",
        `an evaluation window of ${w.length} tokens exceeds this model's context (${engine.contextSize}); ` +
          `give both models the same --ctx`,
      );
    }
    out.push(await engine.logitsFor(w, { signal }));
  }
  return out;
}

/** Perplexity from a model's window logits, with KL and top-1 agreement against a reference's. */
export function scoreText(
  windows: readonly number[][],
  rows: readonly Float32Array[][],
  refRows?: readonly Float32Array[][],
): TextEvalResult {
  let n = 0, nll = 0, nllRef = 0, kl = 0, klMax = 0, agree = 0;
  windows.forEach((w, k) => {
    for (let i = 0; i + 1 < w.length; i++) {
      const lq = logSoftmax(rows[k][i]);
      nll -= lq[w[i + 1]];
      if (refRows) {
        if (refRows[k][i].length !== rows[k][i].length) {
          throw new LlmError(
            "BAD_REQUEST",
            `the model's vocabulary (${rows[k][i].length}) differs from the reference's (${
              refRows[k][i].length
            }); ` +
              `compare a quantized model with the float model it came from`,
          );
        }
        const lp = logSoftmax(refRows[k][i]);
        nllRef -= lp[w[i + 1]];
        const d = klDivergence(lp, lq);
        kl += d;
        klMax = Math.max(klMax, d);
        if (argmax(rows[k][i]) === argmax(refRows[k][i])) agree++;
      }
      n++;
    }
  });
  const ppl = (s: number): PerplexityResult => ({ tokens: n, nll: s / n, perplexity: Math.exp(s / n) });
  return {
    windows: windows.length,
    model: ppl(nll),
    ...(refRows ? { reference: ppl(nllRef), klMean: kl / n, klMax, top1Agreement: agree / n } : {}),
  };
}

/**
 * Perplexity of `model` (and of `reference`, with KL and top-1 agreement) over `text`, both engines
 * loaded at once. Windows fit both contexts; `maxTokens` caps the text's tokens. BAD_REQUEST when the
 * text is too short.
 */
export async function evaluateText(
  model: Engine,
  text: string,
  options: { reference?: Engine; maxTokens?: number; signal?: AbortSignal } = {},
): Promise<TextEvalResult> {
  const ref = options.reference;
  if (ref) checkSameVocab(model, ref);
  const window = Math.min(model.contextSize, ref?.contextSize ?? Infinity);
  const windows = evaluationWindows(model, text, { maxTokens: options.maxTokens, window });
  const rows = await windowLogits(model, windows, options.signal);
  return scoreText(windows, rows, ref ? await windowLogits(ref, windows, options.signal) : undefined);
}

function checkSameVocab(a: Engine, b: Engine): void {
  if (a.config.vocabSize !== b.config.vocabSize) {
    throw new LlmError(
      "BAD_REQUEST",
      `the model's vocabulary (${a.config.vocabSize}) differs from the reference's (${b.config.vocabSize}); ` +
        `compare a quantized model with the float model it came from`,
    );
  }
}

// ---- summarization ------------------------------------------------------------------------------------

/** One summarization record (CNN/DailyMail's field names). */
export interface SummaryRecord {
  readonly article: string;
  readonly highlights: string;
}

/**
 * Parse JSONL `{article, highlights}` records (blank lines skipped). BAD_REQUEST naming the line for
 * malformed JSON, missing or non-string fields, or no records.
 */
export function parseSummaryRecords(
  jsonl: string,
  options: { maxRecords?: number; name?: string } = {},
): SummaryRecord[] {
  const where = options.name ?? "summaries";
  const out: SummaryRecord[] = [];
  const lines = jsonl.split("\n");
  for (let i = 0; i < lines.length && out.length < (options.maxRecords ?? Infinity); i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new LlmError("BAD_REQUEST", `${where} line ${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    const r = rec as Record<string, unknown>;
    if (
      typeof rec !== "object" || rec === null || typeof r.article !== "string" ||
      typeof r.highlights !== "string"
    ) {
      throw new LlmError(
        "BAD_REQUEST",
        `${where} line ${i + 1}: a record needs string fields "article" and "highlights", got ${
          line.slice(0, 80)
        }`,
      );
    }
    out.push({ article: r.article, highlights: r.highlights });
  }
  if (out.length === 0) throw new LlmError("BAD_REQUEST", `${where} holds no {article, highlights} records`);
  return out;
}

/** The prompt: the article, then "Summary:" on its own line (the seed's summarize.py style). */
export function summaryPrompt(article: string): string {
  return `${article.trim()}\nSummary:`;
}

/** Most new tokens of a summary (as the seed's summarize.py: `output_len` 100). */
export const SUMMARY_MAX_TOKENS = 100;

/** Summaries of every record by one model, and their ROUGE against the highlights. */
export interface SummaryEvalResult {
  readonly predictions: readonly string[];
  readonly scores: readonly RougeScores[];
  /** Mean F-measures. */
  readonly rouge: Record<keyof RougeScores, number>;
  /** Records whose article was cut so the prompt and 100 new tokens fit the context. */
  readonly truncated: number;
}

/** The prompt ids for an article, its tokens cut from the end (reported) so `room` new tokens fit. */
function promptIds(engine: Engine, article: string, room: number): { ids: number[]; cut: boolean } {
  const budget = engine.contextSize - room;
  let ids = engine.tokenizer.encode(summaryPrompt(article));
  if (ids.length <= budget) return { ids, cut: false };
  const art = engine.tokenizer.encode(article.trim(), { addBos: false });
  for (let keep = Math.max(0, art.length - (ids.length - budget)); keep >= 0; keep -= 8) {
    ids = engine.tokenizer.encode(summaryPrompt(engine.tokenizer.decode(art.slice(0, keep))));
    if (ids.length <= budget) return { ids, cut: true };
  }
  throw new LlmError(
    "CONTEXT_OVERFLOW",
    `a context of ${engine.contextSize} tokens cannot hold a summary prompt and ${room} new tokens; raise --ctx`,
  );
}

/** Greedy summaries (at most 100 new tokens, ending at EOS) of every record, scored with ROUGE. */
export async function evaluateSummaries(
  engine: Engine,
  records: readonly SummaryRecord[],
  options: { maxTokens?: number; signal?: AbortSignal } = {},
): Promise<SummaryEvalResult> {
  const maxTokens = options.maxTokens ?? SUMMARY_MAX_TOKENS;
  const predictions: string[] = [];
  let truncated = 0;
  for (const r of records) {
    const { ids, cut } = promptIds(engine, r.article, maxTokens);
    if (cut) truncated++;
    const out = await engine.complete(ids, { maxTokens, temperature: 0, signal: options.signal });
    predictions.push(out.text.trim());
  }
  const scores = predictions.map((p, i) => rougeScores(p, records[i].highlights));
  return { predictions, scores, rouge: meanRougeF(scores), truncated };
}
