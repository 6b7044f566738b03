/**
 * GGUF hostile input: truncation at every header byte, bad magic / versions / counts / lengths / types,
 * wrong architecture and tokenizer metadata, counts that fit a multi-GB file, and seeded mutations.
 */
import assert from "node:assert/strict";
import { ggmlTypeName, type GgufHeader, parseGguf, readGgufHeader } from "../src/format/gguf.ts";
import { ggufMetadataForLlama, type GgufValue, writeGgufBytes } from "../src/format/gguf_write.ts";
import { bytesSource } from "../src/io/byte_source.ts";
import { LlmError, type LlmErrorCode } from "../src/errors.ts";
import type { LlamaConfig } from "../src/model/config.ts";
import type { TokenizerData } from "../src/format/tokenizer.ts";
import { rng } from "./_util.ts";
import { CONFIG, isCode, llamaFile, llamaTensors, TOKENIZER } from "./_gguf.ts";

// ---- hostile input --------------------------------------------------------------------------------------

/** A small complete model to corrupt: 1 layer, tiny vocabulary. */
function smallModel(): Uint8Array {
  const c: LlamaConfig = {
    ...CONFIG,
    dim: 32,
    hiddenDim: 64,
    nLayers: 1,
    nHeads: 2,
    nKvHeads: 1,
    vocabSize: 24,
  };
  const tk: TokenizerData = { ...TOKENIZER, tokens: TOKENIZER.tokens.slice(0, 24) };
  delete (tk as { scores?: unknown }).scores;
  delete (tk as { tokenTypes?: unknown }).tokenTypes;
  return llamaFile({ ...c, ropeFreqFactors: [1, 1, 1, 1, 2, 2, 4, 8] }, { tokenizer: tk }).bytes;
}

function patched(bytes: Uint8Array, at: number, write: (dv: DataView) => void): Uint8Array {
  const out = bytes.slice();
  write(new DataView(out.buffer, at));
  return out;
}

/** Offset just past a tensor's name string in the header (where its n_dims starts). */
function afterName(bytes: Uint8Array, name: string): number {
  const enc = new TextEncoder().encode(name);
  for (let i = 0; i < bytes.length; i++) {
    if (enc.every((b, j) => bytes[i + j] === b) && bytes[i - 8] === enc.length) return i + enc.length;
  }
  throw new Error(`${name} not found`);
}

async function rejects(bytes: Uint8Array, code: LlmErrorCode, what: string, match?: RegExp): Promise<void> {
  await assert.rejects(
    () => parseGguf(bytesSource(bytes, "bad.gguf")),
    (e) => isCode(code)(e) && (!match || match.test((e as Error).message)),
    what,
  );
}

Deno.test("hostile: truncated at every header byte and inside the data is MODEL_FORMAT", async () => {
  const bytes = smallModel();
  const h: GgufHeader = await readGgufHeader(bytesSource(bytes));
  const cuts = [...Array(h.dataOffset + 1).keys()];
  for (let at = h.dataOffset + 1; at < bytes.length; at += 97) cuts.push(at);
  cuts.push(bytes.length - 1);
  for (const cut of cuts) await rejects(bytes.subarray(0, cut), "MODEL_FORMAT", `cut at ${cut}`);
  await rejects(bytes.subarray(0, bytes.length - 1), "MODEL_FORMAT", "last byte", /truncated/);
});

