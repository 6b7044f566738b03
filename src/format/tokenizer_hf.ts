/**
 * Hugging Face `tokenizer.json` → {@link TokenizerData}.
 *
 * Two LLaMA shapes are understood, both `model.type: "BPE"`:
 * - byte-level BPE (a ByteLevel pre-tokenizer or decoder: Llama-3, GPT-2) → kind "bpe";
 * - SentencePiece converted to BPE (`byte_fallback`, "▁" for spaces: Llama-2) → kind "spm". The file has
 *   merges but no SentencePiece scores, so scores are derived from merge ranks (a token's score is minus
 *   the rank of the first merge producing it): merging by highest score then equals merging by rank.
 * @module
 */
import { LlmError } from "../errors.ts";
import { type TokenizerData, TokenType } from "./tokenizer.ts";
import { BYTE_PIECE } from "./tokenizer_spm.ts";

/** More ids than any real vocabulary: a guard against absurd ids allocating huge arrays. */
const MAX_VOCAB = 1 << 22;
/** Score of tokens no merge produces: at or below llama2.c's floor, so spm never forms them by merging. */
const UNMERGED_SCORE = -1e10;

type Obj = Record<string, unknown>;

function bad(path: string, what: string): LlmError {
  return new LlmError(
    "TOKENIZER_FORMAT",
    `tokenizer.json: ${path} ${what}; the file is corrupt or not a Hugging Face tokenizer.json`,
  );
}

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function obj(v: unknown, path: string): Obj {
  if (!isObj(v)) throw bad(path, `should be an object, got ${describe(v)}`);
  return v;
}

function tokenIdAt(v: unknown, path: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v >= MAX_VOCAB) {
    throw bad(path, `should be a token id (an integer 0..${MAX_VOCAB - 1}), got ${describe(v)}`);
  }
  return v;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v);
  return typeof v === "object" ? "an object" : String(v);
}

/** A component and, for `Sequence` types, its parts (pretokenizers / normalizers / processors / decoders). */
function components(v: unknown): Obj[] {
  if (!isObj(v)) return [];
  const inner = v.pretokenizers ?? v.normalizers ?? v.processors ?? v.decoders;
  if (v.type === "Sequence" && Array.isArray(inner)) return inner.flatMap(components);
  return [v];
}

/** The Llama-3 split pattern as tokenizer.json spells it (decides `pre: "llama-bpe"`). */
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * Read a tokenizer.json document (already `JSON.parse`d). `config` carries what tokenizer.json lacks
 * or states elsewhere: BOS/EOS ids from config.json / generation_config.json (an EOS list puts the
 * first in `eosId`, the rest in `eotIds`) and the chat template from tokenizer_config.json. Without
 * them, BOS/EOS are found by the usual token texts. Malformed structures throw TOKENIZER_FORMAT
 * naming the JSON path.
 *
 * @example
 * ```ts
 * import { tokenizerDataFromHfJson } from "./tokenizer_hf.ts";
 * const data = tokenizerDataFromHfJson(JSON.parse(await Deno.readTextFile("tokenizer.json")), { bosId: 128000 });
 * console.log(data.kind, data.tokens.length);
 * ```
 */
