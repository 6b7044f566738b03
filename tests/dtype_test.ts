/**
 * The dtype table and reference (de)quantizers. Expected values come from independent code written
 * here (bit-level f16/f32 decoding, k-quant blocks packed bit by bit from chosen scales and quants), not
 * from src/dtype.ts itself.
 */
import assert from "node:assert/strict";
import {
  bf16ToF32,
  byteLengthOf,
  dequantize,
  dtypeInfo,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  quantize,
  roundF16,
} from "../src/dtype.ts";
import { LlmError } from "../src/errors.ts";
import { nmse, NMSE_TOLERANCE, randn, rng } from "./_util.ts";

const isNaN16 = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNaNBf16 = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

/** f16 bits → f32 bits by moving fields (normalising subnormals by hand), then reinterpret. */
function f16Reference(h: number): number {
  const sign = (h >> 15) << 31, exp = (h >> 10) & 31;
  let mant = h & 0x3ff, bits: number;
  if (exp === 31) bits = sign | 0x7f800000 | (mant << 13);
  else if (exp === 0 && mant === 0) bits = sign;
  else if (exp === 0) {
    let e = -14;
    while (!(mant & 0x400)) {
      mant <<= 1;
      e--;
    }
    bits = sign | ((e + 127) << 23) | ((mant & 0x3ff) << 13);
  } else bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  return new Float32Array(new Uint32Array([bits >>> 0]).buffer)[0];
}

/** Every finite f16 value in ascending order (as [value, bits]), for a brute-force nearest search. */
const F16_SORTED: [number, number][] = (() => {
  const out: [number, number][] = [];
  for (let h = 0; h < 0x7c00; h++) out.push([f16Reference(h), h]);
  return out;
})();

/** Nearest f16 to a finite non-negative x by search, ties to the even bit pattern. */
function nearestF16(x: number): number {
  if (x >= 65520) return 0x7c00; // halfway between 65504 and the next binade rounds to even: infinity
  let lo = 0, hi = F16_SORTED.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (F16_SORTED[mid][0] <= x) lo = mid;
    else hi = mid;
  }
  const [a, ha] = F16_SORTED[lo], [b, hb] = F16_SORTED[hi];
  if (x - a < b - x) return ha;
  if (x - a > b - x) return hb;
  return ha % 2 === 0 ? ha : hb;
}

Deno.test("f16: decoding matches a bit-level reference for all 65536 patterns", () => {
  for (let h = 0; h < 65536; h++) {
    const got = f16ToF32(h), want = f16Reference(h);
    if (isNaN16(h)) assert.ok(Number.isNaN(got), `0x${h.toString(16)}`);
    else assert.ok(Object.is(got, want), `0x${h.toString(16)}: ${got} != ${want}`);
  }
});

Deno.test("f16: every non-NaN pattern round-trips exactly; NaN stays NaN", () => {
  for (let h = 0; h < 65536; h++) {
    const back = f32ToF16(f16ToF32(h));
    if (isNaN16(h)) assert.ok(isNaN16(back), `NaN 0x${h.toString(16)} became 0x${back.toString(16)}`);
    else assert.equal(back, h, `0x${h.toString(16)}`);
  }
});

