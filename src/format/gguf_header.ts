/**
 * GGUF (versions 2 and 3) header reader: the metadata key/values and tensor infos, and the ggml type ids.
 * Pure parsing over a {@link ByteSource}; tensor bytes stay in the file until a loader reads them one at a
 * time. `gguf.ts` builds a LLaMA model from the header and re-exports this module's exports.
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
import type { DType } from "../types.ts";
import { LlmError } from "../errors.ts";
import { type ByteSource, SourceReader } from "../io/byte_source.ts";
import { byteLengthOf, dtypeInfo, DTYPES } from "../dtype.ts";

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

/** A `MODEL_FORMAT` error for a malformed GGUF file. */
export function corrupt(src: ByteSource, msg: string): LlmError {
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
export function wrap(e: unknown, src: ByteSource): LlmError {
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