Deno.test("hostile: magic, versions, absurd counts and lengths, n_dims, unknown types", async () => {
  const bytes = smallModel();
  const u32At = (at: number, v: number) => patched(bytes, at, (dv) => dv.setUint32(0, v, true));
  const u64At = (at: number, v: bigint) => patched(bytes, at, (dv) => dv.setBigUint64(0, v, true));
  await rejects(patched(bytes, 0, (dv) => dv.setUint8(3, 0x47)), "MODEL_FORMAT", "magic", /not a GGUF/);
  await rejects(new TextEncoder().encode("tjgg\x01\x00\x00\x00"), "MODEL_FORMAT", "ggjt", /pre-GGUF/);
  await rejects(u32At(4, 1), "MODEL_FORMAT", "v1", /re-convert/);
  await rejects(u32At(4, 4), "MODEL_FORMAT", "v4", /version 4/);
  await rejects(u32At(4, 0x03000000), "MODEL_FORMAT", "big-endian", /big-endian/);
  await rejects(u64At(8, 2n ** 60n), "MODEL_FORMAT", "n_tensors 2^60", /tensor count/);
  await rejects(u64At(16, 2n ** 60n), "MODEL_FORMAT", "n_kv 2^60", /metadata count/);
  await rejects(u64At(16, 2n ** 64n - 1n), "MODEL_FORMAT", "n_kv 2^64-1");
  await rejects(u64At(24, 2n ** 40n), "MODEL_FORMAT", "key length 2^40", /length/);
  await rejects(u64At(24, 2n ** 63n), "MODEL_FORMAT", "key length 2^63");
  await rejects(new Uint8Array(0), "MODEL_FORMAT", "empty file");

  // The tokens array: its count sits after the key, the u32 type 9 and the u32 item type 8.
  const tokensKey = afterName(bytes, "tokenizer.ggml.tokens");
  await rejects(u64At(tokensKey + 8, 2n ** 61n), "MODEL_FORMAT", "array length 2^61", /array length/);
  await rejects(u32At(tokensKey, 13), "MODEL_FORMAT", "value type 13", /unknown value type/);
  await rejects(u32At(tokensKey + 4, 99), "MODEL_FORMAT", "item type 99", /unknown value type/);
  const firstToken = tokensKey + 16;
  await rejects(u64At(firstToken, 2n ** 40n), "MODEL_FORMAT", "string length 2^40");

  const q = afterName(bytes, "blk.0.attn_q.weight");
  await rejects(u32At(q, 9), "MODEL_FORMAT", "n_dims 9", /9 dimensions/);
  await rejects(u32At(q, 0), "MODEL_FORMAT", "n_dims 0");
  await rejects(u64At(q + 4, 2n ** 62n), "MODEL_FORMAT", "ne 2^62");
  await rejects(u64At(q + 4, 2n ** 30n), "MODEL_FORMAT", "ne past the file", /passes the end/);
  await rejects(u64At(q + 4 + 16 + 4, 2n ** 58n), "MODEL_FORMAT", "offset 2^58");
  await rejects(u64At(q + 4 + 16 + 4, 8n), "MODEL_FORMAT", "unaligned offset", /aligned/);
  await rejects(u64At(q + 4, 33n), "MODEL_FORMAT", "shape disagrees with the config");

  // Unknown ggml types parse in the header (for `info`) but fail the model with UNSUPPORTED_DTYPE.
  for (
    const [id, name] of [[13, "Q5_K"], [10, "Q2_K"], [6, "Q5_0"], [23, "IQ4_XS"], [
      200,
      "unknown ggml type 200",
    ]] as const
  ) {
    const file = u32At(q + 4 + 16, id);
    const h = await readGgufHeader(bytesSource(file));
    const t = h.tensors.find((t) => t.name === "blk.0.attn_q.weight")!;
    assert.equal(t.dtype, undefined);
    assert.equal(ggmlTypeName(t.ggmlType), name);
    await rejects(file, "UNSUPPORTED_DTYPE", name, new RegExp(`blk\\.0\\.attn_q\\.weight.*${name}.*Q4_K`));
  }

  // A known type edited into another known one of another size: the tensor's bytes no longer match the data
  // layout (a smaller type leaves a gap before the next tensor, a larger one overlaps it), never garbage
  // weights. (f16 <-> bf16 keeps every size and cannot be told from the layout.)
  const per32: Record<number, number> = { 0: 128, 1: 64, 30: 64, 8: 34, 2: 18 }; // bytes per 32 elements
  const own = h0(await readGgufHeader(bytesSource(bytes)));
  for (const id of [0, 1, 8, 2].filter((i) => per32[i] !== per32[own])) {
    await rejects(
      u32At(q + 4 + 16, id),
      "MODEL_FORMAT",
      `type ${id}`,
      /types or shapes do not match the data/,
    );
  }
});

const h0 = (h: GgufHeader): number => h.tensors.find((t) => t.name === "blk.0.attn_q.weight")!.ggmlType;

Deno.test("hostile: architecture, missing keys and bad tokenizer metadata", async () => {
  const base = ggufMetadataForLlama(CONFIG, TOKENIZER);
  const file = (meta: Record<string, GgufValue>) =>
    writeGgufBytes({ metadata: meta, tensors: llamaTensors(CONFIG) });
  await rejects(file({ ...base, "general.architecture": "qwen2" }), "UNSUPPORTED_MODEL", "qwen2", /"qwen2"/);
  const noArch = { ...base };
  delete noArch["general.architecture"];
  await rejects(file(noArch), "MODEL_FORMAT", "no architecture", /general\.architecture/);
  const noDim = { ...base };
  delete noDim["llama.embedding_length"];
  await rejects(file(noDim), "MODEL_FORMAT", "no dim", /embedding_length/);
  await rejects(file({ ...base, "llama.block_count": "two" }), "MODEL_FORMAT", "string count", /block_count/);
  await rejects(file({ ...base, "llama.attention.head_count": 0 }), "MODEL_FORMAT", "zero heads");
  assert.throws(
    () => file({ ...base, "general.alignment": 3 }),
    isCode("BAD_REQUEST"),
    "the writer refuses it",
  );
  await rejects(
    file({ ...base, "tokenizer.ggml.scores": [1, 2] }),
    "TOKENIZER_FORMAT",
    "short scores",
    /scores/,
  );
  await rejects(file({ ...base, "tokenizer.ggml.tokens": [1, 2] }), "TOKENIZER_FORMAT", "numeric tokens");
  const other = await parseGguf(bytesSource(file({ ...base, "tokenizer.ggml.model": "t5" })));
  assert.equal(other.tokenizer, undefined);
  assert.equal(other.metadata["tokenizer.ggml.model"], "t5");
  // Out-of-range special ids are dropped, as llama.cpp does, rather than failing the load.
  const pad = await parseGguf(
    bytesSource(file({ ...base, "tokenizer.ggml.padding_token_id": { type: "i32", value: -1 } })),
  );
  assert.equal(pad.tokenizer?.padId, undefined);
});

