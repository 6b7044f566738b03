/**
 * `hf:` model references: download files from the Hugging Face hub into a local cache.
 *
 * `hf:owner/repo/path/in/repo.gguf` is one file; `hf:owner/repo` is a transformers-style directory (config.json,
 * tokenizer files, safetensors weights, possibly sharded). `@revision` after the repo picks a branch, tag or
 * commit (default `main`). Files land in `<cacheDir>/<owner>--<repo>/<revision>/<path>`, so the returned path
 * can be opened like any local model.
 *
 * Cache rules: a file is only ever created by renaming a finished `<file>.partial`, so an existing file is
 * complete. For a commit revision (40 hex digits, immutable) a cached file is used with no network at all; for
 * a branch or tag a HEAD request checks size and ETag, and when the hub cannot be reached the cached copy is
 * used. Sidecars with the ETag live under `<cacheDir>/<owner>--<repo>/.meta/` so the model directory holds
 * exactly the repository's files.
 *
 * Runtime-specific (Deno file system, fetch); never reads environment variables (the CLI passes them in).
 * @module
 */
import { dirname, join } from "node:path";
import { LlmError } from "../errors.ts";
import type { ProgressCallback } from "../types.ts";
import { checkRepoPath, type HfRef, parseHfUri } from "./hf_ref.ts";

export { type HfRef, parseHfUri } from "./hf_ref.ts";

/** Options for {@link resolveHfModel}. */
export interface ResolveHfOptions {
  /** Root of the download cache (see {@link defaultCacheDir}). */
  cacheDir: string;
  /** Hub base URL; default `https://huggingface.co`. Tests point it at a loopback server. */
  endpoint?: string;
  /** Access token for gated or private repositories, sent as `Authorization: Bearer`. */
  token?: string;
  /** fetch implementation; default the global one. */
  fetch?: typeof fetch;
  /** Download progress: phase "download", bytes done/total, label = file name. At most ~10 events/s per file. */
  onProgress?: ProgressCallback;
  /** Aborting stops the download with ABORTED and keeps the `.partial` file for the next run to resume. */
  signal?: AbortSignal;
  /** How many times an interrupted download resumes by itself before giving up; default 3. */
  retries?: number;
}

const DEFAULT_ENDPOINT = "https://huggingface.co";
const HEAD_TIMEOUT_MS = 10_000;
const PROGRESS_INTERVAL_MS = 100;
const COMMIT = /^[0-9a-f]{40}$/;

/**
 * The default download cache: `$LLAMA_TS_CACHE`, else `$XDG_CACHE_HOME/llama-ts`, else `$HOME/.cache/llama-ts`
 * (`%LOCALAPPDATA%\llama-ts` on Windows). The CLI passes the environment in; this never reads it.
 *
 * @example
 * ```ts
 * defaultCacheDir({ HOME: "/home/ada" }); // "/home/ada/.cache/llama-ts"
 * ```
 */
export function defaultCacheDir(
  env: { HOME?: string; XDG_CACHE_HOME?: string; LLAMA_TS_CACHE?: string; LOCALAPPDATA?: string },
): string {
  if (env.LLAMA_TS_CACHE) return env.LLAMA_TS_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "llama-ts");
  if (env.HOME) return join(env.HOME, ".cache", "llama-ts");
  if (env.LOCALAPPDATA) return join(env.LOCALAPPDATA, "llama-ts");
  throw new LlmError(
    "BAD_REQUEST",
    "no folder for the download cache: HOME is not set; set LLAMA_TS_CACHE to a writable folder",
  );
}

/** Per-resolve state. */
interface Ctx {
  readonly ref: HfRef;
  readonly endpoint: string;
  readonly token: string | undefined;
  readonly fetch: typeof fetch;
  readonly onProgress: ProgressCallback | undefined;
  readonly signal: AbortSignal | undefined;
  readonly retries: number;
  /** `<cacheDir>/<owner>--<repo>/<revision>` */
  readonly root: string;
  /** `<cacheDir>/<owner>--<repo>/.meta/<revision>` */
  readonly metaRoot: string;
  /** A commit revision never changes, so cached files need no check. */
  readonly immutable: boolean;
  /** Set after the first failed check: later files use the cache without waiting on the network again. */
  offline: boolean;
}

