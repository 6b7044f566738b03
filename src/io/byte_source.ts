/**
 * Random-access byte sources. Parsers read through this interface so a 13 GB model is never held in
 * one ArrayBuffer: each tensor is read on its own, from a file, a fetch-able URL or bytes in memory.
 * This file is runtime-agnostic; the Deno file source lives in `deno_fs.ts`.
 * @module
 */
import { LlmError } from "../errors.ts";

/** Random-access, read-only bytes. */
export interface ByteSource {
  /** A name for messages (a path, a URL, "bytes"). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /**
   * Read exactly `length` bytes at `offset`. Throws `MODEL_FORMAT` when the range passes the end
   * (a truncated file), never returns a short read.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Release any handle. Idempotent. */
  close(): void;
}

/** Throw a clear error when `[offset, offset+length)` does not lie inside a source of `size` bytes. */
export function checkRange(name: string, size: number, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > size
  ) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${name}: read of ${length} bytes at offset ${offset} passes the end of the file (${size} bytes); ` +
        `the file is truncated or corrupt: download it again`,
    );
  }
}

/** A source over bytes already in memory. */
export function bytesSource(bytes: Uint8Array, name = "bytes"): ByteSource {
  return {
    name,
    size: bytes.byteLength,
    read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(name, bytes.byteLength, offset, length);
      return Promise.resolve(bytes.subarray(offset, offset + length));
    },
    close(): void {},
  };
}

/**
 * A little-endian cursor over a byte source for parsing headers. Reads are buffered in chunks so
 * thousands of small metadata reads cost few I/O calls.
 */
export class SourceReader {
  #src: ByteSource;
  #buf: Uint8Array = new Uint8Array(0);
  #bufStart = 0;
  /** Current absolute offset. */
  pos: number;
  readonly #chunk: number;

  constructor(src: ByteSource, pos = 0, chunk = 1 << 20) {
    this.#src = src;
    this.pos = pos;
    this.#chunk = chunk;
  }

  /** The underlying source. */
  get source(): ByteSource {
    return this.#src;
  }

  /** Bytes left after `pos`. */
  get remaining(): number {
    return this.#src.size - this.pos;
  }

  /** Read `n` bytes at `pos` and advance. */
  async bytes(n: number): Promise<Uint8Array> {
    checkRange(this.#src.name, this.#src.size, this.pos, n);
    const rel = this.pos - this.#bufStart;
    if (rel >= 0 && rel + n <= this.#buf.byteLength) {
      this.pos += n;
      return this.#buf.subarray(rel, rel + n);
    }
    if (n > this.#chunk) {
      const out = await this.#src.read(this.pos, n);
      this.pos += n;
      return out;
    }
    const len = Math.min(this.#chunk, this.#src.size - this.pos);
    this.#buf = await this.#src.read(this.pos, len);
    this.#bufStart = this.pos;
    this.pos += n;
    return this.#buf.subarray(0, n);
  }

  #view(b: Uint8Array): DataView {
    return new DataView(b.buffer, b.byteOffset, b.byteLength);
  }

  /** Little-endian readers. */
  async u8(): Promise<number> {
    return (await this.bytes(1))[0];
  }
  async i8(): Promise<number> {
    return this.#view(await this.bytes(1)).getInt8(0);
  }
  async u16(): Promise<number> {
    return this.#view(await this.bytes(2)).getUint16(0, true);
  }
  async i16(): Promise<number> {
    return this.#view(await this.bytes(2)).getInt16(0, true);
  }
  async u32(): Promise<number> {
    return this.#view(await this.bytes(4)).getUint32(0, true);
  }
  async i32(): Promise<number> {
    return this.#view(await this.bytes(4)).getInt32(0, true);
  }
  async f32(): Promise<number> {
    return this.#view(await this.bytes(4)).getFloat32(0, true);
  }
  async f64(): Promise<number> {
    return this.#view(await this.bytes(8)).getFloat64(0, true);
  }
  /** A u64 that must fit a safe integer (sizes, counts, offsets); throws MODEL_FORMAT otherwise. */
  async u64(): Promise<number> {
    const v = this.#view(await this.bytes(8)).getBigUint64(0, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new LlmError("MODEL_FORMAT", `${this.#src.name}: 64-bit value ${v} at ${this.pos - 8} is absurd`);
    }
    return Number(v);
  }
  async i64(): Promise<bigint> {
    return this.#view(await this.bytes(8)).getBigInt64(0, true);
  }
  async u64Big(): Promise<bigint> {
    return this.#view(await this.bytes(8)).getBigUint64(0, true);
  }
}
