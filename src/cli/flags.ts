/**
 * Flag values shared by cli.ts and the bench scripts: names a user types mapped to the library's types,
 * with a BAD_REQUEST naming the accepted values otherwise.
 * @module
 */
import type { DType } from "../types.ts";
import { LlmError } from "../errors.ts";

const KV_DTYPES: Record<string, DType> = { f32: "f32", f16: "f16", int8: "i8", i8: "i8" };

/** `--kv-dtype f32|f16|int8` → the KV cache dtype (undefined: the backend's default). */
export function kvDTypeFlag(v: string | undefined): DType | undefined {
  if (v === undefined) return undefined;
  const d = KV_DTYPES[v];
  if (!d) throw new LlmError("BAD_REQUEST", `--kv-dtype must be f32, f16 or int8, got "${v}"`);
  return d;
}

/** `--weight-quant int8|int4` → the weight-only quantization applied at load. */
export function weightQuantFlag(v: string | undefined): "int8" | "int4" | undefined {
  if (v === undefined || v === "int8" || v === "int4") return v;
  throw new LlmError("BAD_REQUEST", `--weight-quant must be int8 or int4, got "${v}"`);
}