/** What we remember about a repository file. */
interface Meta {
  /** ETag and size of the completed local file. */
  etag?: string;
  size?: number;
  /** ETag of the version the `.partial` holds, so a changed file restarts from 0 instead of resuming. */
  partialEtag?: string;
  /** An optional file the hub answered 404 for (so offline runs do not ask again). */
  absent?: boolean;
}

/**
 * Resolve an `hf:` reference to a local path, downloading what is missing. Returns the file for
 * `hf:owner/repo/file` and the revision folder for a directory-style `hf:owner/repo`.
 *
 * Errors: NETWORK when the hub cannot be reached (with the cause and how to work around it), BAD_REQUEST for
 * 401/403 (gated or private: pass a token), NOT_FOUND for a missing repository, revision or file, ABORTED when
 * `signal` fires (the `.partial` file is kept and the next call resumes it).
 *
 * @example
 * ```ts
 * const path = await resolveHfModel("hf:karpathy/tinyllamas/stories15M.bin", {
 *   cacheDir: defaultCacheDir({ HOME: "/home/ada" }),
 *   onProgress: (e) => console.error(progressBar(e)),
 * });
 * ```
 */
export async function resolveHfModel(uri: string, options: ResolveHfOptions): Promise<string> {
  const ref = parseHfUri(uri);
  if (!options || typeof options.cacheDir !== "string" || options.cacheDir === "") {
    throw new LlmError("BAD_REQUEST", `resolveHfModel(${uri}): options.cacheDir must name a writable folder`);
  }
  const retries = options.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new LlmError("BAD_REQUEST", `resolveHfModel: retries must be an integer >= 0, got ${retries}`);
  }
  const repoDir = join(options.cacheDir, ref.repo.replace("/", "--"));
  const ctx: Ctx = {
    ref,
    endpoint: (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: options.token || undefined,
    fetch: options.fetch ?? globalThis.fetch,
    onProgress: options.onProgress,
    signal: options.signal,
    retries,
    root: join(repoDir, ref.revision),
    metaRoot: join(repoDir, ".meta", ref.revision),
    immutable: COMMIT.test(ref.revision),
    offline: false,
  };
  checkAborted(ctx, ref.path ?? "");
  if (ref.path !== undefined) return (await ensureFile(ctx, ref.path, false))!;

  await ensureFile(ctx, "config.json", false);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) {
    await ensureFile(ctx, f, true);
  }
  const index = await ensureFile(ctx, "model.safetensors.index.json", true);
  if (index !== undefined) {
    for (const shard of await shardsOf(index)) await ensureFile(ctx, shard, false);
  } else if (await ensureFile(ctx, "model.safetensors", true) === undefined) {
    throw new LlmError(
      "NOT_FOUND",
      `${ref.repo}@${ref.revision} has neither model.safetensors nor model.safetensors.index.json; ` +
        `if it ships GGUF files, name one: hf:${ref.repo}/<file>.gguf`,
    );
  }
  return ctx.root;
}

/** The distinct shard files an index's weight_map names, validated so none can escape the cache folder. */
async function shardsOf(indexPath: string): Promise<string[]> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (e) {
    const msg = `${indexPath}: not valid JSON (${errText(e)}); delete it to download again`;
    throw new LlmError("MODEL_FORMAT", msg, { cause: e });
  }
  const map = (json as { weight_map?: unknown })?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new LlmError("MODEL_FORMAT", `${indexPath}: no weight_map object; it is not a safetensors index`);
  }
  const shards = new Set<string>();
  for (const v of Object.values(map)) {
    if (typeof v !== "string") {
      throw new LlmError("MODEL_FORMAT", `${indexPath}: weight_map value ${v} is not a file`);
    }
    checkRepoPath(v, (why) => {
      throw new LlmError("MODEL_FORMAT", `${indexPath}: weight_map names an unsafe shard: ${why}`);
    });
    shards.add(v);
  }
  return [...shards].sort();
}

