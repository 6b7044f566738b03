/**
 * Hugging Face model directories: `config.json` plus `model.safetensors`, or
 * `model.safetensors.index.json` and its shards, and optionally `tokenizer.json`,
 * `tokenizer_config.json` (chat template) and `generation_config.json` (extra EOS ids).
 * Runtime-specific (reads the file system); the parsing itself lives in `src/format/safetensors.ts`.
 * @module
 */
import type { ByteSource } from "./byte_source.ts";
import { fileSource } from "./deno_fs.ts";
import { LlmError } from "../errors.ts";
import { validateConfig } from "../model/config.ts";
import type { TokenizerData } from "../format/tokenizer.ts";
import { type ModelFile, type TensorEntry, validateTensors } from "../format/model_file.ts";
import { hfConfigToLlama, hfTensorName, parseSafetensorsHeader } from "../format/safetensors.ts";
import { tokenizerDataFromHfJson } from "../format/tokenizer_hf.ts";

/** Size caps for the JSON side files: far above real ones, low enough that a hostile file cannot exhaust memory. */
const MAX_CONFIG_BYTES = 16 << 20;
const MAX_INDEX_BYTES = 64 << 20;
const MAX_TOKENIZER_BYTES = 256 << 20;

/**
 * Load a Hugging Face LLaMA directory as a {@link ModelFile} (format "safetensors", ropeStyle
 * "half"). Tensors are located, not read; each shard is opened once and closed by `close()`.
 * Embeddings are tied when config.json says so or when `lm_head.weight` is absent.
 *
 * @example
 * ```ts
 * import { loadHfDirectory } from "./hf_dir.ts";
 * const model = await loadHfDirectory("./TinyLlama-1.1B-Chat-v1.0");
 * console.log(model.config.nLayers, model.tokenizer?.kind);
 * model.close();
 * ```
 */
export async function loadHfDirectory(dir: string): Promise<ModelFile> {
  const base = dir.replace(/[\\/]+$/, "") || dir;
  const configPath = `${base}/config.json`;
  const configText = await readTextIfExists(configPath, MAX_CONFIG_BYTES);
  if (configText === undefined) {
    throw new LlmError(
      "NOT_FOUND",
      `${base}: no config.json; a Hugging Face model directory needs config.json and model.safetensors ` +
        `(or model.safetensors.index.json with its shards): check the path or download the whole repository`,
    );
  }
  const configJson = parseJson(configText, configPath);
  const hfConfig = hfConfigToLlama(configJson, configPath);
  const raw = configJson as Record<string, unknown>;

  const sources: ByteSource[] = [];
  try {
    const tensors = await loadTensors(base, hfConfig.nLayers, sources);
    // HF ties by flag; a missing lm_head also means the embedding doubles as the LM head.
    const tied = hfConfig.tiedEmbeddings || !tensors.has("output");
    if (tied) tensors.delete("output");
    const config = validateConfig({ ...hfConfig, tiedEmbeddings: tied }, configPath);
    checkLayersPresent(config.nLayers, tensors, base);
    validateTensors(config, tensors, base);
    const tokenizer = await loadTokenizer(base, raw);
    return {
      format: "safetensors",
      config,
      tensors,
      ...(tokenizer ? { tokenizer } : {}),
      metadata: { ...raw },
      close(): void {
        for (const s of sources) s.close();
      },
    };
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }
}

