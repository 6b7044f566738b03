/**
 * The dtype table (block size, bytes per block) and the reference (de)quantizers. Block layouts are
 * ggml's, byte for byte, so GGUF tensors load without conversion:
 *
 * | dtype | block | bytes | layout |
 * |---|---|---|---|
 * | q8_0 | 32 | 34 | f16 d; int8 q[32]; x = d*q |
 * | q4_0 | 32 | 18 | f16 d; u8 qs[16] (low nibbles = elements 0..15, high = 16..31); x = d*(q-8) |
 * | q4_1 | 32 | 20 | f16 d; f16 m; u8 qs[16]; x = d*q + m |
 * | q4_k | 256 | 144 | f16 d; f16 dmin; u8 scales[12] (6-bit scale/min per 32); u8 qs[128] |
 * | q6_k | 256 | 210 | u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d |
 * @module
 */
import type { DType } from "./types.ts";
import { LlmError } from "./errors.ts";

/** Static facts about a dtype. */
export interface DTypeInfo {
  readonly name: DType;
  /** Elements per block (1 for plain types). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly bytesPerBlock: number;
  readonly quantized: boolean;
}

const table: Record<DType, DTypeInfo> = {
  f32: { name: "f32", blockSize: 1, bytesPerBlock: 4, quantized: false },
  f16: { name: "f16", blockSize: 1, bytesPerBlock: 2, quantized: false },
  bf16: { name: "bf16", blockSize: 1, bytesPerBlock: 2, quantized: false },
  q8_0: { name: "q8_0", blockSize: 32, bytesPerBlock: 34, quantized: true },
  q4_0: { name: "q4_0", blockSize: 32, bytesPerBlock: 18, quantized: true },
  q4_1: { name: "q4_1", blockSize: 32, bytesPerBlock: 20, quantized: true },
  q4_k: { name: "q4_k", blockSize: 256, bytesPerBlock: 144, quantized: true },
  q6_k: { name: "q6_k", blockSize: 256, bytesPerBlock: 210, quantized: true },
  i8: { name: "i8", blockSize: 1, bytesPerBlock: 1, quantized: false },
  i32: { name: "i32", blockSize: 1, bytesPerBlock: 4, quantized: false },
};

/** All dtypes. */
export const DTYPES: readonly DType[] = Object.keys(table) as DType[];

/** Look up a dtype; throws UNSUPPORTED_DTYPE for unknown names. */
export function dtypeInfo(d: DType): DTypeInfo {
  const info = table[d];
  if (!info) {
    throw new LlmError("UNSUPPORTED_DTYPE", `unknown dtype ${String(d)}; known: ${DTYPES.join(", ")}`);
  }
  return info;
}

/** Bytes needed for `n` elements; throws when `n` is not a whole number of blocks. */
export function byteLengthOf(d: DType, n: number, what = "tensor"): number {
  const { blockSize, bytesPerBlock } = dtypeInfo(d);
  if (!Number.isSafeInteger(n) || n < 0 || n % blockSize !== 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${what}: ${n} elements is not a whole number of ${d} blocks (${blockSize} per block)`,
    );
  }
  return (n / blockSize) * bytesPerBlock;
}

// ---- half precision --------------------------------------------------------------------------------

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** IEEE binary16 bits to a number. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Round a double that is not exactly an f32 straight to a narrow float format (1 sign, `expBits`,
 * `mantBits`), nearest-even. Going through f32 first would round twice: 1 + 2^-11 + 2^-40 would become
 * the f16 tie 1 + 2^-11 and then 1, where the correct f16 is 1 + 2^-10.
 */
function roundNarrow(x: number, expBits: number, mantBits: number): number {
  const sign = x < 0 ? 1 << (expBits + mantBits) : 0;
  const a = Math.abs(x), bias = (1 << (expBits - 1)) - 1, inf = ((1 << expBits) - 1) << mantBits;
  const rne = (q: number): number => {
    const f = Math.floor(q), r = q - f;
    return r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f;
  };
  // Subnormal (or rounding up to the smallest normal, whose bits follow on naturally).
  if (a < 2 ** (1 - bias)) return sign | rne(a * 2 ** (mantBits - 1 + bias));
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 may round up just below a power of two
  else if (2 ** (e + 1) <= a) e++;
  const bits = ((e + bias) << mantBits) + rne((a / 2 ** e) * 2 ** mantBits) - (1 << mantBits);
  return sign | Math.min(bits, inf); // a carry out of the top exponent is infinity
}

/** A number to IEEE binary16 bits, round-to-nearest-even (as numpy and CUDA do). */
export function f32ToF16(x: number): number {
  f32buf[0] = x;
  if (f32buf[0] !== x && x === x) return roundNarrow(x, 5, 10);
  const u = u32buf[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  e = half >>> 10;
  return sign | half;
}

/** bfloat16 bits to a number. */
export function bf16ToF32(b: number): number {
  u32buf[0] = b << 16;
  return f32buf[0];
}

/** A number to bfloat16 bits, round-to-nearest-even. */
export function f32ToBf16(x: number): number {
  f32buf[0] = x;
  if (f32buf[0] !== x && x === x) return roundNarrow(x, 8, 7);
  const u = u32buf[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff)) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
let F16_TABLE: Float32Array | undefined;

/** Every f16 bit pattern's value (256 KiB, built on first use). */
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16ToF32(h);
  }
  return F16_TABLE;
}

/** Round a number through f16 (what storing it as f16 does to it). */
export function roundF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}

// ---- dequantization -----------------------------------------------------------------------------------

/**
 * Dequantize `n` elements starting at element `start` (a multiple of the block size) of a tensor
 * whose bytes are `src`, into `out[0..n)`. The reference implementation every kernel is checked against.
 */
export function dequantize(d: DType, src: Uint8Array, out: Float32Array, n = out.length, start = 0): void {
  const { blockSize, bytesPerBlock } = dtypeInfo(d);
  if (start % blockSize !== 0 || n % blockSize !== 0) {
    throw new LlmError("INTERNAL", `dequantize ${d}: start ${start} and count ${n} must be block-aligned`);
  }
  const base = (start / blockSize) * bytesPerBlock;
  const need = base + (n / blockSize) * bytesPerBlock;
  if (need > src.byteLength) {
    throw new LlmError("INTERNAL", `dequantize ${d}: needs ${need} bytes, has ${src.byteLength}`);
  }
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  switch (d) {
    case "f32":
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(base + 4 * i, true);
      return;
    case "f16": {
      // a table lookup per element: converting 7B f16 weights one by one costs minutes otherwise
      const t = f16Table();
      if (LITTLE_ENDIAN && (src.byteOffset + base) % 2 === 0) {
        const h = new Uint16Array(src.buffer, src.byteOffset + base, n);
        for (let i = 0; i < n; i++) out[i] = t[h[i]];
      } else {
        for (let i = 0; i < n; i++) out[i] = t[dv.getUint16(base + 2 * i, true)];
      }
      return;
    }
    case "bf16":
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(dv.getUint16(base + 2 * i, true));
      return;
    case "i8":
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(base + i);
      return;
    case "i32":
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(base + 4 * i, true);
      return;
    case "q8_0": {
      const q = new Int8Array(src.buffer, src.byteOffset, src.byteLength);
      for (let b = 0; b < n / 32; b++) {
        const o = base + b * 34, scale = f16ToF32(dv.getUint16(o, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = scale * q[o + 2 + j];
      }
      return;
    }
    case "q4_0":
      for (let b = 0; b < n / 32; b++) {
        const o = base + b * 18, scale = f16ToF32(dv.getUint16(o, true));
        for (let j = 0; j < 16; j++) {
          const q = src[o + 2 + j];
          out[b * 32 + j] = scale * ((q & 15) - 8);
          out[b * 32 + j + 16] = scale * ((q >> 4) - 8);
        }
      }
      return;
    case "q4_1":
      for (let b = 0; b < n / 32; b++) {
        const o = base + b * 20,
          scale = f16ToF32(dv.getUint16(o, true)),
          min = f16ToF32(dv.getUint16(o + 2, true));
        for (let j = 0; j < 16; j++) {
          const q = src[o + 4 + j];
          out[b * 32 + j] = scale * (q & 15) + min;
          out[b * 32 + j + 16] = scale * (q >> 4) + min;
        }
      }
      return;
    case "q4_k":
      for (let b = 0; b < n / 256; b++) dequantQ4K(src, dv, base + b * 144, out, b * 256);
      return;
    case "q6_k":
      for (let b = 0; b < n / 256; b++) dequantQ6K(src, dv, base + b * 210, out, b * 256);
      return;
  }
}

/** ggml's 6-bit scale/min unpacking for q4_k (12 bytes hold 8 scales and 8 mins). */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [
    (q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4),
    (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4),
  ];
}

function dequantQ4K(src: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = f16ToF32(dv.getUint16(o, true)), dmin = f16ToF32(dv.getUint16(o + 2, true));
  const scales = o + 4, qs = o + 16;
  let is = 0, y = at;
  for (let j = 0; j < 256; j += 64) {
    const q = qs + j / 2;
    const [sc1, m1] = scaleMinK4(is, src, scales);
    const [sc2, m2] = scaleMinK4(is + 1, src, scales);
    const d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2;
    for (let l = 0; l < 32; l++) out[y++] = d1 * (src[q + l] & 0xf) - mm1;
    for (let l = 0; l < 32; l++) out[y++] = d2 * (src[q + l] >> 4) - mm2;
    is += 2;
  }
}

function dequantQ6K(src: Uint8Array, dv: DataView, o: number, out: Float32Array, at: number): void {
  const d = f16ToF32(dv.getUint16(o + 208, true));
  let ql = o, qh = o + 128, sc = o + 192, y = at;
  for (let n = 0; n < 256; n += 128) {
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const q1 = ((src[ql + l] & 0xf) | (((src[qh + l] >> 0) & 3) << 4)) - 32;
      const q2 = ((src[ql + l + 32] & 0xf) | (((src[qh + l] >> 2) & 3) << 4)) - 32;
      const q3 = ((src[ql + l] >> 4) | (((src[qh + l] >> 4) & 3) << 4)) - 32;
      const q4 = ((src[ql + l + 32] >> 4) | (((src[qh + l] >> 6) & 3) << 4)) - 32;
      out[y + l] = d * dv.getInt8(sc + is) * q1;
      out[y + l + 32] = d * dv.getInt8(sc + is + 2) * q2;
      out[y + l + 64] = d * dv.getInt8(sc + is + 4) * q3;
      out[y + l + 96] = d * dv.getInt8(sc + is + 6) * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// ---- quantization (reference; used by converters and tests) ------------------------------------------

const fr = Math.fround;

/**
 * ggml's q8_0 reference quantizer. Hot when quantizing 7B models, so it lives in its own small function
 * (V8 optimizes it alone) and rounds with trunc(v ± 0.5): C's roundf (halves away from zero), exact for
 * f32 v and several times faster than Math.round.
 */
function quantizeQ8(x: Float32Array, out: Uint8Array): void {
  const q = new Int8Array(out.buffer, out.byteOffset, out.byteLength), nb = x.length >> 5;
  for (let b = 0; b < nb; b++) {
    const xo = b << 5, qo = b * 34 + 2;
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
    const scale = fr(amax / 127), inv = scale ? fr(1 / scale) : 0, h = f32ToF16(scale);
    out[qo - 2] = h & 0xff;
    out[qo - 1] = h >> 8;
    for (let j = 0; j < 32; j++) {
      const v = fr(x[xo + j] * inv);
      q[qo + j] = Math.trunc(v + (v < 0 ? -0.5 : 0.5));
    }
  }
}

/**
 * Quantize f32 values to a dtype's bytes, following ggml's reference quantizers for q8_0/q4_0/q4_1 so
 * files we write match what llama.cpp would write. k-quants are not produced here. Intermediate values
 * pass through Math.fround because ggml computes them in float: in double, a value a hair below a
 * rounding boundary (e.g. x/d + 8.5 just under 8) lands on the other side of it.
 */
export function quantize(d: DType, x: Float32Array): Uint8Array {
  const n = x.length;
  const out = new Uint8Array(byteLengthOf(d, n));
  const dv = new DataView(out.buffer);
  switch (d) {
    case "f32":
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, x[i], true);
      return out;
    case "f16":
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToF16(x[i]), true);
      return out;
    case "bf16":
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToBf16(x[i]), true);
      return out;
    case "q8_0":
      quantizeQ8(x, out);
      return out;
    case "q4_0":
      for (let b = 0; b < n / 32; b++) {
        let amax = 0, max = 0;
        for (let j = 0; j < 32; j++) {
          const v = x[b * 32 + j];
          if (Math.abs(v) > amax) {
            amax = Math.abs(v);
            max = v;
          }
        }
        const scale = max / -8, inv = scale ? fr(1 / scale) : 0;
        dv.setUint16(b * 18, f32ToF16(scale), true);
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j] * inv) + 8.5)));
          const q1 = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j + 16] * inv) + 8.5)));
          out[b * 18 + 2 + j] = q0 | (q1 << 4);
        }
      }
      return out;
    case "q4_1":
      for (let b = 0; b < n / 32; b++) {
        let min = Infinity, max = -Infinity;
        for (let j = 0; j < 32; j++) {
          min = Math.min(min, x[b * 32 + j]);
          max = Math.max(max, x[b * 32 + j]);
        }
        const scale = fr(fr(max - min) / 15), inv = scale ? fr(1 / scale) : 0;
        dv.setUint16(b * 20, f32ToF16(scale), true);
        dv.setUint16(b * 20 + 2, f32ToF16(min), true);
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(15, Math.trunc(fr(fr(fr(x[b * 32 + j] - min) * inv) + 0.5)));
          const q1 = Math.min(15, Math.trunc(fr(fr(fr(x[b * 32 + j + 16] - min) * inv) + 0.5)));
          out[b * 20 + 4 + j] = q0 | (q1 << 4);
        }
      }
      return out;
    default:
      throw new LlmError(
        "UNSUPPORTED_DTYPE",
        `quantizing to ${d} is not supported; use f32, f16, bf16, q8_0, q4_0 or q4_1`,
      );
  }
}