/**
 * Make one repository file present and current in the cache. Returns its local path, or undefined for an
 * optional file the hub does not have.
 */
async function ensureFile(ctx: Ctx, path: string, optional: boolean): Promise<string | undefined> {
  const dest = join(ctx.root, ...path.split("/"));
  const metaPath = join(ctx.metaRoot, ...path.split("/")) + ".json";
  const meta = await readMeta(metaPath);
  const have = await sizeOf(dest);
  if (ctx.immutable || ctx.offline) {
    if (have !== undefined) return dest;
    if (meta.absent && optional) return undefined;
  }
  // What the file is now (size, ETag); a commit cannot change, so it needs no asking.
  const remote = ctx.immutable ? "offline" : await head(ctx, path);
  if (remote === "offline" && have !== undefined) return dest;
  const absent = async (): Promise<undefined> => {
    // Removed upstream: drop our copy too, so a directory never mixes versions.
    if (have !== undefined) await Deno.remove(dest).catch(() => {});
    if (!optional) throw notFound(ctx, path, 404);
    await writeMeta(metaPath, { absent: true });
    return undefined;
  };
  if (remote === "absent") return await absent();
  const etag = remote === "offline" ? undefined : remote.etag;
  if (have !== undefined && remote !== "offline") {
    const changed = (remote.size !== undefined && remote.size !== have) ||
      (etag !== undefined && meta.etag !== undefined && etag !== meta.etag);
    if (!changed) return dest;
  }
  for (let attempt = 0;; attempt++) {
    try {
      return (await download(ctx, path, dest, metaPath, etag)) ? dest : await absent();
    } catch (e) {
      if (!(e instanceof Retryable) || attempt >= ctx.retries) throw e instanceof Retryable ? e.error : e;
      // Back off a little: a dropped connection is often a server restart or a brief network blip.
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt));
      checkAborted(ctx, path);
    }
  }
}

/** A transient failure (interrupted body, 5xx): the caller may resume. */
class Retryable {
  constructor(readonly error: LlmError) {}
}

/**
 * HEAD a file: its size and ETag, "absent" for 404, "offline" when the hub cannot answer (then use the cache).
 * Redirects are not followed: for large (LFS) files the hub answers 302 to a CDN, and the hub's own
 * X-Linked-Size / X-Linked-Etag on that 302 are stable, while the CDN's headers need not be.
 */
async function head(
  ctx: Ctx,
  path: string,
): Promise<{ size?: number; etag?: string } | "absent" | "offline"> {
  // A short timeout of our own: an offline laptop must not hang on a check whose answer it can do without.
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), HEAD_TIMEOUT_MS);
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, timeout.signal]) : timeout.signal;
  let res: Response;
  try {
    res = await request(ctx, path, { method: "HEAD", headers: headers(ctx), signal, redirect: "manual" });
    // A redirect without the hub's headers (a renamed repository): follow it to the real answer.
    if (res.status >= 300 && res.status < 400 && !res.headers.has("x-linked-etag")) {
      await res.body?.cancel();
      res = await request(ctx, path, { method: "HEAD", headers: headers(ctx), signal });
    }
  } catch (e) {
    if (!(e instanceof LlmError) || e.code !== "NETWORK") throw e;
    res = new Response(null, { status: 599 });
  } finally {
    clearTimeout(timer);
  }
  await res.body?.cancel();
  if (res.status === 404) return "absent";
  if (res.status === 401 || res.status === 403) throw httpError(ctx, path, res);
  if (res.status >= 400) {
    // Unreachable, or a 5xx: no reason to refuse a complete cached file, nor to ask again for the next one.
    ctx.offline = true;
    return "offline";
  }
  const h = res.headers;
  const size = Number(h.get("x-linked-size") ?? h.get("content-length") ?? NaN);
  const etag = h.get("x-linked-etag") ?? h.get("etag") ?? undefined;
  return { size: Number.isSafeInteger(size) ? size : undefined, etag };
}

