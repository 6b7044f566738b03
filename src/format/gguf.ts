/**
 * GGUF (versions 2 and 3) reader: the header (metadata key/values and tensor infos) and a LLaMA model
 * built from it. Pure parsing over a {@link ByteSource}; tensor bytes stay in the file until a loader
 * reads them one at a time.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key, u32 type,
 * value), n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset), padding to
 * `general.alignment` (default 32), then the data section that tensor offsets are relative to.
 * A string is a u64 byte length and UTF-8 bytes; an array is a u32 item type, a u64 count and the items.
 *
 * The file is untrusted: every count and length is checked against the bytes that remain before
 * anything is allocated, so a corrupt or hostile file fails with `MODEL_FORMAT`, never with a huge
 * allocation, a hang or a stray RangeError.
 * @module
 */
import type { DType, Shape } from "../types.ts";
import { LlmError } from "../errors.ts";
import { type ByteSource, SourceReader } from "../io/byte_source.ts";
import { byteLengthOf, dequantize, dtypeInfo, DTYPES } from "../dtype.ts";
import { type LlamaConfig, validateConfig } from "../model/config.ts";
import { type ModelFile, type TensorEntry, validateTensors } from "./model_file.ts";
import type { TokenizerData } from "./tokenizer.ts";
import { activationQuantOf, QUANTIZATION_KEY } from "../quant/schemes.ts";

/** GGUF integer metadata types. */
export type GgufIntType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64";
/** A non-array GGUF metadata value type. */
export type GgufScalarType = GgufIntType | "f32" | "f64" | "bool" | "string";
/** A GGUF metadata value type. */
export type GgufValueType = GgufScalarType | "array";
/** Metadata value types in the order GGUF numbers them (type id = index). */
export const GGUF_VALUE_TYPES: readonly GgufValueType[] =
  "u8 i8 u16 i16 u32 i32 f32 bool string array u64 i64 f64"
    .split(" ") as GgufValueType[];
/** A value type as read, arrays spelled with their item type: `"u32"`, `"array<string>"`, `"array<array<u8>>"`. */
export type GgufTypeName = GgufScalarType | `array<${string}>`;

/**
 * A metadata value as read. 64-bit integers are numbers when they fit 2^53, bigints beyond. Scalar f32
 * values are given as the shortest decimal that rounds to the stored float (so an epsilon written as
 * 1e-5 reads back as 1e-5; `Math.fround` recovers the exact bits); f32 arrays hold the exact floats.
 */
export type GgufData = number | bigint | boolean | string | readonly GgufData[];

/** One metadata entry: its value and its type as stored. */
export interface GgufKv {
  readonly type: GgufTypeName;
  readonly value: GgufData;
}

/** One tensor info from the header. */
export interface GgufTensorInfo {
  /** The tensor name as stored (`blk.0.attn_q.weight`). */
  readonly name: string;
  /** Dimensions in ggml order: `ne[0]` is the innermost (fastest-varying) one. */
  readonly ne: readonly number[];
  /** The ggml type id. */
  readonly ggmlType: number;
  /** Our dtype, or undefined when llama.ts cannot handle the ggml type (see {@link ggmlTypeName}). */
  readonly dtype: DType | undefined;
  /** Absolute byte offset of the data in the file (data section start + the stored offset). */
  readonly byteOffset: number;
  /** Byte length, or undefined for an unsupported type. */
  readonly byteLength: number | undefined;
}

/** A parsed GGUF header. */
export interface GgufHeader {
  readonly version: 2 | 3;
  /** Metadata in file order. */
  readonly metadata: ReadonlyMap<string, GgufKv>;
  readonly tensors: readonly GgufTensorInfo[];
  /** `general.alignment`, 32 when absent. */
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
}

/** The data-section alignment GGUF uses when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;

// ggml type names by id. Ids 4, 5, 31..33 and 36..38 are layouts ggml has since removed.
const GGML_NAMES: readonly string[] = (
  "F32 F16 Q4_0 Q4_1 Q4_2 Q4_3 Q5_0 Q5_1 Q8_0 Q8_1 Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K IQ2_XXS IQ2_XS IQ3_XXS IQ1_S " +
  "IQ4_NL IQ3_S IQ2_S IQ4_XS I8 I16 I32 I64 F64 IQ1_M BF16 Q4_0_4_4 Q4_0_4_8 Q4_0_8_8 TQ1_0 TQ2_0 IQ4_NL_4_4 " +
  "IQ4_NL_4_8 IQ4_NL_8_8 MXFP4 NVFP4 Q1_0"
).split(" ");

/** The ggml name of a type id (`13` → `"Q5_K"`), or `"unknown ggml type 99"`. */
export function ggmlTypeName(id: number): string {
  return GGML_NAMES[id] ?? `unknown ggml type ${id}`;
}

