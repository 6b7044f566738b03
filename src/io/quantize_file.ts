/**
 * `quantize` on files: open a float model (llama2.c, GGUF, HF directory), calibrate when SmoothQuant
 * asks for it, and stream the quantized GGUF to disk one tensor at a time (to `OUT.tmp`, renamed when
 * complete, so a failed run never leaves a truncated model behind). Deno-specific (files).
 * @module
 */
import type { BackendName, DType } from "../types.ts";
import { LlmError } from "../errors.ts";
import { openModelFile, openTokenizerData } from "./load.ts";
import { readText } from "./deno_fs.ts";
import { createTokenizer } from "../format/tokenizer_load.ts";
import { streamGguf } from "../format/gguf_write.ts";
import { byteLengthOf } from "../dtype.ts";
import { collectActivationStats } from "../quant/calibrate.ts";
import { planQuantizedGguf } from "../quant/quantize_model.ts";
import type { QuantScheme } from "../quant/schemes.ts";

/** Options of {@link quantizeModelFile}. */
export interface QuantizeFileOptions {
  /** The scheme. */
  readonly scheme: QuantScheme;
  /** A tokenizer file when the model carries none (llama2.c). */
  readonly tokenizer?: string;
  /** A text file for SmoothQuant calibration (required by `w8a8_smoothquant`). */
  readonly calibration?: string;
  /** SmoothQuant alpha (default 0.5). */
  readonly alpha?: number;
  /** Most calibration tokens (default 4096). */
  readonly calibrationTokens?: number;
  /** Backend that runs calibration (default ref). */
  readonly backend?: BackendName;
}

/** What was written. */
export interface QuantizeReport {
  readonly out: string;
  readonly scheme: QuantScheme;
  readonly bytes: number;
  /** Tensors and bytes per GGUF dtype. */
  readonly dtypes: Record<string, { tensors: number; bytes: number }>;
  /** Bits per weight over the 2-D weight matrices (scales included). */
  readonly matrixBitsPerWeight: number;
  readonly calibrationTokens?: number;
  readonly alpha?: number;
  readonly seconds: number;
}

/** Quantize `modelPath` into the GGUF file `out`. */
export async function quantizeModelFile(
  modelPath: string,
  out: string,
  options: QuantizeFileOptions,
): Promise<QuantizeReport> {
  const t0 = performance.now();
  await checkWritable(out); // before minutes of calibration and quantization
  const model = await openModelFile(modelPath);
  try {
    const tokData = options.tokenizer
      ? await openTokenizerData(options.tokenizer, model.config.vocabSize)
      : model.tokenizer;
    if (!tokData) {
      throw new LlmError(
        "BAD_REQUEST",
        `${modelPath} carries no tokenizer and the GGUF must hold one (llama.cpp reads it from the file); ` +
          `pass --tokenizer`,
      );
    }
    if (options.scheme === "w8a8_smoothquant" && !options.calibration) {
      throw new LlmError(
        "BAD_REQUEST",
        "w8a8_smoothquant needs --calibration FILE (a text to collect activation maxima over)",
      );
    }
    const activations = options.calibration
      ? await collectActivationStats(model, createTokenizer(tokData), await readText(options.calibration), {
        backend: options.backend,
        maxTokens: options.calibrationTokens,
      })
      : undefined;
    const plan = planQuantizedGguf(model, {
      scheme: options.scheme,
      tokenizer: tokData,
      activations,
      alpha: options.alpha,
      name: modelPath.replace(/\/+$/, "").split("/").pop(),
    });
    const dtypes: Record<string, { tensors: number; bytes: number }> = {};
    let matrixBytes = 0, matrixElems = 0;
    for (const t of plan.tensors) {
      const n = t.shape.reduce((a, b) => a * b, 1), b = byteLengthOf(t.dtype as DType, n);
      const d = dtypes[t.dtype] ??= { tensors: 0, bytes: 0 };
      d.tensors++;
      d.bytes += b;
      if (t.shape.length === 2) {
        matrixBytes += b;
        matrixElems += n;
      }
    }
    const tmp = `${out}.tmp`;
    let bytes = 0;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true }).catch((e) => {
      throw writeError(tmp, e);
    });
    try {
      for await (const chunk of streamGguf(plan)) {
        for (let off = 0; off < chunk.byteLength;) off += await file.write(chunk.subarray(off));
        bytes += chunk.byteLength;
      }
    } catch (e) {
      file.close();
      await Deno.remove(tmp).catch(() => {});
      throw writeError(tmp, e);
    }
    file.close();
    await Deno.rename(tmp, out).catch(async (e) => {
      await Deno.remove(tmp).catch(() => {});
      throw writeError(out, e);
    });
    return {
      out,
      scheme: options.scheme,
      bytes,
      dtypes,
      matrixBitsPerWeight: (8 * matrixBytes) / matrixElems,
      ...(activations ? { calibrationTokens: activations.tokens, alpha: options.alpha ?? 0.5 } : {}),
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    model.close();
  }
}

/** A failed write as an LlmError naming the path and what to do (LlmErrors from the writer pass through). */
function writeError(path: string, e: unknown): LlmError {
  if (e instanceof LlmError) return e;
  const why = e instanceof Deno.errors.NotFound
    ? "its folder does not exist"
    : e instanceof Deno.errors.IsADirectory
    ? "it is a directory"
    : e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
    ? "permission denied"
    : (e as Error)?.message ?? String(e);
  return new LlmError(
    "BAD_REQUEST",
    `cannot write ${path} (${why}); pass an --out path in a writable folder`,
    {
      cause: e,
    },
  );
}

/** Fail early when `out` cannot be written: it is a directory, or `out.tmp` cannot be created beside it. */
async function checkWritable(out: string): Promise<void> {
  const st = await Deno.stat(out).catch(() => undefined);
  if (st?.isDirectory) throw writeError(out, new Deno.errors.IsADirectory(out));
  const tmp = `${out}.tmp`;
  try {
    (await Deno.open(tmp, { write: true, create: true })).close();
  } catch (e) {
    throw writeError(tmp, e);
  }
  await Deno.remove(tmp).catch(() => {});
}