Deno.test("f16: round to nearest even, overflow, subnormals, signed zero and infinity", () => {
  const cases: [number, number][] = [
    [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
    [1 + 2 ** -11 + 2 ** -23, 0x3c01], // just past the tie
    [1 + 2 ** -11 - 2 ** -23, 0x3c00],
    [65504, 0x7bff],
    [65519, 0x7bff],
    [65520, 0x7c00], // tie with 2^16 rounds to even: infinity
    [1e6, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // tie with zero: even
    [Math.fround(2 ** -25 * (1 + 2 ** -20)), 0x0001],
    [3 * 2 ** -25, 0x0002], // 1.5 units: even
    [5 * 2 ** -25, 0x0002], // 2.5 units: even
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up into the smallest normal
    [-(2 ** -24), 0x8001],
    [2 ** -26, 0x0000],
    [-0, 0x8000],
    [0, 0x0000],
    [1 + 2 ** -11 + 2 ** -40, 0x3c01], // not an f32: must not round twice (via the f32 tie)
    [-(1 + 2 ** -11 + 2 ** -40), 0xbc01],
    [2 ** -25 + 2 ** -60, 0x0001],
    [65519.99999, 0x7bff],
  ];
  for (const [x, want] of cases) {
    assert.equal(f32ToF16(x), want, `${x} → 0x${f32ToF16(x).toString(16)}, want 0x${want.toString(16)}`);
  }
  assert.ok(isNaN16(f32ToF16(NaN)));
  assert.equal(roundF16(0.1), f16Reference(0x2e66));
});

Deno.test("f16: random f32 and f64 values round like a brute-force nearest-even search", () => {
  const r = rng(11);
  for (let i = 0; i < 20000; i++) {
    const mag = 2 ** (Math.floor(r() * 44) - 28); // from deep subnormal to past the f16 range
    const x64 = r() * mag;
    for (const x of [x64, Math.fround(x64)]) {
      assert.equal(f32ToF16(x), nearestF16(x), `${x}`);
      assert.equal(f32ToF16(-x), nearestF16(x) | 0x8000, `${-x}`);
    }
  }
});

Deno.test("bf16: every non-NaN pattern round-trips; decoding is the top half of f32", () => {
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    u[0] = h << 16;
    const got = bf16ToF32(h);
    if (isNaNBf16(h)) {
      assert.ok(Number.isNaN(got));
      assert.ok(isNaNBf16(f32ToBf16(got)));
      continue;
    }
    assert.ok(Object.is(got, f[0]), `0x${h.toString(16)}`);
    assert.equal(f32ToBf16(got), h, `0x${h.toString(16)}`);
  }
});

Deno.test("bf16: round to nearest even, overflow and f64 inputs", () => {
  const bits = (u: number): number => new Float32Array(new Uint32Array([u]).buffer)[0];
  const cases: [number, number][] = [
    [1 + 2 ** -8, 0x3f80], // tie: even
    [1 + 3 * 2 ** -8, 0x3f82], // tie: even (up)
    [1 + 2 ** -8 + 2 ** -20, 0x3f81],
    [bits(0x7f7fffff), 0x7f80], // f32 max rounds to infinity
    [bits(0x00008000), 0x0000], // subnormal tie: even
    [bits(0x00018000), 0x0002],
    [-2, 0xc000],
    [1 + 2 ** -8 + 2 ** -40, 0x3f81], // not an f32: no double rounding
    // The largest bf16 is 0x7f7f = 3.3895e38; halfway to 2^128 is 3.3962e38.
    [3.39e38, 0x7f7f],
    [3.5e38, 0x7f80],
  ];
  for (const [x, want] of cases) assert.equal(f32ToBf16(x), want, `${x}`);
});

// ---- block quantizers ----------------------------------------------------------------------------------

Deno.test("q8_0/q4_0/q4_1 quantize→dequantize stays within the NMSE table on random data", () => {
  for (const d of ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"] as const) {
    for (const [seed, scale] of [[1, 1], [2, 0.02], [3, 300]]) {
      const x = randn(32 * 64, seed, scale);
      const bytes = quantize(d, x);
      assert.equal(bytes.byteLength, byteLengthOf(d, x.length));
      const y = new Float32Array(x.length);
      dequantize(d, bytes, y);
      const e = nmse(y, x);
      assert.ok(e <= NMSE_TOLERANCE[d], `${d} scale ${scale}: nmse ${e} > ${NMSE_TOLERANCE[d]}`);
    }
  }
});

/** Quantize one block of 32 values. */
function block(d: "q8_0" | "q4_0" | "q4_1", x: number[]): Uint8Array {
  return quantize(d, new Float32Array(x));
}

Deno.test("q8_0: exact small cases (scale 1, halves away from zero, all zeros)", () => {
  const x = Array.from({ length: 32 }, (_, j) => j * 8 - 127); // -127..121, amax 127 → d = 1
  const b = block("q8_0", x);
  assert.equal(b[0] | (b[1] << 8), 0x3c00);
  for (let j = 0; j < 32; j++) assert.equal((b[2 + j] << 24) >> 24, x[j]);
  const halves = block("q8_0", [127, 2.5, -2.5, 0.5, ...new Array(28).fill(0)]);
  assert.deepEqual([...halves.subarray(2, 6)].map((v) => (v << 24) >> 24), [127, 3, -3, 1]);
  const zero = block("q8_0", new Array(32).fill(0));
  assert.ok(zero.every((v) => v === 0));
  const y = new Float32Array(32);
  dequantize("q8_0", b, y);
  assert.deepEqual([...y], x);
});

Deno.test("q4_0: exact small cases, nibble order, and ggml's float arithmetic at a boundary", () => {
  // The value of largest magnitude is -8, so d = -8/-8 = 1 and integers k quantize to k + 8.
  const x = Array.from({ length: 32 }, (_, j) => (j % 16) - 8);
  const b = block("q4_0", x);
  assert.equal(b[0] | (b[1] << 8), 0x3c00);
  for (let j = 0; j < 16; j++) {
    assert.equal(b[2 + j] & 15, x[j] + 8, `low nibble ${j}`);
    assert.equal(b[2 + j] >> 4, x[j + 16] + 8, `high nibble ${j}`);
  }
  const y = new Float32Array(32);
  dequantize("q4_0", b, y);
  assert.deepEqual([...y], x);
  // -0.5 - 2^-24 + 8.5 is 7.99999994 in double but rounds to 8.0 in float, as ggml computes it.
  const edge = block("q4_0", [-8, Math.fround(-0.5 - 2 ** -24), ...new Array(30).fill(0)]);
  assert.equal(edge[2] & 15, 0); // -8 → q = 0
  assert.equal(edge[3] & 15, 8, "x = -0.50000006 must land on q = 8 as in ggml, not 7");
});

Deno.test("q4_1: exact small cases with a minimum", () => {
  const x = Array.from({ length: 32 }, (_, j) => 10 + (j % 16)); // min 10, max 25 → d = 1, m = 10
  const b = block("q4_1", x);
  assert.equal(b[0] | (b[1] << 8), 0x3c00);
  assert.equal(f16ToF32(b[2] | (b[3] << 8)), 10);
  for (let j = 0; j < 16; j++) assert.equal(b[4 + j], (j & 15) | ((j & 15) << 4));
  const y = new Float32Array(32);
  dequantize("q4_1", b, y);
  assert.deepEqual([...y], x);
});

// ---- k-quants: blocks packed bit by bit from chosen parameters -------------------------------------

/** Write the low `n` bits of `v` at bit offset `bit` (LSB-first within each byte) of `buf`. */
function putBits(buf: Uint8Array, bit: number, n: number, v: number): void {
  for (let i = 0; i < n; i++) {
    const b = bit + i;
    if ((v >> i) & 1) buf[b >> 3] |= 1 << (b & 7);
    else buf[b >> 3] &= ~(1 << (b & 7));
  }
}

function putF16(buf: Uint8Array, at: number, h: number): void {
  buf[at] = h & 0xff;
  buf[at + 1] = h >> 8;
}

/**
 * A q4_K block from 8 six-bit scales, 8 six-bit mins and 256 four-bit quants. Layout (ggml): f16 d,
 * f16 dmin, 12 scale bytes, 128 quant bytes. Sub-blocks 0..3 keep scale/min in the low 6 bits of bytes
 * j and j+4; sub-blocks 4..7 keep their low 4 bits in the nibbles of byte j+4 and their top 2 bits in
 * the top bits of bytes j-4 (scale) and j (min). Elements 64c..64c+31 are the low nibbles of quant
 * bytes 32c..32c+31, elements 64c+32..64c+63 the high nibbles.
 */
function packQ4K(d: number, dmin: number, sc: number[], mn: number[], q: number[]): Uint8Array {
  const b = new Uint8Array(144);
  putF16(b, 0, d);
  putF16(b, 2, dmin);
  const S = 4 * 8; // bit offset of the scale bytes
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      putBits(b, S + 8 * j, 6, sc[j]);
      putBits(b, S + 8 * (j + 4), 6, mn[j]);
    } else {
      putBits(b, S + 8 * (j + 4), 4, sc[j] & 15);
      putBits(b, S + 8 * (j + 4) + 4, 4, mn[j] & 15);
      putBits(b, S + 8 * (j - 4) + 6, 2, sc[j] >> 4);
      putBits(b, S + 8 * j + 6, 2, mn[j] >> 4);
    }
  }
  for (let i = 0; i < 256; i++) {
    const c = i >> 6, l = i & 31, high = (i & 63) >= 32;
    putBits(b, (16 + 32 * c + l) * 8 + (high ? 4 : 0), 4, q[i]);
  }
  return b;
}

