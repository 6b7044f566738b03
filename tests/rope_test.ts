/** RoPE frequencies: plain theta, Llama-3.1 scaling bands, and GGUF rope_freqs factors. */
import assert from "node:assert/strict";
import { ropeInvFreq } from "../src/model/rope.ts";
import { TINY_CONFIG } from "./_synth.ts";
import type { LlamaConfig } from "../src/model/config.ts";

const close = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-6 * Math.max(Math.abs(b), 1e-30);

Deno.test("plain RoPE: invFreq[j] = theta^(-2j/headDim)", () => {
  const c: LlamaConfig = { ...TINY_CONFIG, headDim: 128, ropeTheta: 500000 };
  const f = ropeInvFreq(c);
  assert.equal(f.length, 64);
  for (let j = 0; j < 64; j++) assert.ok(close(f[j], 500000 ** (-2 * j / 128)), `j=${j}`);
});

Deno.test("Llama-3.1 scaling keeps short wavelengths, divides long ones by factor, blends between", () => {
  const scaling = {
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  } as const;
  const c: LlamaConfig = { ...TINY_CONFIG, headDim: 128, ropeTheta: 500000, ropeScaling: scaling };
  const f = ropeInvFreq(c);
  let kept = 0, divided = 0, blended = 0;
  for (let j = 0; j < 64; j++) {
    const base = 500000 ** (-2 * j / 128), wavelen = 2 * Math.PI / base;
    if (wavelen < 8192 / 4) {
      assert.ok(close(f[j], base));
      kept++;
    } else if (wavelen > 8192 / 1) {
      assert.ok(close(f[j], base / 8));
      divided++;
    } else {
      const smooth = (8192 / wavelen - 1) / (4 - 1);
      assert.ok(close(f[j], (1 - smooth) * base / 8 + smooth * base));
      assert.ok(f[j] < base && f[j] > base / 8);
      blended++;
    }
  }
  // all three bands occur for Llama-3.1-8B's settings
  assert.ok(kept > 0 && divided > 0 && blended > 0, `${kept}/${divided}/${blended}`);
});

Deno.test("GGUF rope_freqs factors divide the frequencies and must match headDim/2", () => {
  const factors = Array.from({ length: 4 }, (_, j) => j + 1);
  const c: LlamaConfig = { ...TINY_CONFIG, headDim: 8, ropeFreqFactors: factors };
  const f = ropeInvFreq(c);
  for (let j = 0; j < 4; j++) assert.ok(close(f[j], 10000 ** (-2 * j / 8) / (j + 1)));
  assert.throws(() => ropeInvFreq({ ...c, ropeFreqFactors: [1, 2] }), /rope_freqs has 2 values/);
});