/** Locate every canonical tensor across the single file or the shards named by the index. */
async function loadTensors(
  base: string,
  nLayers: number,
  sources: ByteSource[],
): Promise<Map<string, TensorEntry>> {
  const single = `${base}/model.safetensors`;
  const indexPath = `${base}/model.safetensors.index.json`;
  // null = take every tensor of the file; otherwise HF name -> shard file from the index.
  let weightMap: Map<string, string> | null = null;
  let shardFiles: string[];
  if (await isFile(single)) {
    shardFiles = ["model.safetensors"];
  } else {
    const indexText = await readTextIfExists(indexPath, MAX_INDEX_BYTES);
    if (indexText === undefined) {
      const hint = await isFile(`${base}/pytorch_model.bin`)
        ? " (pytorch_model.bin is not supported: convert the checkpoint to safetensors)"
        : "";
      throw new LlmError(
        "NOT_FOUND",
        `${base}: no model.safetensors or model.safetensors.index.json${hint}; download the weights ` +
          `into this directory`,
      );
    }
    weightMap = parseIndex(parseJson(indexText, indexPath), indexPath, nLayers);
    shardFiles = [...new Set(weightMap.values())];
  }

  const tensors = new Map<string, TensorEntry>();
  const hfNameOf = new Map<string, string>();
  for (const file of shardFiles) {
    const path = `${base}/${file}`;
    let src: ByteSource;
    try {
      src = await fileSource(path);
    } catch (e) {
      if (e instanceof LlmError && e.code === "NOT_FOUND" && weightMap) {
        throw new LlmError(
          "NOT_FOUND",
          `${indexPath} names shard ${file}, which is missing; download all shards of the model`,
          { cause: e },
        );
      }
      throw e;
    }
    sources.push(src);
    const header = await parseSafetensorsHeader(src, { filter: (n) => hfTensorName(n) !== undefined });
    for (const [hfName, t] of header) {
      // The index is authoritative: a stray copy in another shard is not the tensor it means.
      if (weightMap && weightMap.get(hfName) !== file) continue;
      const name = hfTensorName(hfName)!;
      checkLayer(name, hfName, nLayers, path);
      const prev = hfNameOf.get(name);
      if (prev !== undefined) {
        throw new LlmError("MODEL_FORMAT", `${path}: tensors ${prev} and ${hfName} both map to ${name}`);
      }
      hfNameOf.set(name, hfName);
      tensors.set(name, { name, ...t, source: src });
    }
  }
  if (weightMap) {
    for (const [hfName, file] of weightMap) {
      if (hfTensorName(hfName) !== undefined && !tensors.has(hfTensorName(hfName)!)) {
        throw new LlmError(
          "MODEL_FORMAT",
          `${indexPath} says ${hfName} is in ${file}, but that shard has no such tensor; ` +
            `the download is incomplete or mixes versions: download the model again`,
        );
      }
    }
  }
  return tensors;
}

/**
 * Name the first missing layer tensor before validateTensors lists every required name: a corrupt
 * num_hidden_layers near a million would otherwise build millions of names for a file with a few.
 */
function checkLayersPresent(nLayers: number, tensors: ReadonlyMap<string, TensorEntry>, where: string): void {
  for (let i = 0; i < nLayers; i++) {
    for (const part of ["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]) {
      if (!tensors.has(`l${i}.${part}`)) {
        throw new LlmError(
          "MODEL_FORMAT",
          `${where}: tensor l${i}.${part} (layer ${i} of the ${nLayers} config.json declares) is missing; ` +
            `the checkpoint is incomplete or config.json does not belong to it`,
        );
      }
    }
  }
}

/** Throw when a canonical per-layer name points past the config's layer count. */
function checkLayer(name: string, hfName: string, nLayers: number, where: string): void {
  const layer = /^l(\d+)\./.exec(name);
  if (layer && Number(layer[1]) >= nLayers) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: tensor ${hfName} belongs to layer ${layer[1]} but config.json has num_hidden_layers = ` +
        `${nLayers}; the checkpoint and its config do not match`,
    );
  }
}

/** The index's weight_map, restricted to tensors we use; shard names must stay inside the directory. */
function parseIndex(json: unknown, where: string, nLayers: number): Map<string, string> {
  const wm = isRecord(json) ? json.weight_map : undefined;
  if (!isRecord(wm)) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: weight_map is missing or not an object; the file is corrupt`,
    );
  }
  const out = new Map<string, string>();
  for (const [name, file] of Object.entries(wm)) {
    const canonical = hfTensorName(name);
    if (canonical === undefined) continue;
    checkLayer(canonical, name, nLayers, where);
    if (typeof file !== "string" || !/^[^\\/]+$/.test(file) || file === "." || file === "..") {
      throw new LlmError(
        "MODEL_FORMAT",
        `${where}: weight_map entry for ${name} is ${JSON.stringify(file).slice(0, 80)}, expected a file ` +
          `name inside the model directory; the index is corrupt`,
      );
    }
    out.set(name, file);
  }
  return out;
}