export function tokenizerDataFromHfJson(
  json: unknown,
  config: { bosId?: number; eosId?: number | number[]; chatTemplate?: string } = {},
): TokenizerData {
  const root = obj(json, "$");
  const model = obj(root.model, "$.model");
  if (model.type !== "BPE") {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      `tokenizer.json: $.model.type is ${describe(model.type)}; only "BPE" models (Llama-2, Llama-3, GPT-2 ` +
        `style) are supported`,
    );
  }
  const vocab = obj(model.vocab, "$.model.vocab");
  const byId = new Map<number, string>();
  let size = 0;
  for (const [text, id] of Object.entries(vocab)) {
    const i = tokenIdAt(id, `$.model.vocab[${JSON.stringify(text)}]`);
    if (byId.has(i)) {
      throw bad(`$.model.vocab[${JSON.stringify(text)}]`, `reuses id ${i} (${describe(byId.get(i))})`);
    }
    byId.set(i, text);
    size = Math.max(size, i + 1);
  }

  // added_tokens: special ones are control tokens; the others are user-defined (matched as text).
  const added = new Map<number, { content: string; special: boolean }>();
  const addedList = root.added_tokens ?? [];
  if (!Array.isArray(addedList)) {
    throw bad("$.added_tokens", `should be an array, got ${describe(addedList)}`);
  }
  addedList.forEach((a, k) => {
    const p = `$.added_tokens[${k}]`;
    const o = obj(a, p);
    const id = tokenIdAt(o.id, `${p}.id`);
    if (typeof o.content !== "string") {
      throw bad(`${p}.content`, `should be a string, got ${describe(o.content)}`);
    }
    added.set(id, { content: o.content, special: o.special !== false });
    size = Math.max(size, id + 1);
  });
  if (size === 0) throw bad("$.model.vocab", "is empty");

  const tokens: string[] = new Array(size);
  const types: number[] = new Array(size);
  for (let i = 0; i < size; i++) {
    const a = added.get(i);
    const t = a?.content ?? byId.get(i);
    // Holes in the id space become unused empty tokens rather than failing the whole file.
    tokens[i] = t ?? "";
    types[i] = a
      ? (a.special ? TokenType.CONTROL : TokenType.USER_DEFINED)
      : t === undefined
      ? TokenType.UNUSED
      : TokenType.NORMAL;
  }
  const firstId = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (t.length > 0 && !firstId.has(t)) firstId.set(t, i);
  });
  const idOf = (text: string): number | undefined => firstId.get(text);

  const merges = readMerges(model.merges);
  const pres = components(root.pre_tokenizer);
  const norms = components(root.normalizer);
  const decs = components(root.decoder);
  const byteLevel = [...pres, ...decs].some((c) => c.type === "ByteLevel");
  const metaspace = [...pres, ...decs].some((c) => c.type === "Metaspace") ||
    norms.some((c) => c.type === "Replace" && c.content === "\u2581") || model.byte_fallback === true;
  if (!byteLevel && !metaspace) {
    throw new LlmError(
      "TOKENIZER_FORMAT",
      "tokenizer.json: BPE model with neither a ByteLevel pre-tokenizer nor SentencePiece-style byte_fallback/" +
        "Metaspace; this tokenizer family is not supported",
    );
  }

  // BOS / EOS: the caller's ids (from config files) win; else the conventional texts.
  const bosId = config.bosId ?? idOf("<|begin_of_text|>") ?? idOf("<s>");
  const eosList = config.eosId === undefined
    ? []
    : Array.isArray(config.eosId)
    ? config.eosId
    : [config.eosId];
  const eosId = eosList[0] ?? idOf("<|end_of_text|>") ?? idOf("</s>") ?? idOf("<|endoftext|>");
  const eot = idOf("<|eot_id|>");
  const eotIds = [...new Set([...eosList.slice(1), ...(eot !== undefined ? [eot] : [])])].filter((i) =>
    i !== eosId
  );
  for (const id of [bosId, ...eosList]) {
    if (id !== undefined && (!Number.isInteger(id) || id < 0 || id >= size)) {
      throw new LlmError(
        "TOKENIZER_MISMATCH",
        `config token id ${id} is outside tokenizer.json's vocabulary (0..${size - 1}); ` +
          `the config files and tokenizer.json come from different models`,
      );
    }
  }
  for (const id of [bosId, eosId, ...eotIds]) if (id !== undefined) types[id] = TokenType.CONTROL;
  const addBos = templateAddsBos(root.post_processor, bosId === undefined ? undefined : tokens[bosId]);
  const unkId = typeof model.unk_token === "string" ? idOf(model.unk_token) : undefined;
  if (unkId !== undefined) types[unkId] = TokenType.UNKNOWN;
  const common = {
    tokens,
    tokenTypes: types,
    ...(bosId !== undefined ? { bosId } : {}),
    ...(eosId !== undefined ? { eosId } : {}),
    ...(eotIds.length > 0 ? { eotIds } : {}),
    ...(unkId !== undefined ? { unkId } : {}),
    ...(addBos !== undefined ? { addBos } : {}),
    ...(config.chatTemplate !== undefined ? { chatTemplate: config.chatTemplate } : {}),
  };

  if (byteLevel) {
    const split = pres.find((c) => c.type === "Split");
    const pattern = isObj(split?.pattern) ? split.pattern.Regex : undefined;
    return { kind: "bpe", ...common, merges, pre: pattern === LLAMA3_SPLIT ? "llama-bpe" : "gpt2" };
  }

  // SentencePiece converted to BPE: derive scores from ranks; byte pieces are BYTE tokens.
  const scores = new Array<number>(size).fill(UNMERGED_SCORE);
  merges.forEach((m, rank) => {
    const id = idOf(m.replace(" ", ""));
    if (id !== undefined && scores[id] === UNMERGED_SCORE) scores[id] = -rank;
  });
  for (let i = 0; i < size; i++) {
    if (types[i] === TokenType.NORMAL && BYTE_PIECE.test(tokens[i])) types[i] = TokenType.BYTE;
  }
  return { kind: "spm", ...common, scores, addSpacePrefix: addsSpacePrefix(pres, norms) };
}

/** Merges as "a b" strings; newer files store [a, b] pairs. */
function readMerges(v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw bad("$.model.merges", `should be an array, got ${describe(v)}`);
  return v.map((m, i) => {
    if (typeof m === "string") return m;
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") {
      return `${m[0]} ${m[1]}`;
    }
    throw bad(`$.model.merges[${i}]`, `should be "a b" or ["a", "b"], got ${describe(m)}`);
  });
}

/** Whether the single-sequence template starts with the BOS token (HF's way of saying add_bos). */
function templateAddsBos(post: unknown, bosText: string | undefined): boolean | undefined {
  for (const c of components(post)) {
    if (c.type !== "TemplateProcessing" || !Array.isArray(c.single)) continue;
    const first = c.single[0];
    const special = isObj(first) && isObj(first.SpecialToken) ? first.SpecialToken.id : undefined;
    return special !== undefined && special === bosText;
  }
  return undefined;
}

/** Llama-2 style: a Prepend("▁") normalizer, or Metaspace with add_prefix_space / prepend_scheme. */
function addsSpacePrefix(pres: Obj[], norms: Obj[]): boolean {
  if (norms.some((c) => c.type === "Prepend" && c.prepend === "\u2581")) return true;
  const meta = pres.find((c) => c.type === "Metaspace");
  if (!meta) return false;
  if (typeof meta.prepend_scheme === "string") return meta.prepend_scheme !== "never";
  return meta.add_prefix_space !== false;
}