/** Our dtype for a ggml type id, or undefined when it is not supported. Our names are ggml's, lower-cased. */
export function dtypeFromGgml(id: number): DType | undefined {
  const name = GGML_NAMES[id]?.toLowerCase();
  return DTYPES.find((d) => d === name);
}

/** The ggml type id of one of our dtypes. */
export function ggmlTypeOf(d: DType): number {
  const id = GGML_NAMES.indexOf(d.toUpperCase());
  if (id < 0) throw new LlmError("UNSUPPORTED_DTYPE", `dtype ${d} has no ggml type id`);
  return id;
}

/** Human-readable list of the ggml types llama.ts loads, for error messages. */
export const SUPPORTED_GGML_TYPES: string = DTYPES.map((d) => d.toUpperCase()).join(", ");

/** GGUF global tensor names and our canonical ones. */
export const GGUF_GLOBAL_TENSORS: Readonly<Record<string, string>> = {
  "token_embd.weight": "tok_embd",
  "output_norm.weight": "norm",
  "output.weight": "output",
};

/** GGUF per-layer tensor stems (`blk.N.<stem>.weight`) and our canonical per-layer names (`lN.<name>`). */
export const GGUF_LAYER_TENSORS: Readonly<Record<string, string>> = {
  attn_norm: "attn_norm",
  attn_q: "wq",
  attn_k: "wk",
  attn_v: "wv",
  attn_output: "wo",
  ffn_norm: "ffn_norm",
  ffn_gate: "w1",
  ffn_down: "w2",
  ffn_up: "w3",
};

/** Our canonical name for a GGUF tensor name (`blk.3.attn_q.weight` → `l3.wq`), undefined for others. */
export function canonicalTensorName(ggufName: string): string | undefined {
  const g = GGUF_GLOBAL_TENSORS[ggufName];
  if (g !== undefined) return g;
  const m = /^blk\.(0|[1-9]\d{0,6})\.([a-z_]+)\.weight$/.exec(ggufName);
  const stem = m && Object.hasOwn(GGUF_LAYER_TENSORS, m[2]) ? GGUF_LAYER_TENSORS[m[2]] : undefined;
  return m && stem ? `l${m[1]}.${stem}` : undefined;
}

// ---- header -------------------------------------------------------------------------------------------

/** Bytes of a scalar; a string's smallest encoding is its u64 length. */
function scalarBytes(t: GgufScalarType): number {
  return t === "bool" ? 1 : t === "string" ? 8 : Number(t.slice(1)) / 8;
}
const ARRAY_MIN_BYTES = 12; // u32 item type + u64 count
const MAX_DEPTH = 8; // arrays of arrays deeper than this are not metadata anyone writes; bound the recursion
const KV_MIN_BYTES = 8 + 4 + 1; // empty key, type, smallest value
const TENSOR_MIN_BYTES = 8 + 4 + 8 + 4 + 8; // empty name, n_dims, one ne, type, offset
const MAX_DIMS = 4; // GGML_MAX_DIMS
// Absolute caps, far above real models (vocabularies ~256k, a few thousand tensors, tokenizer.json
// embedded as a ~10 MB string). The remaining-bytes check alone is not enough in a multi-GB file: a
// flipped byte in the vocabulary's count would still "fit" and ask for gigabytes.
const MAX_ARRAY = 1 << 22;
const MAX_STRING = 1 << 28;
const MAX_KV = 1 << 20;
const MAX_TENSORS = 1 << 20;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
// ignoreBOM keeps a leading U+FEFF: Llama-2 has it as a token (id 30143)
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

function corrupt(src: ByteSource, msg: string): LlmError {
  return new LlmError(
    "MODEL_FORMAT",
    `${src.name}: ${msg}; the GGUF file is corrupt or truncated: download it again`,
  );
}