Deno.test("hostile: counts that fit a multi-GB file are still refused before any big read", async () => {
  /** An 8 GiB source: `head` then zeros, recording the largest read asked of it. */
  const huge = (head: Uint8Array) => {
    const src = {
      name: "huge.gguf",
      size: 2 ** 33,
      largest: 0,
      read(offset: number, length: number): Promise<Uint8Array> {
        src.largest = Math.max(src.largest, length);
        if (length > 1 << 26) throw new Error("the parser asked for a huge read");
        const out = new Uint8Array(length);
        out.set(head.subarray(offset, offset + length));
        return Promise.resolve(out);
      },
      close(): void {},
    };
    return src;
  };
  const head = (nTensors: bigint, nKv: bigint, rest: number[]): Uint8Array => {
    const b = new Uint8Array(24 + rest.length * 8);
    const dv = new DataView(b.buffer);
    b.set(new TextEncoder().encode("GGUF"));
    dv.setUint32(4, 3, true);
    dv.setBigUint64(8, nTensors, true);
    dv.setBigUint64(16, nKv, true);
    rest.forEach((v, i) => dv.setBigUint64(24 + 8 * i, BigInt(v), true));
    return b;
  };
  // key "k" (length 1, then 'k' packed into the next u64 with the value type 9 = array and item type 0 = u8)
  const arrayKv = (count: number) => {
    const b = head(0n, 1n, [1, 0, 0]);
    b[32] = 0x6b; // "k"
    new DataView(b.buffer).setUint32(33, 9, true);
    new DataView(b.buffer).setUint32(37, 0, true);
    const out = new Uint8Array(b.length + 8);
    out.set(b);
    new DataView(out.buffer).setBigUint64(41, BigInt(count), true);
    return out;
  };
  const cases: [string, Uint8Array][] = [
    ["tensor count 2^24", head(2n ** 24n, 0n, [])],
    ["metadata count 2^24", head(0n, 2n ** 24n, [])],
    ["key length 2^31", head(0n, 1n, [2 ** 31])],
    ["u8 array of 2^31", arrayKv(2 ** 31)],
  ];
  for (const [what, bytes] of cases) {
    const src = huge(bytes);
    await assert.rejects(
      () => readGgufHeader(src),
      (e) => isCode("MODEL_FORMAT")(e) && /absurd/.test(String(e)),
      what,
    );
    assert.ok(src.largest <= 1 << 20, `${what}: read ${src.largest} bytes`);
  }
});

Deno.test("hostile: 600 seeded mutations never throw anything but LlmError", async () => {
  const bytes = smallModel();
  const h = await readGgufHeader(bytesSource(bytes));
  const r = rng(1234);
  const allowed = new Set(["MODEL_FORMAT", "UNSUPPORTED_DTYPE", "UNSUPPORTED_MODEL", "TOKENIZER_FORMAT"]);
  let failed = 0;
  for (let i = 0; i < 600; i++) {
    const m = bytes.slice();
    const flips = 1 + Math.floor(r() * 4);
    for (let f = 0; f < flips; f++) {
      // Mostly the header, where structure lives; mutations of tensor data only change numbers.
      const at = Math.floor(r() * (r() < 0.9 ? h.dataOffset : m.length));
      m[at] = r() < 0.5 ? m[at] ^ (1 << Math.floor(r() * 8)) : Math.floor(r() * 256);
    }
    const src = bytesSource(r() < 0.2 ? m.subarray(0, Math.floor(r() * m.length)) : m);
    try {
      (await parseGguf(src)).close();
    } catch (e) {
      failed++;
      if (!(e instanceof LlmError) || !allowed.has(e.code)) {
        throw new Error(`mutation ${i} threw ${e instanceof LlmError ? e.code : String(e)}`, { cause: e });
      }
    }
  }
  assert.ok(failed > 100, `most mutations should be caught (${failed})`);
});