/** tokenizer.json (when present) with BOS/EOS from config.json / generation_config.json and the chat template. */
async function loadTokenizer(
  base: string,
  config: Record<string, unknown>,
): Promise<TokenizerData | undefined> {
  const tokPath = `${base}/tokenizer.json`;
  const tokText = await readTextIfExists(tokPath, MAX_TOKENIZER_BYTES);
  if (tokText === undefined) return undefined;
  const tokJson = parseJson(tokText, tokPath);

  const genPath = `${base}/generation_config.json`;
  const genText = await readTextIfExists(genPath, MAX_CONFIG_BYTES);
  const gen = genText === undefined ? {} : parseJson(genText, genPath);
  const genRec = isRecord(gen) ? gen : {};
  const bosId = tokenId(config.bos_token_id, `${base}/config.json`, "bos_token_id") ??
    tokenId(genRec.bos_token_id, genPath, "bos_token_id");
  // EOS ids from both files: Llama-3 instruct models list end-of-turn only in generation_config.json.
  const eos = [
    ...tokenIds(config.eos_token_id, `${base}/config.json`),
    ...tokenIds(genRec.eos_token_id, genPath),
  ];
  const eosIds = [...new Set(eos)];

  const tcPath = `${base}/tokenizer_config.json`;
  const tcText = await readTextIfExists(tcPath, MAX_TOKENIZER_BYTES);
  const tc = tcText === undefined ? undefined : parseJson(tcText, tcPath);
  const chatTemplate = isRecord(tc) ? pickTemplate(tc.chat_template) : undefined;

  return tokenizerDataFromHfJson(tokJson, {
    ...(bosId !== undefined ? { bosId } : {}),
    ...(eosIds.length === 1 ? { eosId: eosIds[0] } : eosIds.length > 1 ? { eosId: eosIds } : {}),
    ...(chatTemplate !== undefined ? { chatTemplate } : {}),
  });
}

/** chat_template is a string, or a list of {name, template} where "default" is the chat one. */
function pickTemplate(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const named = v.filter(isRecord);
    const pick = named.find((t) => t.name === "default") ?? named[0];
    if (pick && typeof pick.template === "string") return pick.template;
  }
  return undefined;
}

function tokenId(v: unknown, where: string, key: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${where}: ${key} is ${JSON.stringify(v).slice(0, 80)}, expected a token id (non-negative integer)`,
    );
  }
  return v;
}

function tokenIds(v: unknown, where: string): number[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map((x) => tokenId(x, where, "eos_token_id")!);
  return [tokenId(v, where, "eos_token_id")!];
}

function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${path}: not valid JSON (${(e as Error).message}); the file is corrupt: download it again`,
      { cause: e },
    );
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** A small text file, or undefined when missing; refuses files over `max` bytes before reading them. */
async function readTextIfExists(path: string, max: number): Promise<string | undefined> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    // A file passed where the directory belongs reads as "nothing there", which the caller explains.
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return undefined;
    throw accessError(path, e);
  }
  if (!stat.isFile) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${path} is not a regular file; remove it or replace it with the real file`,
    );
  }
  if (stat.size > max) {
    throw new LlmError(
      "MODEL_FORMAT",
      `${path} is ${stat.size} bytes, more than the ${max} a real one needs; the file is corrupt`,
    );
  }
  try {
    const bytes = await Deno.readFile(path);
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    if (e instanceof TypeError) {
      throw new LlmError("MODEL_FORMAT", `${path}: not valid UTF-8; the file is corrupt: download it again`, {
        cause: e,
      });
    }
    throw accessError(path, e);
  }
}

function accessError(path: string, e: unknown): LlmError {
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    return new LlmError("BAD_REQUEST", `${path}: read permission denied; run deno with --allow-read`, {
      cause: e,
    });
  }
  if (e instanceof Deno.errors.NotFound) {
    return new LlmError("NOT_FOUND", `${path}: no such file`, { cause: e });
  }
  return new LlmError("MODEL_FORMAT", `${path}: could not be read (${String(e)})`, { cause: e });
}