/**
 * A q6_K block from 16 int8 scales and 256 six-bit quants (value = d * scale[i/16] * (q - 32)).
 * Layout (ggml): 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales, f16 d. For
 * element i in half h (128 each), group g (32 each) and lane l: its low bits are the low (g < 2) or high
 * nibble of ql[64h + l + 32(g % 2)], its high bits are bits 2g..2g+1 of qh[32h + l].
 */
function packQ6K(d: number, sc: number[], q: number[]): Uint8Array {
  const b = new Uint8Array(210);
  for (let i = 0; i < 256; i++) {
    const h = i >> 7, g = (i >> 5) & 3, l = i & 31;
    putBits(b, (64 * h + l + 32 * (g & 1)) * 8 + (g < 2 ? 0 : 4), 4, q[i] & 15);
    putBits(b, (128 + 32 * h + l) * 8 + 2 * g, 2, q[i] >> 4);
  }
  for (let s = 0; s < 16; s++) b[192 + s] = sc[s] & 0xff;
  putF16(b, 208, d);
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let at = 0;
  for (const p of parts) out.set(p, (at += p.byteLength) - p.byteLength);
  return out;
}

Deno.test("q4_k: hand-built blocks decode to d*scale*q - dmin*min", () => {
  // The simplest block: scale 1, min 0, d 1 → the quants themselves.
  const q0 = Array.from({ length: 256 }, (_, i) => i % 16);
  const y0 = new Float32Array(256);
  dequantize("q4_k", packQ4K(0x3c00, 0, new Array(8).fill(1), new Array(8).fill(0), q0), y0);
  assert.deepEqual([...y0], q0);

  const r = rng(5);
  const blocks: Uint8Array[] = [], want: number[] = [];
  for (let blk = 0; blk < 3; blk++) {
    const dBits = f32ToF16(0.01 + r() * 0.1), dminBits = f32ToF16(0.005 + r() * 0.05);
    // Scales and mins cover the full 6-bit range, so the top-2-bit paths are exercised.
    const sc = Array.from({ length: 8 }, (_, j) => (blk === 0 ? 63 - j : Math.floor(r() * 64)));
    const mn = Array.from({ length: 8 }, (_, j) => (blk === 0 ? 32 + j : Math.floor(r() * 64)));
    const q = Array.from({ length: 256 }, () => Math.floor(r() * 16));
    blocks.push(packQ4K(dBits, dminBits, sc, mn, q));
    const d = f16Reference(dBits), dmin = f16Reference(dminBits);
    for (let i = 0; i < 256; i++) want.push(Math.fround(d * sc[i >> 5] * q[i] - dmin * mn[i >> 5]));
  }
  const bytes = concat(blocks);
  const y = new Float32Array(768);
  dequantize("q4_k", bytes, y);
  assert.deepEqual([...y], want);
  // Starting at the second block reads only the blocks asked for.
  const part = new Float32Array(256);
  dequantize("q4_k", bytes, part, 256, 512);
  assert.deepEqual([...part], want.slice(512));
});

