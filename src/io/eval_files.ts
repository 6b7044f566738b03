/**
 * `eval` on files: read the text and the JSONL summaries, run the reference (teacher-forced logits,
 * summaries) and free it, then load the model and compare, so only one model is resident at a time;
 * print the two side by side. Deno-specific (files, stdout).
 * @module
 */
import { LlmError } from "../errors.ts";
import { Engine, type EngineInfo, type EngineOptions } from "../engine/engine.ts";
import { loadModel, type LoadModelOptions } from "./load.ts";
import { readText } from "./deno_fs.ts";
import { kvDTypeFlag } from "../cli/flags.ts";
import {
  evaluateSummaries,
  evaluationWindows,
  parseSummaryRecords,
  scoreText,
  SUMMARY_MAX_TOKENS,
  type SummaryEvalResult,
  type TextEvalResult,
  windowLogits,
} from "../eval/evaluate.ts";

/** `cli.ts eval --help`. */
export const EVAL_HELP =
  `Usage: cli.ts eval --model PATH [--reference PATH] [--text FILE] [--summaries FILE.jsonl] [flags]

  --model PATH               the model to evaluate (typically quantized)
  --reference PATH           its unquantized reference: adds KL(reference || model), top-1 agreement,
                             the reference's perplexity and ROUGE side by side
  --tokenizer PATH           tokenizer of --model when it has none
  --reference-tokenizer PATH tokenizer of --reference when it has none (default: --tokenizer)
  --text FILE                perplexity (and KL) over this text, in windows of the context size
  --eval-tokens N            score at most N tokens of --text
  --summaries FILE           JSONL {"article", "highlights"} records: greedy summaries ("<article>\\nSummary:",
                             at most ${SUMMARY_MAX_TOKENS} new tokens), ROUGE-1/2/L/Lsum F-measures
  --max-records N            use the first N records
  --backend NAME             backend of both models (default auto)
  --ctx N                    context size (default min(model's, 4096))
  --kv-dtype T               KV cache of --model: f32 | f16 | int8 (the reference keeps the backend's
                             default unless --reference-kv-dtype)
  --reference-kv-dtype T     KV cache of --reference
  --weight-quant int8|int4   quantize --model's float weights at load (cuda); not the reference
  --format F                 text | json (default text)`;

/** The flags `eval` reads. */
export interface EvalFlags {
  readonly model: string;
  readonly reference?: string;
  readonly tokenizer?: string;
  readonly "reference-tokenizer"?: string;
  readonly "reference-kv-dtype"?: string;
  readonly text?: string;
  readonly summaries?: string;
  readonly "max-records"?: string;
  readonly "eval-tokens"?: string;
}

function intFlag(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    throw new LlmError("BAD_REQUEST", `--${flag} expects a positive integer, got "${v}"`);
  }
  return n;
}

async function engineFor(
  path: string,
  tokenizer: string | undefined,
  load: LoadModelOptions,
  options: EngineOptions,
): Promise<Engine> {
  const loaded = await loadModel(path, { ...load, tokenizer });
  try {
    return await Engine.create(loaded.model, loaded.tokenizer, options);
  } finally {
    loaded.model.close();
  }
}

/** Text eval scores the reference's token ids with the model: both must tokenize alike (checked before loading weights). */
async function checkSameTokenization(f: EvalFlags, load: LoadModelOptions, probe: string): Promise<void> {
  const ids: number[][] = [];
  for (
    const [path, tok] of [[f.model, f.tokenizer], [f.reference!, f["reference-tokenizer"] ?? f.tokenizer]]
  ) {
    const loaded = await loadModel(path!, { ...load, tokenizer: tok });
    loaded.model.close();
    ids.push(loaded.tokenizer.encode(probe, { addBos: false }));
  }
  const [a, b] = ids;
  let at = a.findIndex((id, i) => id !== b[i]);
  if (at < 0 && a.length !== b.length) at = Math.min(a.length, b.length);
  if (at >= 0) {
    throw new LlmError(
      "TOKENIZER_MISMATCH",
      `--model and --reference tokenize the --text differently (first difference at token ${at}), ` +
        `so their logits cannot be compared; give both the same tokenizer (--tokenizer / --reference-tokenizer)`,
    );
  }
}

const pct = (a: number, b: number): string => `${a >= b ? "+" : ""}${((a / b - 1) * 100).toFixed(2)}%`;

function textReport(r: TextEvalResult, hasRef: boolean): string[] {
  const lines = [`text: ${r.model.tokens} scored tokens in ${r.windows} windows`];
  lines.push(
    `  perplexity   model ${r.model.perplexity.toFixed(4)}` +
      (hasRef
        ? `   reference ${r.reference!.perplexity.toFixed(4)}   change ${
          pct(r.model.perplexity, r.reference!.perplexity)
        }`
        : ""),
  );
  if (hasRef) {
    lines.push(
      `  KL(reference || model) mean ${r.klMean!.toExponential(3)} nats, max ${r.klMax!.toExponential(3)}; ` +
        `top-1 agreement ${(r.top1Agreement! * 100).toFixed(2)}%`,
    );
  }
  return lines;
}