/** Fail before allocating when `count` items of at least `minBytes` each cannot fit in what remains. */
function needBytes(r: SourceReader, count: bigint, minBytes: number, what: string, max: number): void {
  const need = count * BigInt(minBytes);
  if (count > BigInt(max)) {
    throw corrupt(r.source, `${what} = ${count} at offset ${r.pos} is absurd (the limit is ${max})`);
  }
  if (need > BigInt(r.remaining)) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${r.source.name}: ${what} = ${count} at offset ${r.pos} needs at least ${need} bytes but only ` +
        `${r.remaining} remain; the file is truncated or corrupt: download it again`,
    );
  }
}

async function readString(r: SourceReader, what: string): Promise<string> {
  const len = await r.u64Big();
  needBytes(r, len, 1, `${what} length`, MAX_STRING);
  return utf8.decode(await r.bytes(Number(len)));
}

function int64(v: bigint): number | bigint {
  return v >= -SAFE && v <= SAFE ? Number(v) : v;
}

/** The shortest decimal that rounds to the same f32 (why: see {@link GgufData}). */
function shortestF32(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  for (let p = 1; p < 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === x) return y;
  }
  return x;
}

function typeOf(r: SourceReader, id: number, key: string): GgufValueType {
  const t = GGUF_VALUE_TYPES[id];
  if (t === undefined) throw corrupt(r.source, `metadata key "${key}" has unknown value type ${id}`);
  return t;
}

async function readScalar(r: SourceReader, t: GgufScalarType, key: string): Promise<GgufData> {
  if (t === "string") return await readString(r, `metadata "${key}" string`);
  const v = decodeNumbers(t, await r.bytes(scalarBytes(t)), 1)[0];
  return t === "f32" ? shortestF32(v as number) : v;
}

/** Numeric arrays are read in one piece and decoded synchronously: vocabularies hold 100k+ scores. */
function decodeNumbers(t: GgufScalarType, b: Uint8Array, n: number): GgufData[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: GgufData[] = new Array(n);
  const get: (i: number) => GgufData = {
    u8: (i: number) => dv.getUint8(i),
    i8: (i: number) => dv.getInt8(i),
    u16: (i: number) => dv.getUint16(2 * i, true),
    i16: (i: number) => dv.getInt16(2 * i, true),
    u32: (i: number) => dv.getUint32(4 * i, true),
    i32: (i: number) => dv.getInt32(4 * i, true),
    f32: (i: number) => dv.getFloat32(4 * i, true),
    bool: (i: number) => dv.getUint8(i) !== 0,
    u64: (i: number) => int64(dv.getBigUint64(8 * i, true)),
    i64: (i: number) => int64(dv.getBigInt64(8 * i, true)),
    f64: (i: number) => dv.getFloat64(8 * i, true),
    string: () => "",
  }[t];
  for (let i = 0; i < n; i++) out[i] = get(i);
  return out;
}

async function readValue(r: SourceReader, typeId: number, key: string, depth: number): Promise<GgufKv> {
  const t = typeOf(r, typeId, key);
  if (t !== "array") return { type: t, value: await readScalar(r, t, key) };
  if (depth >= MAX_DEPTH) {
    throw corrupt(r.source, `metadata "${key}" nests arrays more than ${MAX_DEPTH} deep`);
  }
  const itemId = await r.u32();
  const item = typeOf(r, itemId, key);
  const count = await r.u64Big();
  needBytes(
    r,
    count,
    item === "array" ? ARRAY_MIN_BYTES : scalarBytes(item),
    `metadata "${key}" array length`,
    MAX_ARRAY,
  );
  const n = Number(count);
  if (item !== "array" && item !== "string") {
    return { type: `array<${item}>`, value: decodeNumbers(item, await r.bytes(n * scalarBytes(item)), n) };
  }
  const out: GgufData[] = []; // grown as items parse, so a lying count costs nothing up front
  let inner: string | undefined;
  for (let i = 0; i < n; i++) {
    if (item === "string") {
      out.push(await readString(r, `metadata "${key}" item ${i}`));
    } else {
      const v = await readValue(r, itemId, key, depth + 1);
      inner = inner === undefined || inner === v.type ? v.type : "array";
      out.push(v.value);
    }
  }
  return { type: item === "string" ? "array<string>" : `array<${inner ?? "array"}>`, value: out };
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

async function readHeaderInner(src: ByteSource): Promise<GgufHeader> {
  if (src.size < 4) throw corrupt(src, `only ${src.size} bytes: too short to be a GGUF file`);
  const r = new SourceReader(src, 0);
  const magic = String.fromCharCode(...await r.bytes(4));
  if (magic !== "GGUF") {
    const legacy = ["lmgg", "fmgg", "tjgg"].includes(magic);
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: not a GGUF file (magic ${JSON.stringify(magic)}, expected "GGUF"); ` +
        (legacy
          ? "it is a pre-GGUF ggml/ggjt file: convert the original weights with a current llama.cpp"
          : "pass a .gguf, safetensors or llama2.c file"),
    );
  }
  const version = await r.u32();
  if (version === 1) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: GGUF version 1 is not supported (its 32-bit lengths were replaced in v2); ` +
        `re-convert the model with a current llama.cpp to get GGUF v3`,
    );
  }
  if (version === 0x02000000 || version === 0x03000000) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${src.name}: big-endian GGUF is not supported; use a little-endian file`,
    );
  }
  if (version !== 2 && version !== 3) {
    throw new LlmError("MODEL_FORMAT", `${src.name}: GGUF version ${version} is not supported (2 and 3 are)`);
  }
  const nTensors = await r.u64Big();
  const nKv = await r.u64Big();
  needBytes(r, nKv, KV_MIN_BYTES, "metadata count", MAX_KV);
  needBytes(r, nTensors, TENSOR_MIN_BYTES, "tensor count", MAX_TENSORS);
  needBytes(
    r,
    nKv * BigInt(KV_MIN_BYTES) + nTensors * BigInt(TENSOR_MIN_BYTES),
    1,
    "header size",
    Number.MAX_SAFE_INTEGER,
  );

  const metadata = new Map<string, GgufKv>();
  for (let i = 0; i < Number(nKv); i++) {
    const key = await readString(r, `metadata key ${i}`);
    if (metadata.has(key)) throw corrupt(src, `metadata key "${key}" appears twice`);
    metadata.set(key, await readValue(r, await r.u32(), key, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al !== undefined) {
    const v = al.value;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0 || v > 2 ** 30 || (v & (v - 1)) !== 0) {
      throw corrupt(src, `general.alignment = ${String(v)} (${al.type}) is not a power of two`);
    }
    alignment = v;
  }

  const raw: { name: string; ne: number[]; ggmlType: number; offset: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < Number(nTensors); i++) {
    const name = await readString(r, `tensor ${i} name`);
    if (names.has(name)) throw corrupt(src, `tensor "${name}" appears twice`);
    names.add(name);
    const nDims = await r.u32();
    if (nDims < 1 || nDims > MAX_DIMS) {
      throw corrupt(src, `tensor "${name}" has ${nDims} dimensions (1..4 allowed)`);
    }
    const ne: number[] = [];
    let count = 1;
    for (let d = 0; d < nDims; d++) {
      const v = await r.u64Big();
      if (v > SAFE || (count *= Number(v)) > Number.MAX_SAFE_INTEGER) {
        throw corrupt(src, `tensor "${name}" dimension ${d} = ${v} makes an absurd element count`);
      }
      ne.push(Number(v));
    }
    const ggmlType = await r.u32();
    const offset = await r.u64Big();
    if (offset > SAFE) throw corrupt(src, `tensor "${name}" offset ${offset} is absurd`);
    raw.push({ name, ne, ggmlType, offset: Number(offset) });
  }

  const dataOffset = alignUp(r.pos, alignment);
  const tensors = raw.map(({ name, ne, ggmlType, offset }): GgufTensorInfo => {
    if (offset % alignment !== 0) {
      throw corrupt(src, `tensor "${name}" offset ${offset} is not ${alignment}-aligned`);
    }
    const byteOffset = dataOffset + offset;
    const dtype = dtypeFromGgml(ggmlType);
    let byteLength: number | undefined;
    if (dtype !== undefined) {
      const { blockSize } = dtypeInfo(dtype);
      // Kernels walk rows block by block, so a row must hold whole blocks (ggml requires the same).
      if (ne[0] % blockSize !== 0) {
        throw corrupt(src, `tensor "${name}" rows of ${ne[0]} are not a whole number of ${dtype} blocks`);
      }
      byteLength = byteLengthOf(dtype, ne.reduce((a, b) => a * b, 1), name);
    }
    const end = byteOffset + (byteLength ?? 0);
    if (end > src.size) {
      throw new LlmError(
        "MODEL_FORMAT",
        `${src.name}: tensor "${name}" (bytes ${byteOffset}..${end}) passes the end of the file ` +
          `(${src.size} bytes); the file is truncated: download it again`,
      );
    }
    return { name, ne, ggmlType, dtype, byteOffset, byteLength };
  });
  checkLayout(src, tensors, alignment);
  return { version, metadata, tensors, alignment, dataOffset };
}