Deno.test("q6_k: hand-built blocks decode to d*scale*(q-32), negative scales included", () => {
  const q0 = Array.from({ length: 256 }, (_, i) => i % 64);
  const y0 = new Float32Array(256);
  dequantize("q6_k", packQ6K(0x3800, /* 0.5 */ new Array(16).fill(-2), q0), y0);
  assert.deepEqual([...y0], q0.map((q) => -(q - 32)));

  const r = rng(9);
  const blocks: Uint8Array[] = [], want: number[] = [];
  for (let blk = 0; blk < 3; blk++) {
    const dBits = f32ToF16((r() - 0.5) * 0.02);
    const sc = Array.from(
      { length: 16 },
      (_, s) => (blk === 0 ? (s % 2 ? -128 : 127) : Math.floor(r() * 256) - 128),
    );
    const q = Array.from({ length: 256 }, () => Math.floor(r() * 64));
    blocks.push(packQ6K(dBits, sc, q));
    const d = f16Reference(dBits);
    for (let i = 0; i < 256; i++) want.push(Math.fround(d * sc[i >> 4] * (q[i] - 32)));
  }
  const y = new Float32Array(768);
  dequantize("q6_k", concat(blocks), y);
  assert.deepEqual([...y], want);
});

Deno.test("byteLengthOf: block multiples, and MODEL_FORMAT for partial blocks or bad counts", () => {
  assert.equal(byteLengthOf("f32", 7), 28);
  assert.equal(byteLengthOf("bf16", 3), 6);
  assert.equal(byteLengthOf("q8_0", 64), 68);
  assert.equal(byteLengthOf("q4_0", 32), 18);
  assert.equal(byteLengthOf("q4_1", 0), 0);
  assert.equal(byteLengthOf("q4_k", 512), 288);
  assert.equal(byteLengthOf("q6_k", 256), 210);
  for (
    const [d, n] of [["q4_0", 33], ["q8_0", 16], ["q4_k", 255], ["q6_k", 300], ["f32", -1], [
      "f16",
      1.5,
    ]] as const
  ) {
    assert.throws(
      () => byteLengthOf(d, n, "w"),
      (e) => e instanceof LlmError && e.code === "MODEL_FORMAT",
      `${d} ${n}`,
    );
  }
  assert.throws(
    () => dtypeInfo("q5_k" as never),
    (e) => e instanceof LlmError && e.code === "UNSUPPORTED_DTYPE",
  );
});