function summaryReport(m: SummaryEvalResult, ref: SummaryEvalResult | undefined, n: number): string[] {
  const lines = [
    `summaries: ${n} records, greedy, at most ${SUMMARY_MAX_TOKENS} new tokens (ROUGE F-measure x 100)`,
  ];
  lines.push(`  ${"".padEnd(10)} ${"model".padStart(9)}${ref ? `${"reference".padStart(11)}` : ""}`);
  for (const k of ["rouge1", "rouge2", "rougeL", "rougeLsum"] as const) {
    lines.push(
      `  ${k.padEnd(10)} ${(m.rouge[k] * 100).toFixed(2).padStart(9)}` +
        (ref ? `${(ref.rouge[k] * 100).toFixed(2).padStart(11)}` : ""),
    );
  }
  if (m.truncated) {
    lines.push(
      `  ${m.truncated} articles were cut to fit the context (prompt + ${SUMMARY_MAX_TOKENS} tokens)`,
    );
  }
  return lines;
}

/** Run `eval` and print the report (text or JSON). */
export async function runEvalCommand(
  f: EvalFlags,
  o: { format: "text" | "json"; loadOptions: LoadModelOptions; engineOptions: EngineOptions },
): Promise<void> {
  if (!f.text && !f.summaries) {
    throw new LlmError(
      "BAD_REQUEST",
      "eval needs --text FILE (perplexity, KL) and/or --summaries FILE.jsonl (ROUGE)",
    );
  }
  const maxRecords = intFlag(f["max-records"], "max-records");
  const maxTokens = intFlag(f["eval-tokens"], "eval-tokens");
  // read inputs first: a bad file fails before minutes of model loading
  const text = f.text ? await readText(f.text) : undefined;
  const records = f.summaries
    ? parseSummaryRecords(await readText(f.summaries), { maxRecords, name: f.summaries })
    : undefined;
  const base: EngineOptions = { ...o.engineOptions, maxBatch: 1 };
  // the reference runs first and is freed before the model loads: two 7B models need not fit at once
  let ri: EngineInfo | undefined, windows: number[][] | undefined, refRows: Float32Array[][] | undefined;
  let sumRef: SummaryEvalResult | undefined;
  if (f.reference && text !== undefined) {
    await checkSameTokenization(f, o.loadOptions, text.slice(0, 4096));
  }
  if (f.reference) {
    using reference = await engineFor(f.reference, f["reference-tokenizer"] ?? f.tokenizer, o.loadOptions, {
      ...base,
      kvDType: kvDTypeFlag(f["reference-kv-dtype"]),
      weightQuant: undefined,
    });
    ri = reference.info();
    if (text !== undefined) {
      windows = evaluationWindows(reference, text, { maxTokens });
      refRows = await windowLogits(reference, windows);
    }
    if (records) sumRef = await evaluateSummaries(reference, records);
  }
  using model = await engineFor(f.model, f.tokenizer, o.loadOptions, base);
  let textResult: TextEvalResult | undefined;
  if (text !== undefined) {
    windows ??= evaluationWindows(model, text, { maxTokens });
    textResult = scoreText(windows, await windowLogits(model, windows), refRows);
  }
  const sumModel = records ? await evaluateSummaries(model, records) : undefined;
  const mi = model.info();
  if (o.format === "json") {
    console.log(JSON.stringify(
      {
        model: {
          path: f.model,
          backend: mi.backend,
          weightDTypes: mi.weightDTypes,
          weightBytes: mi.weightBytes,
          kvDType: mi.kvDType,
          kvBytes: mi.kvBytes,
        },
        reference: ri &&
          {
            path: f.reference,
            weightDTypes: ri.weightDTypes,
            weightBytes: ri.weightBytes,
            kvDType: ri.kvDType,
            kvBytes: ri.kvBytes,
          },
        text: textResult,
        summaries: records && {
          records: records.length,
          model: sumModel,
          reference: sumRef,
        },
      },
      null,
      2,
    ));
    return;
  }
  const describe = (i: typeof mi): string =>
    `${i.weightDTypes.join("/")} weights ${(i.weightBytes / 2 ** 20).toFixed(2)} MiB, ${i.kvDType} KV`;
  const lines = [`model:     ${f.model} (${describe(mi)}) on ${mi.backend}`];
  if (ri) lines.push(`reference: ${f.reference} (${describe(ri)})`);
  if (textResult) lines.push(...textReport(textResult, !!refRows));
  if (sumModel) lines.push(...summaryReport(sumModel, sumRef, records!.length));
  console.log(lines.join("\n"));
}
