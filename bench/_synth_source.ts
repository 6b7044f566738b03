/**
 * Random-weight models of any shape that never exist as files: every tensor is an f16 (matrices) or
 * f32 (norms) byte source whose bytes are generated when read, deterministically per 64 KiB block, so
 * a 13.5 GB LLaMA-7B-shaped model streams onto a backend tensor by tensor like one read from disk,
 * without the disk. Scales follow tests/_synth.ts: matrices uniform in +-1/sqrt(in), embedding +-1, the
 * LM head +-2/sqrt(dim), norms 1 +- 0.1.
 */
import type { LlamaConfig } from "../src/model/config.ts";
import type { ModelFile, TensorEntry } from "../src/format/model_file.ts";
import type { ByteSource } from "../src/io/byte_source.ts";
import { expectedShape, requiredTensors } from "../src/format/model_file.ts";
import { checkRange } from "../src/io/byte_source.ts";
import { f32ToF16 } from "../src/dtype.ts";

const BLOCK = 1 << 16;

function xorshift(seed: number): () => number {
  let s = (seed >>> 0) || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * A source of `size` bytes generated per block of `blockBytes`: a read calls `fill` for every block it
 * touches with the block's byte range [from, to) to write into `out` at `at`.
 */
function blockSource(
  name: string,
  size: number,
  blockBytes: number,
  fill: (b: number, from: number, to: number, out: Uint8Array, at: number) => void,
): ByteSource {
  return {
    name,
    size,
    read(offset: number, length: number): Promise<Uint8Array> {
      checkRange(name, size, offset, length);
      const out = new Uint8Array(length);
      for (let b = Math.floor(offset / blockBytes); b * blockBytes < offset + length; b++) {
        const start = b * blockBytes;
        const from = Math.max(offset, start), to = Math.min(offset + length, start + blockBytes, size);
        fill(b, from - start, to - start, out, from - offset);
      }
      return Promise.resolve(out);
    },
    close(): void {},
  };
}

/** Values per f16 pool: blocks are copied out of a pool at pseudo-random offsets. */
const POOL = 1 << 21;
const pools = new Map<number, Uint8Array>();

/** A pool of POOL f16 values uniform in (-a, a), one per scale (a few per model). */
function pool(a: number): Uint8Array {
  let p = pools.get(a);
  if (!p) {
    const h = new Uint16Array(POOL);
    const r = xorshift(0x1234567 ^ Math.round(a * 1e6));
    for (let i = 0; i < POOL; i++) h[i] = f32ToF16(((r() / 4294967296) * 2 - 1) * a);
    p = new Uint8Array(h.buffer);
    pools.set(a, p);
  }
  return p;
}

/**
 * A source of `n` values: f16 (2 bytes) uniform in (-a, a), or f32 1 +- a. f16 blocks are copies of a
 * shared pool at offsets drawn per block from the tensor's seed, so reading runs at memcpy speed (the
 * per-element generator ran at ~100 MB/s, which made a 13.5 GB model take minutes before any upload).
 */
function generated(name: string, n: number, kind: "f16" | "f32", a: number, seed: number): ByteSource {
  const size = n * (kind === "f16" ? 2 : 4);
  const src = kind === "f16" ? pool(a) : undefined;
  return blockSource(name, size, BLOCK, (b, from, to, out, at) => {
    const r = xorshift((seed * 2654435761) ^ (b + 1) * 40503);
    if (src) {
      const start = (r() % (POOL - BLOCK / 2)) * 2;
      out.set(src.subarray(start + from, start + to), at);
      return;
    }
    const f = new Float32Array(BLOCK / 4);
    for (let i = 0; i < f.length; i++) f[i] = 1 + ((r() / 4294967296) * 2 - 1) * a;
    out.set(new Uint8Array(f.buffer, from, to - from), at);
  });
}

/** q8_0 blocks (34 bytes: f16 scale, 32 int8 codes) per read block, and blocks per pool. */
const QB = 1920;
const QPOOL = 1 << 16;
const qpools = new Map<number, Uint8Array>();

/** A pool of q8_0 blocks of values in about (-a, a): scale a / 127, codes uniform in [-127, 127]. */
function qpool(a: number): Uint8Array {
  let p = qpools.get(a);
  if (!p) {
    p = new Uint8Array(QPOOL * 34);
    const r = xorshift(0x7654321 ^ Math.round(a * 1e6));
    const d = f32ToF16(a / 127);
    for (let b = 0; b < QPOOL; b++) {
      p[b * 34] = d & 255;
      p[b * 34 + 1] = d >> 8;
      for (let i = 0; i < 32; i++) p[b * 34 + 2 + i] = (r() % 255) - 127;
    }
    qpools.set(a, p);
  }
  return p;
}

/** A q8_0 source of `n` values (n a multiple of 32), blocks copied from a shared pool like the f16 ones. */
function generatedQ8(name: string, n: number, a: number, seed: number): ByteSource {
  const src = qpool(a);
  return blockSource(name, (n / 32) * 34, QB * 34, (b, from, to, out, at) => {
    const r = xorshift((seed * 2654435761) ^ (b + 1) * 40503);
    const p = (r() % (QPOOL - QB)) * 34;
    out.set(src.subarray(p + from, p + to), at);
  });
}

/**
 * A random-weight model of `config` with f16 matrices (tensor seeds depend on name and `seed` only);
 * `matrices: "q8_0"` gives q8_0 matrices instead (with `config.activationQuant`, a W8A8 model).
 */
export function synthF16Model(config: LlamaConfig, seed = 1, matrices: "f16" | "q8_0" = "f16"): ModelFile {
  const tensors = new Map<string, TensorEntry>();
  for (const name of requiredTensors(config)) {
    const shape = expectedShape(config, name);
    const n = shape.reduce((a, b) => a * b, 1);
    const base = name.replace(/^l\d+\./, "");
    let h = seed;
    for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
    const norm = shape.length === 1;
    const a = norm
      ? 0.1
      : base === "tok_embd"
      ? 1
      : base === "output"
      ? 2 / Math.sqrt(shape[1])
      : 1 / Math.sqrt(shape[1]);
    const q8 = !norm && matrices === "q8_0" && shape[1] % 32 === 0;
    const source = q8 ? generatedQ8(name, n, a, h) : generated(name, n, norm ? "f32" : "f16", a, h);
    tensors.set(name, {
      name,
      dtype: norm ? "f32" : q8 ? "q8_0" : "f16",
      shape,
      source,
      byteOffset: 0,
      byteLength: source.size,
    });
  }
  return { format: "gguf", config, tensors, metadata: {}, close() {} };
}