/**
 * Download one file into `<dest>.partial`, resuming what is there, then rename it to `dest`.
 * Returns false on 404. Throws Retryable for interruptions.
 */
async function download(
  ctx: Ctx,
  path: string,
  dest: string,
  metaPath: string,
  etag: string | undefined,
): Promise<boolean> {
  for (;;) {
    const r = await downloadLocked(ctx, path, dest, metaPath, etag);
    if (r !== "again") return r;
  }
}

async function downloadLocked(
  ctx: Ctx,
  path: string,
  dest: string,
  metaPath: string,
  etag: string | undefined,
): Promise<boolean | "again"> {
  const partial = `${dest}.partial`;
  await fsDo(() => Deno.mkdir(dirname(dest), { recursive: true }), dest);
  const file = await fsDo(() => Deno.open(partial, { read: true, write: true, create: true }), partial);
  let owned = false;
  try {
    // Another process (or call) downloading the same file holds this lock; wait for it rather than interleave.
    await file.lock(true);
    const mine = await file.stat();
    const now = await Deno.stat(partial).catch(() => undefined);
    if (now === undefined || (mine.ino !== null && now.ino !== null && mine.ino !== now.ino)) {
      // Whoever held the lock renamed (finished) or removed (failed) the file we opened: look again.
      return (await sizeOf(dest)) !== undefined ? true : "again";
    }
    owned = true;
    const meta = await readMeta(metaPath);
    if (mine.size === 0 && (etag === undefined || meta.etag === etag) && (await sizeOf(dest)) !== undefined) {
      // A concurrent call finished the file and renamed its .partial before we opened ours (so we created a
      // new, empty one and got its lock at once): the file is there, don't fetch it again.
      return true;
    }
    let start = mine.size;
    // A .partial of another version of the file is useless. (No If-Range for this: the hub redirects large
    // files to a CDN whose ETags differ from the hub's.)
    if (start > 0 && etag !== undefined && meta.partialEtag !== etag) start = await truncate(file);
    for (let tries = 0;; tries++) {
      if (tries > 1) throw new Retryable(netError(ctx, path, "the server would not resume the download"));
      const h = headers(ctx);
      if (start > 0) h.set("range", `bytes=${start}-`);
      const res = await request(ctx, path, { headers: h });
      // "bytes a-b/total" on 206, "bytes */total" on 416.
      const cr = /^bytes (?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
      if (res.status !== 200 && res.status !== 206) {
        await res.body?.cancel();
        // 416 for exactly our size: already whole, an earlier run died between the last byte and the rename.
        if (res.status === 416 && start > 0 && Number(cr?.[2]) === start) break;
        if (res.status === 416 && start > 0) {
          start = await truncate(file);
          continue;
        }
        if (res.status !== 404) throw httpError(ctx, path, res);
        await file.truncate(0); // a piece of a file the hub no longer has is worth nothing; finally removes it
        return false;
      }
      if (res.status === 206 && Number(cr?.[1]) !== start) {
        await res.body?.cancel();
        start = await truncate(file);
        continue;
      }
      // 200 to a range request: the server ignored Range, or If-Range saw a changed file. Restart from 0.
      if (res.status === 200 && start > 0) start = await truncate(file);
      const total = res.status === 206 ? Number(cr![2]) || 0 : Number(res.headers.get("content-length") ?? 0);
      const id = etag ?? res.headers.get("x-linked-etag") ?? res.headers.get("etag") ?? undefined;
      if (id !== meta.partialEtag) await writeMeta(metaPath, Object.assign(meta, { partialEtag: id }));
      await writeBody(ctx, path, res, file, start, total);
      break;
    }
    const size = (await file.stat()).size;
    // Rename first, sidecar second: a crash in between leaves a new file with an old ETag, which only costs a
    // re-download, never a stale file passed off as current.
    await fsDo(() => Deno.rename(partial, dest), dest);
    await writeMeta(metaPath, { etag: meta.partialEtag, size });
    return true;
  } finally {
    // Removing our empty .partial while still holding the lock cannot race with another downloader.
    if (owned && (await file.stat().catch(() => undefined))?.size === 0) {
      await Deno.remove(partial).catch(() => {});
    }
    file.close(); // also releases the lock
  }
}

/** Empty the .partial to start over; returns the new start offset. */
async function truncate(file: Deno.FsFile): Promise<number> {
  await file.truncate(0);
  return 0;
}

/** Stream a response body to the file from `start`, reporting progress. */
async function writeBody(
  ctx: Ctx,
  path: string,
  res: Response,
  file: Deno.FsFile,
  start: number,
  total: number,
): Promise<void> {
  const label = path.slice(path.lastIndexOf("/") + 1);
  await file.seek(start, Deno.SeekMode.Start);
  let done = start;
  let last = 0;
  const report = (force: boolean): void => {
    const now = Date.now();
    if (!ctx.onProgress || (!force && now - last < PROGRESS_INTERVAL_MS)) return;
    last = now;
    ctx.onProgress({ phase: "download", done, total, label });
  };
  report(true);
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      for (let off = 0; off < value.byteLength;) off += await file.write(value.subarray(off));
      done += value.byteLength;
      report(false);
    }
  } catch (e) {
    checkAborted(ctx, path, done, total);
    if (e instanceof LlmError) throw e;
    checkPermission(e);
    throw new Retryable(
      netError(ctx, path, `connection lost after ${done} of ${total || "?"} bytes: ${errText(e)}`, e),
    );
  } finally {
    reader.releaseLock();
  }
  if (total > 0 && done !== total) {
    throw new Retryable(netError(ctx, path, `the body ended after ${done} of ${total} bytes`));
  }
  report(true);
}

