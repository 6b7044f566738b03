/**
 * GGUF v3 (or v2) writer: typed metadata, tensor infos and aligned tensor data, as llama.cpp reads
 * them. Used by tests to build synthetic models and by converters/quantizers to write real ones.
 * Output is a list of chunks (the header, then each tensor's own bytes and padding) so a caller can
 * stream a multi-gigabyte model to a file without ever joining it into one buffer.
 * @module
 */
import type { DType, Shape } from "../types.ts";
import { LlmError } from "../errors.ts";
import { byteLengthOf, dtypeInfo, quantize } from "../dtype.ts";
import type { LlamaConfig } from "../model/config.ts";
import { type TokenizerData, TokenType } from "./tokenizer.ts";
import {
  ggmlTypeOf,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_GLOBAL_TENSORS,
  GGUF_LAYER_TENSORS,
  GGUF_VALUE_TYPES,
  type GgufIntType,
  type GgufScalarType,
} from "./gguf.ts";

/** A typed array GGUF can store as an array (its item type follows from the array kind). */
export type GgufTypedArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

/** A scalar as JS holds it. */
export type GgufScalar = number | bigint | boolean | string;

/**
 * A metadata value with its GGUF type spelled out, for when inference would pick the wrong one:
 * `{ type: "f32", value: 1 }`, `{ type: "u64", value: 5n }`, `{ type: "array", itemType: "i32", value: [1, 2] }`,
 * `{ type: "array", itemType: "array", value: [[1, 2], ["a"]] }` (each inner array typed on its own).
 */
export type GgufTypedValue =
  | { readonly type: GgufScalarType; readonly value: GgufScalar }
  | {
    readonly type: "array";
    readonly itemType: GgufScalarType;
    readonly value: readonly GgufScalar[] | GgufTypedArray;
  }
  | { readonly type: "array"; readonly itemType: "array"; readonly value: readonly GgufValue[] };

/**
 * A metadata value to write. Plain values are typed by inference: strings → string, booleans → bool,
 * bigints → u64 (i64 when negative), integers → u32 (i32 when negative, u64/i64 past 32 bits), other
 * numbers → f32. Plain arrays take the narrowest of those types that fits every item (integers and
 * floats mixed → f32; empty → u32); typed arrays keep their own type. Tag a value
 * ({@link GgufTypedValue}) whenever the type matters to a reader, e.g. `1` meant as f32.
 */
export type GgufValue = GgufScalar | readonly GgufValue[] | GgufTypedArray | GgufTypedValue;

/** A tensor to write: a GGUF name, our dtype, a row-major shape and its bytes in that dtype's layout. */
export interface GgufTensorInput {
  readonly name: string;
  readonly dtype: DType;
  /** Row-major (outermost first); written reversed as ggml `ne`. */
  readonly shape: Shape;
  readonly data: Uint8Array;
}

/** A tensor whose bytes may be produced on demand (e.g. quantized one at a time while streaming). */
export interface GgufLazyTensorInput extends Omit<GgufTensorInput, "data"> {
  readonly data: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

/** Options of {@link writeGguf}. */
export interface GgufWriteOptions<T extends Omit<GgufTensorInput, "data"> = GgufTensorInput> {
  /** Key/values in the order to write them. `general.alignment` is always written (as u32). */
  readonly metadata: Readonly<Record<string, GgufValue>>;
  readonly tensors: readonly T[];
  /** Data alignment, a power of two (default: `general.alignment` from metadata, else 32). */
  readonly alignment?: number;
  /** GGUF version (default 3; v2 has the same layout). */
  readonly version?: 2 | 3;
}

function bad(msg: string): LlmError {
  return new LlmError("BAD_REQUEST", `writeGguf: ${msg}`);
}

/** A growable little-endian byte buffer for the header. */
class Out {
  buf = new Uint8Array(1 << 12);
  dv = new DataView(this.buf.buffer);
  len = 0;
  static #enc = new TextEncoder();