/**
 * GGUF writers lay the tensors' data out back to back, each start aligned. Sorted by offset, a tensor whose
 * data overlaps the next one's, or ends more than the alignment padding before it, has a type or shape that
 * does not match the bytes stored for it (an edited or corrupt tensor table): loading it would read another
 * tensor's bytes as weights. A tensor of a type this reader does not know (no length) is not checked.
 */
function checkLayout(src: ByteSource, tensors: readonly GgufTensorInfo[], alignment: number): void {
  const sorted = [...tensors].sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 0; i + 1 < sorted.length; i++) {
    const a = sorted[i], b = sorted[i + 1];
    if (a.byteLength === undefined) continue;
    const end = a.byteOffset + a.byteLength;
    if (end > b.byteOffset || alignUp(end, alignment) < b.byteOffset) {
      throw corrupt(
        src,
        `tensor "${a.name}" (${a.dtype}, [${
          a.ne.join(", ")
        }]) needs bytes ${a.byteOffset}..${end}, but the next ` +
          `tensor "${b.name}" starts at ${b.byteOffset}: the tensor table's types or shapes do not match the ` +
          `data (an edited or corrupt file)`,
      );
    }
  }
}

/** Turn anything that is not already an LlmError into MODEL_FORMAT: a parser must never leak raw errors. */
function wrap(e: unknown, src: ByteSource): LlmError {
  if (e instanceof LlmError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new LlmError("MODEL_FORMAT", `${src.name}: cannot parse GGUF (${msg}); the file is corrupt`, {
    cause: e,
  });
}

/**
 * Read a GGUF header: version, metadata, tensor infos, alignment and the data section offset.
 * Tensors of types llama.ts cannot run still parse (with `dtype` undefined) so `info` can show them.
 * Throws `MODEL_FORMAT` for anything malformed or truncated.
 */
export async function readGgufHeader(src: ByteSource): Promise<GgufHeader> {
  try {
    return await readHeaderInner(src);
  } catch (e) {
    throw wrap(e, src);
  }
}

// ---- tokenizer --------------------------------------------------------------------------------------

function tokFail(where: string, msg: string): LlmError {
  return new LlmError(
    "TOKENIZER_FORMAT",
    `${where}: ${msg}; the GGUF tokenizer metadata is corrupt: re-convert`,
  );
}

/**
 * The tokenizer carried in `tokenizer.ggml.*` metadata: `llama` (SentencePiece, "▁" for spaces) becomes
 * `spm`, `gpt2` (byte-level BPE) becomes `bpe`. Other models give undefined; their name stays in the
 * metadata so the engine can say which tokenizer is missing.
 */
export function readGgufTokenizer(
  metadata: ReadonlyMap<string, GgufKv>,
  where: string,
): TokenizerData | undefined {
  const get = (k: string): GgufData | undefined => metadata.get(k)?.value;
  const model = get("tokenizer.ggml.model");
  const kind: TokenizerData["kind"] | undefined = model === "llama"
    ? "spm"
    : model === "gpt2"
    ? "bpe"
    : undefined;
  if (kind === undefined) return undefined;
  const strings = (k: string): string[] | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
      throw tokFail(where, `${k} is not an array of strings`);
    }
    return v as string[];
  };
  const tokens = strings("tokenizer.ggml.tokens");
  if (tokens === undefined || tokens.length === 0) {
    throw tokFail(where, "tokenizer.ggml.tokens is missing or empty");
  }
  const numbers = (k: string): number[] | undefined => {
    const v = get(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length !== tokens.length || !v.every((x) => typeof x === "number")) {
      throw tokFail(where, `${k} is not an array of ${tokens.length} numbers, one per token`);
    }
    return v as number[];
  };
  // Like llama.cpp, an out-of-range special id is ignored rather than fatal: some converters write -1.
  const id = (k: string): number | undefined => {
    const v = get(k);
    return typeof v === "number" && Number.isInteger(v) && v >= 0 && v < tokens.length ? v : undefined;
  };
  const flag = (k: string): boolean | undefined => {
    const v = get(k);
    if (v !== undefined && typeof v !== "boolean") {
      throw tokFail(where, `${k} = ${String(v)} is not a boolean`);
    }
    return v;
  };
  const merges = kind === "bpe" ? strings("tokenizer.ggml.merges") : undefined;
  if (kind === "bpe" && merges === undefined) {
    throw tokFail(where, "a gpt2 tokenizer needs tokenizer.ggml.merges");
  }
  const eotIds = [id("tokenizer.ggml.eot_token_id"), id("tokenizer.ggml.eom_token_id")]
    .filter((x): x is number => x !== undefined);
  const pre = get("tokenizer.ggml.pre");
  const chatTemplate = get("tokenizer.chat_template");
  return stripUndefined({
    kind,
    tokens,
    scores: numbers("tokenizer.ggml.scores"),
    tokenTypes: numbers("tokenizer.ggml.token_type"),
    merges,
    pre: typeof pre === "string" ? pre : undefined,
    bosId: id("tokenizer.ggml.bos_token_id"),
    eosId: id("tokenizer.ggml.eos_token_id"),
    eotIds: eotIds.length ? [...new Set(eotIds)] : undefined,
    unkId: id("tokenizer.ggml.unknown_token_id"),
    padId: id("tokenizer.ggml.padding_token_id"),
    addBos: flag("tokenizer.ggml.add_bos_token"),
    addSpacePrefix: flag("tokenizer.ggml.add_space_prefix"),
    chatTemplate: typeof chatTemplate === "string" ? chatTemplate : undefined,
  });
}