/** fetch a repository file, with network, permission and abort errors mapped to LlmError. */
async function request(ctx: Ctx, path: string, init: RequestInit): Promise<Response> {
  try {
    return await ctx.fetch(fileUrl(ctx, path), { signal: ctx.signal, ...init });
  } catch (e) {
    checkAborted(ctx, path);
    checkPermission(e);
    throw netError(ctx, path, errText(e), e);
  }
}

function fileUrl(ctx: Ctx, path: string): string {
  const p = path.split("/").map(encodeURIComponent).join("/");
  return `${ctx.endpoint}/${ctx.ref.repo}/resolve/${encodeURIComponent(ctx.ref.revision)}/${p}`;
}

function headers(ctx: Ctx): Headers {
  // identity: with gzip, Content-Length and byte ranges would count compressed bytes, not the file's.
  const h = new Headers({ "accept-encoding": "identity", "user-agent": "llama-ts" });
  if (ctx.token) h.set("authorization", `Bearer ${ctx.token}`);
  return h;
}

function netError(ctx: Ctx, path: string, cause: string, e?: unknown): LlmError {
  return new LlmError(
    "NETWORK",
    `could not reach ${ctx.endpoint} to download ${ctx.ref.repo}/${path} (${cause}); check your connection, ` +
      `or download it yourself and pass the local path with --model`,
    { cause: e },
  );
}

function notFound(ctx: Ctx, path: string, status: number, what = "file"): LlmError {
  const { repo, revision } = ctx.ref;
  return new LlmError(
    "NOT_FOUND",
    `${what} ${path} not found in ${repo} at revision ${revision} (HTTP ${status}); check the repository, ` +
      `revision and file name at ${ctx.endpoint}/${repo}/tree/${encodeURIComponent(revision)}`,
  );
}