  #room(n: number): number {
    if (this.len + n > this.buf.byteLength) {
      const next = new Uint8Array(Math.max(this.buf.byteLength * 2, this.len + n));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
      this.dv = new DataView(next.buffer);
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  u32(v: number): void {
    const at = this.#room(4);
    this.dv.setUint32(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.#room(8);
    this.dv.setBigUint64(at, BigInt(v), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.#room(b.byteLength);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = Out.#enc.encode(s);
    this.u64(b.byteLength);
    this.bytes(b);
  }
  /** A scalar of a known type, range-checked so a value never wraps silently. */
  scalar(t: GgufScalarType, v: GgufScalar, key: string): void {
    const fail = (): LlmError =>
      bad(`metadata "${key}": ${String(v)} is not a valid ${t}; tag the value with its type`);
    if (t === "string") {
      if (typeof v !== "string") throw fail();
      return this.string(v);
    }
    if (t === "bool") {
      if (typeof v !== "boolean") throw fail();
      const at = this.#room(1);
      this.buf[at] = v ? 1 : 0;
      return;
    }
    if (t === "f32" || t === "f64") {
      if (typeof v !== "number") throw fail();
      // #room may grow the buffer: take the offset before touching this.dv
      const at = this.#room(t === "f32" ? 4 : 8);
      if (t === "f32") this.dv.setFloat32(at, v, true);
      else this.dv.setFloat64(at, v, true);
      return;
    }
    if (!(typeof v === "bigint" || (typeof v === "number" && Number.isSafeInteger(v))) || !inRange(t, v)) {
      throw fail();
    }
    const at = this.#room(INT_BYTES[t]);
    if (INT_BYTES[t] === 8) return this.dv.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
    // Fits 32 bits (checked above), so int32 shifts give its two's-complement bytes.
    const n = Number(v);
    for (let i = 0; i < INT_BYTES[t]; i++) this.buf[at + i] = (n >> (8 * i)) & 0xff;
  }
}

const INT_BYTES: Readonly<Record<GgufIntType, number>> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  u64: 8,
  i64: 8,
};
const INT_RANGE: Readonly<Record<GgufIntType, readonly [bigint, bigint]>> = Object.fromEntries(
  (Object.keys(INT_BYTES) as GgufIntType[]).map((t) => {
    const bits = BigInt(8 * INT_BYTES[t]);
    return [t, t[0] === "u" ? [0n, 2n ** bits - 1n] : [-(2n ** (bits - 1n)), 2n ** (bits - 1n) - 1n]];
  }),
) as unknown as Record<GgufIntType, readonly [bigint, bigint]>;

/** Whether an integer fits a type; plain numbers compare as numbers so big arrays skip BigInt. */
function inRange(t: GgufIntType, v: number | bigint): boolean {
  const [lo, hi] = INT_RANGE[t];
  return typeof v === "number" ? v >= Number(lo) && v <= Number(hi) : v >= lo && v <= hi;
}

function typedArrayItem(v: unknown): GgufScalarType | undefined {
  if (v instanceof Uint8Array) return "u8";
  if (v instanceof Int8Array) return "i8";
  if (v instanceof Uint16Array) return "u16";
  if (v instanceof Int16Array) return "i16";
  if (v instanceof Uint32Array) return "u32";
  if (v instanceof Int32Array) return "i32";
  if (v instanceof Float32Array) return "f32";
  if (v instanceof Float64Array) return "f64";
  if (v instanceof BigUint64Array) return "u64";
  if (v instanceof BigInt64Array) return "i64";
  return undefined;
}

function isTagged(v: GgufValue): v is GgufTypedValue {
  return typeof v === "object" && v !== null && !Array.isArray(v) && typedArrayItem(v) === undefined;
}

/** The scalar type inference picks for a set of plain scalars (see {@link GgufValue}). */
function inferScalar(items: ArrayLike<GgufScalar>, key: string): GgufScalarType {
  const all = (p: (x: GgufScalar) => boolean): boolean => Array.prototype.every.call(items, p) as boolean;
  if (items.length === 0) return "u32";
  if (all((x) => typeof x === "string")) return "string";
  if (all((x) => typeof x === "boolean")) return "bool";
  if (!all((x) => typeof x === "number" || typeof x === "bigint")) {
    throw bad(`metadata "${key}" mixes strings, booleans and numbers; an array holds one type`);
  }
  if (all((x) => typeof x === "bigint" || Number.isSafeInteger(x))) {
    const fits = (t: GgufIntType): boolean => all((x) => inRange(t, x as number | bigint));
    const hasBig = !all((x) => typeof x === "number");
    if (!hasBig && fits("u32")) return "u32";
    if (!hasBig && fits("i32")) return "i32";
    return fits("u64") ? "u64" : "i64";
  }
  if (all((x) => typeof x === "number")) return "f32";
  throw bad(`metadata "${key}" mixes bigints and fractional numbers`);
}

/** Resolve a value to a tagged one so encoding has a single path. */
function tag(v: GgufValue, key: string): GgufTypedValue {
  const typed = typedArrayItem(v);
  if (typed) return { type: "array", itemType: typed, value: v as GgufTypedArray };
  if (Array.isArray(v)) {
    const items = v as readonly GgufValue[];
    if (items.length > 0 && items.every((x) => Array.isArray(x) || typedArrayItem(x) || isTagged(x))) {
      return { type: "array", itemType: "array", value: items };
    }
    if (items.some((x) => typeof x === "object")) {
      throw bad(
        `metadata "${key}": a plain array holds scalars or arrays, not both; tag it with its itemType`,
      );
    }
    return { type: "array", itemType: inferScalar(items as GgufScalar[], key), value: items as GgufScalar[] };
  }
  if (isTagged(v)) {
    const ok = v.type === "array"
      ? GGUF_VALUE_TYPES.includes(v.itemType) &&
        (Array.isArray(v.value) || typedArrayItem(v.value) !== undefined)
      : GGUF_VALUE_TYPES.includes(v.type);
    if (!ok) {
      const types = GGUF_VALUE_TYPES.join(", ");
      throw bad(
        `metadata "${key}" is not a valid tagged value (type ${String(v.type)}); types are ${types}, ` +
          `arrays are { type: "array", itemType, value: [...] }`,
      );
    }
    return v;
  }
  return { type: inferScalar([v as GgufScalar], key), value: v as GgufScalar };
}

function writeValue(out: Out, v: GgufTypedValue, key: string, depth: number): void {
  if (v.type !== "array") return out.scalar(v.type, v.value, key);
  if (depth > 8) throw bad(`metadata "${key}" nests arrays more than 8 deep`);
  out.u32(GGUF_VALUE_TYPES.indexOf(v.itemType));
  out.u64(v.value.length);
  if (v.itemType === "array") {
    for (const item of v.value as readonly GgufValue[]) {
      const t = tag(item, key);
      if (t.type !== "array") {
        throw bad(`metadata "${key}": an array of arrays holds a non-array ${String(item)}`);
      }
      writeValue(out, t, key, depth + 1);
    }
    return;
  }
  for (let i = 0; i < v.value.length; i++) out.scalar(v.itemType, v.value[i], key);
}

function isPow2(a: number): boolean {
  return Number.isSafeInteger(a) && a > 0 && a <= 2 ** 30 && (a & (a - 1)) === 0;
}

/** Encode the header and work out each tensor's padded size; shared by the eager and streaming writers. */
function plan(options: GgufWriteOptions<Omit<GgufTensorInput, "data">>): {
  header: Uint8Array;
  sizes: number[];
  alignment: number;
} {
  const meta = options.metadata;
  const given = meta["general.alignment"];
  const fromMeta = given === undefined ? undefined : tag(given, "general.alignment").value;
  if (fromMeta !== undefined && typeof fromMeta !== "number" && typeof fromMeta !== "bigint") {
    throw bad(`general.alignment = ${String(fromMeta)} is not a number`);
  }
  const alignment = options.alignment ?? (fromMeta === undefined ? GGUF_DEFAULT_ALIGNMENT : Number(fromMeta));
  if (!isPow2(alignment)) throw bad(`alignment ${alignment} is not a power of two (32 is the usual value)`);
  if (fromMeta !== undefined && Number(fromMeta) !== alignment) {
    throw bad(`general.alignment ${fromMeta} in metadata disagrees with the alignment option ${alignment}`);
  }
  const version = options.version ?? 3;
  if (version !== 2 && version !== 3) throw bad(`GGUF version ${version} cannot be written (2 or 3)`);

  const out = new Out();
  out.bytes(new TextEncoder().encode("GGUF"));
  out.u32(version);
  out.u64(options.tensors.length);
  const keys = Object.keys(meta).filter((k) => k !== "general.alignment");
  out.u64(keys.length + 1);
  for (const key of keys) {
    const v = tag(meta[key], key);
    out.string(key);
    out.u32(GGUF_VALUE_TYPES.indexOf(v.type));
    writeValue(out, v, key, 0);
  }
  // llama.cpp reads general.alignment as u32 only, whatever type the caller gave it.
  out.string("general.alignment");
  out.u32(GGUF_VALUE_TYPES.indexOf("u32"));
  out.u32(alignment);

  const sizes: number[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of options.tensors) {
    const n = checkTensor(t, names);
    const bytes = byteLengthOf(t.dtype, n, t.name);
    out.string(t.name);
    out.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) out.u64(t.shape[d]); // ggml ne: innermost first
    out.u32(ggmlTypeOf(t.dtype));
    out.u64(offset);
    sizes.push(bytes);
    offset += alignUp(bytes, alignment);
  }
  const header = new Uint8Array(alignUp(out.len, alignment));
  header.set(out.buf.subarray(0, out.len));
  return { header, sizes, alignment };
}

function checkTensor(t: Omit<GgufTensorInput, "data">, names: Set<string>): number {
  if (typeof t.name !== "string" || t.name === "" || names.has(t.name)) {
    throw bad(`tensor name ${JSON.stringify(t.name)} is empty or repeated; names must be unique`);
  }
  names.add(t.name);
  // llama.cpp keeps tensor names in 64-byte buffers (GGML_MAX_NAME, NUL included).
  if (new TextEncoder().encode(t.name).byteLength > 63) throw bad(`tensor name ${t.name} is over 63 bytes`);
  const dims = t.shape;
  if (dims.length < 1 || dims.length > 4 || !dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`tensor ${t.name} shape (${dims.join(", ")}) must have 1..4 non-negative integer dimensions`);
  }
  const { blockSize } = dtypeInfo(t.dtype);
  if (dims[dims.length - 1] % blockSize !== 0) {
    throw bad(
      `tensor ${t.name} rows of ${dims[dims.length - 1]} are not a whole number of ${t.dtype} blocks`,
    );
  }
  const n = dims.reduce((a, b) => a * b, 1);
  if (!Number.isSafeInteger(n)) throw bad(`tensor ${t.name} shape (${dims.join(", ")}) is too large`);
  return n;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

function checkData(name: string, data: Uint8Array, want: number): Uint8Array {
  if (!(data instanceof Uint8Array) || data.byteLength !== want) {
    throw bad(`tensor ${name} has ${data?.byteLength} bytes of data, its dtype and shape need ${want}`);
  }
  return data;
}

/**
 * Encode a GGUF file as chunks: the header (padded), then per tensor its data (the caller's array,
 * not copied) and zero padding up to the alignment. Write them in order, or join with
 * {@link writeGgufBytes}. Throws `BAD_REQUEST` for values or tensors that cannot be encoded.
 */
export function writeGguf(options: GgufWriteOptions): Uint8Array[] {
  const { header, sizes, alignment } = plan(options);
  const zeros = new Uint8Array(alignment);
  const chunks = [header];
  options.tensors.forEach((t, i) => {
    chunks.push(checkData(t.name, t.data, sizes[i]));
    const pad = alignUp(sizes[i], alignment) - sizes[i];
    if (pad) chunks.push(zeros.subarray(0, pad));
  });
  return chunks;
}

/** {@link writeGguf} joined into one array (for tests and small models). */
export function writeGgufBytes(options: GgufWriteOptions): Uint8Array {
  const chunks = writeGguf(options);
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Stream a GGUF file: like {@link writeGguf}, but each tensor's data may be a function called only when
 * its turn comes, so a quantizer holds one tensor in memory at a time.
 */
export async function* streamGguf(
  options: GgufWriteOptions<GgufLazyTensorInput>,
): AsyncGenerator<Uint8Array> {
  const { header, sizes, alignment } = plan(options);
  const zeros = new Uint8Array(alignment);
  yield header;
  for (let i = 0; i < options.tensors.length; i++) {
    const t = options.tensors[i];
    yield checkData(t.name, typeof t.data === "function" ? await t.data() : t.data, sizes[i]);
    const pad = alignUp(sizes[i], alignment) - sizes[i];
    if (pad) yield zeros.subarray(0, pad);
  }
}

// ---- LLaMA naming and metadata ----------------------------------------------------------------------

/** The GGUF name of a canonical tensor name (`l3.wq` → `blk.3.attn_q.weight`); BAD_REQUEST for others. */
export function ggufTensorName(canonical: string): string {
  for (const [g, c] of Object.entries(GGUF_GLOBAL_TENSORS)) if (c === canonical) return g;
  const m = /^l(\d+)\.(\w+)$/.exec(canonical);
  const stem = m && Object.entries(GGUF_LAYER_TENSORS).find(([, c]) => c === m[2])?.[0];
  if (!m || !stem) {
    throw bad(`${canonical} is not a canonical LLaMA tensor name (tok_embd, l0.wq, norm, ...)`);
  }
  return `blk.${m[1]}.${stem}.weight`;
}

const u32 = (value: number): GgufTypedValue => ({ type: "u32", value });
const f32 = (value: number): GgufTypedValue => ({ type: "f32", value });

/**
 * The `general.*`, `llama.*` and `tokenizer.*` metadata for a LLaMA model, typed as llama.cpp expects
 * (counts u32, epsilon and RoPE base f32, tokens string[], scores f32[], token_type i32[]), so what
 * {@link writeGguf} writes round-trips through `parseGguf` and loads in llama.cpp.
 *
 * Notes: `ropeScaling` cannot be expressed in metadata; GGUF carries it as the `rope_freqs.weight`
 * tensor ({@link ropeFreqsTensor}, from `config.ropeFreqFactors`). A tokenizer storing literal spaces
 * (llama2.c) is written with "▁" as GGUF expects. Missing token types are derived (byte tokens `<0xXX>`,
 * unknown, control for BOS/EOS/pad) because llama.cpp needs them for byte fallback. Only the first two
 * `eotIds` are kept (as `eot_token_id` and `eom_token_id`).
 */
export function ggufMetadataForLlama(
  config: LlamaConfig,
  tokenizer?: TokenizerData,
): Record<string, GgufValue> {
  const m: Record<string, GgufValue> = {
    "general.architecture": "llama",
    "llama.vocab_size": u32(config.vocabSize),
    "llama.context_length": u32(config.seqLen),
    "llama.embedding_length": u32(config.dim),
    "llama.block_count": u32(config.nLayers),
    "llama.feed_forward_length": u32(config.hiddenDim),
    "llama.rope.dimension_count": u32(config.headDim),
    "llama.attention.head_count": u32(config.nHeads),
    "llama.attention.head_count_kv": u32(config.nKvHeads),
    "llama.attention.key_length": u32(config.headDim),
    "llama.attention.value_length": u32(config.headDim),
    "llama.attention.layer_norm_rms_epsilon": f32(config.normEps),
    "llama.rope.freq_base": f32(config.ropeTheta),
  };
  if (!tokenizer) return m;
  const tk = tokenizer;
  const tokens = tk.spaceIsLiteral ? tk.tokens.map((t) => t.replaceAll(" ", "\u2581")) : tk.tokens;
  m["tokenizer.ggml.model"] = tk.kind === "spm" ? "llama" : "gpt2";
  if (tk.pre !== undefined) m["tokenizer.ggml.pre"] = tk.pre;
  m["tokenizer.ggml.tokens"] = { type: "array", itemType: "string", value: tokens };
  if (tk.scores) m["tokenizer.ggml.scores"] = { type: "array", itemType: "f32", value: tk.scores };
  m["tokenizer.ggml.token_type"] = {
    type: "array",
    itemType: "i32",
    value: tk.tokenTypes ?? deriveTypes(tk),
  };
  if (tk.merges) m["tokenizer.ggml.merges"] = { type: "array", itemType: "string", value: tk.merges };
  const ids: [string, number | undefined][] = [
    ["bos_token_id", tk.bosId],
    ["eos_token_id", tk.eosId],
    ["unknown_token_id", tk.unkId],
    ["padding_token_id", tk.padId],
    ["eot_token_id", tk.eotIds?.[0]],
    ["eom_token_id", tk.eotIds?.[1]],
  ];
  for (const [k, v] of ids) if (v !== undefined) m[`tokenizer.ggml.${k}`] = u32(v);
  if (tk.addBos !== undefined) m["tokenizer.ggml.add_bos_token"] = tk.addBos;
  if (tk.addSpacePrefix !== undefined) m["tokenizer.ggml.add_space_prefix"] = tk.addSpacePrefix;
  if (tk.chatTemplate !== undefined) m["tokenizer.chat_template"] = tk.chatTemplate;
  return m;
}

function deriveTypes(tk: TokenizerData): number[] {
  const control = new Set([tk.bosId, tk.eosId, tk.padId, ...(tk.eotIds ?? [])]);
  return tk.tokens.map((t, i) => {
    if (i === tk.unkId) return TokenType.UNKNOWN;
    if (control.has(i)) return TokenType.CONTROL;
    if (tk.kind === "spm" && /^<0x[0-9A-Fa-f]{2}>$/.test(t)) return TokenType.BYTE;
    return TokenType.NORMAL;
  });
}

/** The `rope_freqs.weight` tensor (f32) for a config with `ropeFreqFactors`, else undefined. */
export function ropeFreqsTensor(config: LlamaConfig): GgufTensorInput | undefined {
  const f = config.ropeFreqFactors;
  if (!f) return undefined;
  return {
    name: "rope_freqs.weight",
    dtype: "f32",
    shape: [f.length],
    data: quantize("f32", new Float32Array(f)),
  };
}