/** Drop undefined fields so absent values are absent keys (deep equality, spreading defaults). */
function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

// ---- model ------------------------------------------------------------------------------------------

const SUMMARY_OVER = 64; // arrays longer than this (vocabularies, merges) are summarised in `metadata`

function summarise(kv: GgufKv): unknown {
  if (!Array.isArray(kv.value) || kv.value.length <= SUMMARY_OVER) return kv.value;
  const item = kv.type.slice("array<".length, -1);
  return `<array of ${kv.value.length} ${item === "string" ? "strings" : item}>`;
}

/**
 * Parse a GGUF LLaMA model: the header, the config from `llama.*` keys, the tokenizer from
 * `tokenizer.ggml.*` keys and a table of canonical tensors (see `model_file.ts`). The returned model
 * owns `src` and closes it in `close()`; on failure the caller still owns it.
 *
 * Throws `MODEL_FORMAT` (malformed file), `UNSUPPORTED_MODEL` (not `general.architecture = "llama"`),
 * `UNSUPPORTED_DTYPE` (a weight of a ggml type llama.ts cannot run) or `TOKENIZER_FORMAT`.
 */
export async function parseGguf(src: ByteSource): Promise<ModelFile> {
  try {
    return await parseInner(src);
  } catch (e) {
    throw wrap(e, src);
  }
}