function httpError(ctx: Ctx, path: string, res: Response): LlmError | Retryable {
  const { repo } = ctx.ref;
  // The hub answers 401 both for gated repos and, to hide private ones, for repos that do not exist.
  const code = res.headers.get("x-error-code");
  if (code === "RepoNotFound" || code === "RevisionNotFound" || code === "EntryNotFound") {
    const e = notFound(ctx, path, res.status, code === "RepoNotFound" ? "repository for" : "file");
    if (code !== "RepoNotFound" || ctx.token) return e;
    return new LlmError("NOT_FOUND", `${e.message}; if the repository is private, set HF_TOKEN`);
  }
  if (res.status === 401 || res.status === 403) {
    const fix = ctx.token
      ? `the token given was not accepted: check it has read access and that you accepted the license at ` +
        `${ctx.endpoint}/${repo}`
      : `accept its license at ${ctx.endpoint}/${repo}, then set HF_TOKEN to a token from ` +
        `${ctx.endpoint}/settings/tokens`;
    const msg =
      `${ctx.endpoint} refused ${repo}/${path} (HTTP ${res.status}): the model is gated or private; ${fix}`;
    return new LlmError("BAD_REQUEST", msg);
  }
  if (res.status === 404) return notFound(ctx, path, 404);
  if (res.status === 429 || res.status >= 500) {
    return new Retryable(netError(ctx, path, `HTTP ${res.status} ${res.statusText}`.trim()));
  }
  return new LlmError(
    "BAD_REQUEST",
    `${ctx.endpoint} answered HTTP ${res.status} ${res.statusText} for ${repo}/${path}; check the reference`,
  );
}

function checkAborted(ctx: Ctx, path: string, done?: number, total?: number): void {
  if (!ctx.signal?.aborted) return;
  const at = done === undefined ? "" : ` after ${done} of ${total || "?"} bytes`;
  throw new LlmError(
    "ABORTED",
    `download of ${ctx.ref.repo}/${path} aborted${at}; the partial file is kept and the next run resumes it`,
    { cause: ctx.signal.reason },
  );
}

/** Permission errors become BAD_REQUEST naming the missing flag (`what` says which access failed). */
function checkPermission(e: unknown, what = "network access was denied", fix = "--allow-net"): void {
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    const msg = `${what} (${errText(e)}); run deno with ${fix}, or download the model yourself and pass ` +
      `the local path with --model`;
    throw new LlmError("BAD_REQUEST", msg, { cause: e });
  }
}

/** Run a file-system call with permission errors explained. */
async function fsDo<T>(fn: () => Promise<T>, path: string): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    checkPermission(e, `cannot write the download cache at ${path}`, "--allow-read and --allow-write for it");
    throw e;
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const s = await Deno.stat(path);
    return s.isFile ? s.size : undefined;
  } catch {
    return undefined;
  }
}

async function readMeta(path: string): Promise<Meta> {
  try {
    const m = JSON.parse(await Deno.readTextFile(path));
    return m !== null && typeof m === "object" ? m as Meta : {};
  } catch {
    return {}; // missing or damaged sidecar: behave as if we knew nothing, which is always safe
  }
}

async function writeMeta(path: string, meta: Meta): Promise<void> {
  await fsDo(() => Deno.mkdir(dirname(path), { recursive: true }), path);
  // Write then rename so a reader never sees half a sidecar.
  const tmp = `${path}.tmp`;
  await fsDo(() => Deno.writeTextFile(tmp, JSON.stringify(meta)), tmp);
  await fsDo(() => Deno.rename(tmp, path), path);
}

/** An error's message, preferring the cause's: fetch says "fetch failed" and keeps the reason in `cause`. */
function errText(e: unknown): string {
  const c = e instanceof Error && e.cause instanceof Error ? e.cause : e;
  const m = c instanceof Error ? c.message : String(c);
  return m.replace(/^error sending request for url \([^)]*\): /, "");
}