async function parseInner(src: ByteSource): Promise<ModelFile> {
  const h = await readGgufHeader(src);
  const where = src.name;
  // Typed lookups: a wrong-typed key fails here, with its name, instead of as NaN somewhere later.
  const get = (key: string, want: string, ok: (v: GgufData) => boolean): GgufData | undefined => {
    const kv = h.metadata.get(key);
    if (kv === undefined || ok(kv.value)) return kv?.value;
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: metadata ${key} = ${String(kv.value).slice(0, 80)} (${kv.type}) is not ${want}; ` +
        `the file is corrupt or from an incompatible converter`,
    );
  };
  const isCount = (v: GgufData): boolean => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  const int = (key: string): number | undefined =>
    get(key, "a non-negative integer", isCount) as number | undefined;
  const float = (key: string): number | undefined =>
    get(key, "a number", (v) => typeof v === "number") as number | undefined;
  const required = (key: string): number => {
    const v = int(key);
    if (v !== undefined) return v;
    throw new LlmError("MODEL_FORMAT", `${where}: required metadata ${key} is missing; re-convert the model`);
  };
  const arch = get("general.architecture", "a string", (v) => typeof v === "string");
  if (arch === undefined) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: metadata general.architecture is missing; re-convert the model`,
    );
  }
  if (arch !== "llama") {
    throw new LlmError(
      "UNSUPPORTED_MODEL",
      `${where}: architecture "${arch}" is not supported; llama.ts runs LLaMA-family models ` +
        `(general.architecture = "llama")`,
    );
  }

  const tensors = new Map<string, TensorEntry>();
  const rowsOf = new Map<string, number>();
  for (const t of h.tensors) {
    const name = canonicalTensorName(t.name);
    if (name === undefined && t.name !== "rope_freqs.weight") continue;
    if (t.dtype === undefined || t.byteLength === undefined) {
      throw new LlmError(
        "UNSUPPORTED_DTYPE",
        `${where}: tensor ${t.name} has ggml type ${ggmlTypeName(t.ggmlType)} (id ${t.ggmlType}), which ` +
          `llama.ts cannot run; supported: ${SUPPORTED_GGML_TYPES}. Use a file quantized to one of those ` +
          `(e.g. Q4_K_M, Q8_0 or F16)`,
      );
    }
    if (name === undefined) continue;
    // ggml lists dimensions innermost first; our shapes are row-major, outermost first.
    const shape: Shape = [...t.ne].reverse();
    const { dtype, byteOffset, byteLength } = t;
    tensors.set(name, { name, dtype, shape, source: src, byteOffset, byteLength });
    rowsOf.set(name, shape[0]);
  }

  const tokenizer = readGgufTokenizer(h.metadata, where);
  const dim = required("llama.embedding_length");
  const nHeads = required("llama.attention.head_count");
  const vocabSize = int("llama.vocab_size") ?? tokenizer?.tokens.length ?? rowsOf.get("tok_embd") ?? 0;
  const headDim = int("llama.attention.key_length") ?? (nHeads > 0 ? dim / nHeads : 0);
  const ropeFreqs = h.tensors.find((t) => t.name === "rope_freqs.weight");
  const ropeFreqFactors = ropeFreqs ? await readRopeFreqs(src, ropeFreqs, headDim) : undefined;
  const config: LlamaConfig = {
    dim,
    hiddenDim: required("llama.feed_forward_length"),
    nLayers: required("llama.block_count"),
    nHeads,
    nKvHeads: int("llama.attention.head_count_kv") ?? nHeads,
    headDim,
    vocabSize,
    seqLen: required("llama.context_length"),
    normEps: float("llama.attention.layer_norm_rms_epsilon") ?? 1e-5,
    ropeTheta: float("llama.rope.freq_base") ?? 10000,
    // The GGUF converter permutes wq/wk rows so adjacent pairs rotate together.
    ropeStyle: "interleaved",
    ...(ropeFreqFactors ? { ropeFreqFactors } : {}),
    tiedEmbeddings: !tensors.has("output"),
    ...activationQuantOf(get(QUANTIZATION_KEY, "a string", (v) => typeof v === "string"), where),
  };
  validateConfig(config, where);
  validateTensors(config, tensors, where);

  const metadata: Record<string, unknown> = {};
  for (const [k, kv] of h.metadata) metadata[k] = summarise(kv);
  return {
    format: "gguf",
    config,
    tensors,
    ...(tokenizer ? { tokenizer } : {}),
    metadata,
    close: (): void => src.close(),
  };
}

/** Llama-3.1's per-pair RoPE divisors are a tiny tensor; read them now so the config is complete. */
async function readRopeFreqs(src: ByteSource, t: GgufTensorInfo, headDim: number): Promise<number[]> {
  const n = t.ne.reduce((a, b) => a * b, 1), want = headDim / 2;
  if (n !== want || t.dtype === undefined) {
    throw corrupt(src, `rope_freqs.weight has ${n} values where headDim ${headDim} needs ${want}`);
  }
  const out = new Float32Array(n);
  dequantize(t.dtype, await src.read(t.byteOffset, t.byteLength ?? 0), out);
  return Array.from(out);
}
