/**
 * hf: downloads against a fake hub on 127.0.0.1 (never any other address): Range support, dropped
 * connections, stalls, 404/401, and a closed port for "offline".
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { defaultCacheDir, parseHfUri, resolveHfModel, type ResolveHfOptions } from "../src/io/hf_hub.ts";
import { createRateMeter, progressBar } from "../src/cli/progress.ts";
import { LlmError } from "../src/errors.ts";
import type { ProgressEvent } from "../src/types.ts";
import { rng } from "./_util.ts";

interface Req {
  method: string;
  path: string;
  range: string | null;
  auth: string | null;
}

/** A fake hub serving `files` (keyed "owner/repo/revision/path") with Range support and fault injection. */
interface Hub extends AsyncDisposable {
  endpoint: string;
  files: Map<string, Uint8Array>;
  requests: Req[];
  /** Paths whose next GET sends part of the body and then drops the connection. */
  dropOnce: Set<string>;
  /** Paths whose GET sends one chunk and then stalls until the client goes away. */
  stall: Set<string>;
  /** Resolves once a stalled GET has handed over its first chunk. */
  stalled: Promise<void>;
  /** Forced answers, by path. */
  status: Map<string, { status: number; headers?: Record<string, string> }>;
  /** Answer 200 with the whole file to range requests, like a server without Range support. */
  ignoreRange: boolean;
  /**
   * Like the real hub for LFS files: /resolve/ answers 302 with X-Linked-Etag/X-Linked-Size, and the body comes
   * from /cdn/<key> (logged as "cdn:<key>"), whose ETag changes on every request.
   */
  lfs: boolean;
  gets(path?: string): Req[];
}

function etagOf(b: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return `"${(h >>> 0).toString(16)}-${b.length}"`;
}

function startHub(): Hub {
  const hub = {
    files: new Map<string, Uint8Array>(),
    requests: [] as Req[],
    dropOnce: new Set<string>(),
    stall: new Set<string>(),
    status: new Map<string, { status: number; headers?: Record<string, string> }>(),
    ignoreRange: false,
    lfs: false,
    stalled: undefined as unknown as Promise<void>,
  };
  let onStalled: () => void = () => {};
  hub.stalled = new Promise<void>((r) => (onStalled = r));
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const cdn = url.pathname.startsWith("/cdn/");
    const key = cdn
      ? decodeURIComponent(url.pathname.slice(5))
      : m
      ? decodeURIComponent(`${m[1]}/${m[2]}/${m[3]}/${m[4]}`)
      : url.pathname;
    const path = cdn ? `cdn:${key}` : key;
    const range = req.headers.get("range");
    hub.requests.push({ method: req.method, path, range, auth: req.headers.get("authorization") });
    const forced = hub.status.get(path);
    if (forced) return new Response("nope", { status: forced.status, headers: forced.headers });
    const body = hub.files.get(key);
    if (!body) {
      return new Response("Entry not found", { status: 404, headers: { "x-error-code": "EntryNotFound" } });
    }
    if (hub.lfs && !cdn) {
      const headers = {
        location: `/cdn/${encodeURIComponent(key)}`,
        "x-linked-etag": etagOf(body),
        "x-linked-size": String(body.length),
      };
      return new Response(null, { status: 302, headers });
    }
    const etag = cdn ? `"cdn-${crypto.randomUUID()}"` : etagOf(body);
    let start = 0;
    let status = 200;
    const rm = range ? /^bytes=(\d+)-$/.exec(range) : null;
    const ifRange = req.headers.get("if-range");
    if (rm && !hub.ignoreRange && (!ifRange || ifRange === etag)) {
      start = Number(rm[1]);
      if (start >= body.length) {
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${body.length}` } });
      }
      status = 206;
    }
    const headers: Record<string, string> = {
      etag,
      "content-length": String(body.length - start),
      "accept-ranges": "bytes",
    };
    if (status === 206) headers["content-range"] = `bytes ${start}-${body.length - 1}/${body.length}`;
    if (req.method === "HEAD") return new Response(null, { status, headers: { ...headers } });
    const slice = body.subarray(start);
    if (hub.dropOnce.delete(key)) {
      const half = slice.subarray(0, slice.length >> 1);
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(half);
        },
        async pull(c) {
          // Ending the body short of its Content-Length makes the server cut the connection.
          await new Promise((r) => setTimeout(r, 20));
          c.close();
        },
      });
      return new Response(stream, { status, headers });
    }
    if (hub.stall.has(key)) {
      let release: () => void = () => {};
      const gone = new Promise<void>((r) => (release = r));
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(slice.subarray(0, 4096));
        },
        async pull(c) {
          onStalled();
          await gone;
          c.close();
        },
        cancel() {
          release();
        },
      });
      return new Response(stream, { status, headers });
    }
    return new Response(slice.slice(), { status, headers });
  });
  // The same object the handler reads, so tests can flip its switches.
  return Object.assign(hub, {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    gets(p?: string): Req[] {
      return hub.requests.filter((r) => r.method === "GET" && (p === undefined || r.path === p));
    },
    async [Symbol.asyncDispose](): Promise<void> {
      await server.shutdown();
    },
  });
}

async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "llama_ts_hf_" });
  return {
    path,
    async [Symbol.asyncDispose](): Promise<void> {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** An endpoint nothing listens on: bind a loopback port, then free it. */
function closedEndpoint(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `http://127.0.0.1:${port}`;
}

function bytes(n: number, seed: number): Uint8Array {
  const r = rng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

async function rejectsWith(p: Promise<unknown>, code: string, re?: RegExp): Promise<LlmError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof LlmError, `expected LlmError ${code}, got ${err}`);
  assert.equal(err.code, code, err.message);
  if (re) assert.match(err.message, re);
  return err;
}

const COMMIT = "0123456789abcdef0123456789abcdef01234567";

Deno.test("parseHfUri", () => {
  assert.deepEqual(parseHfUri("hf:owner/repo"), { repo: "owner/repo", revision: "main" });
  assert.deepEqual(parseHfUri("hf:TheBloke/TinyLlama-1.1B-GGUF/tinyllama.Q4_0.gguf"), {
    repo: "TheBloke/TinyLlama-1.1B-GGUF",
    revision: "main",
    path: "tinyllama.Q4_0.gguf",
  });
  assert.deepEqual(parseHfUri(`hf:o/r@${COMMIT}/sub/dir/m.gguf`), {
    repo: "o/r",
    revision: COMMIT,
    path: "sub/dir/m.gguf",
  });
  assert.deepEqual(parseHfUri("hf:o/r@v1.0"), { repo: "o/r", revision: "v1.0" });
  assert.deepEqual(parseHfUri("hf://o/r/x.bin"), { repo: "o/r", revision: "main", path: "x.bin" });
  assert.deepEqual(parseHfUri("hf:o/r/"), { repo: "o/r", revision: "main" });
  const bad = [
    "owner/repo",
    "hf:",
    "hf:owner",
    "hf:owner/",
    "hf:/repo",
    "hf:ow ner/repo",
    "hf:owner/re--po",
    "hf:-owner/repo",
    "hf:owner/repo@",
    "hf:owner/repo@a..b",
    "hf:owner/repo/../x",
    "hf:owner/repo/a//b",
    "hf:owner/repo/./x",
    "hf:owner/repo/a\\b",
  ];
  for (const u of bad) {
    assert.throws(() => parseHfUri(u), (e: unknown) => {
      assert.ok(e instanceof LlmError && e.code === "BAD_REQUEST", `${u}: ${e}`);
      assert.match(e.message, /expected hf:owner\/repo/);
      return true;
    });
  }
});

Deno.test("defaultCacheDir", () => {
  assert.equal(defaultCacheDir({ LLAMA_TS_CACHE: "/c", HOME: "/h" }), "/c");
  assert.equal(defaultCacheDir({ XDG_CACHE_HOME: "/x", HOME: "/h" }), join("/x", "llama-ts"));
  assert.equal(defaultCacheDir({ HOME: "/h" }), join("/h", ".cache", "llama-ts"));
  assert.throws(
    () => defaultCacheDir({}),
    (e: unknown) => e instanceof LlmError && /LLAMA_TS_CACHE/.test(e.message),
  );
});

Deno.test("progressBar and createRateMeter", () => {
  const e: ProgressEvent = { phase: "download", done: 1.2e9, total: 2.7e9, label: "model.gguf" };
  assert.equal(
    progressBar(e, 20, { bytesPerSecond: 35.1e6 }),
    "model.gguf  44% [#########           ] 1.2/2.7 GB 35.1 MB/s",
  );
  assert.equal(progressBar({ ...e, done: 0 }, 4), "model.gguf   0% [    ] 0.0/2.7 GB");
  assert.equal(progressBar({ ...e, done: e.total }, 4), "model.gguf 100% [####] 2.7/2.7 GB");
  assert.equal(progressBar({ phase: "download", done: 512, total: 0 }), "download  512 B");
  assert.equal(
    progressBar({ phase: "load", done: 5e5, total: 1e6, label: "x" }, 2),
    "x  50% [# ] 0.5/1.0 MB",
  );
  let t = 0;
  const rate = createRateMeter({ now: () => t });
  assert.equal(rate({ ...e, done: 1e6 }), undefined);
  t = 2000;
  assert.equal(rate({ ...e, done: 5e6 }), 2e6);
});

Deno.test("single file: download, progress, auth header, then the cache", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const data = bytes(300_000, 1);
  hub.files.set("o/r/main/models/m.gguf", data);
  const events: ProgressEvent[] = [];
  const opts: ResolveHfOptions = {
    cacheDir: dir.path,
    endpoint: hub.endpoint,
    token: "hf_secret",
    onProgress: (e) => events.push(e),
  };
  const p = await resolveHfModel("hf:o/r/models/m.gguf", opts);
  assert.equal(p, join(dir.path, "o--r", "main", "models", "m.gguf"));
  assert.deepEqual(await Deno.readFile(p), data);
  assert.ok(events.length >= 2);
  for (let i = 1; i < events.length; i++) assert.ok(events[i].done >= events[i - 1].done);
  for (const e of events) assert.deepEqual([e.phase, e.total, e.label], ["download", data.length, "m.gguf"]);
  assert.equal(events.at(-1)!.done, data.length);
  assert.equal(hub.gets()[0].auth, "Bearer hf_secret");
  // No leftovers next to the model: sidecars live under .meta.
  assert.deepEqual([...Deno.readDirSync(join(dir.path, "o--r", "main", "models"))].map((e) => e.name), [
    "m.gguf",
  ]);

  // Second resolve on a branch: one HEAD, no GET.
  hub.requests.length = 0;
  assert.equal(await resolveHfModel("hf:o/r/models/m.gguf", opts), p);
  assert.deepEqual(hub.requests.map((r) => r.method), ["HEAD"]);

  // Offline (nothing listens): the complete cached file is used.
  assert.equal(await resolveHfModel("hf:o/r/models/m.gguf", { ...opts, endpoint: closedEndpoint() }), p);

  // Upstream changed: the HEAD sees a new ETag and the file is fetched again.
  const v2 = bytes(300_000, 2);
  hub.files.set("o/r/main/models/m.gguf", v2);
  hub.requests.length = 0;
  await resolveHfModel("hf:o/r/models/m.gguf", opts);
  assert.deepEqual(await Deno.readFile(p), v2);
  assert.equal(hub.gets().length, 1);
});

Deno.test("commit revisions use the cache with no network at all", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  hub.files.set(`o/r/${COMMIT}/m.bin`, bytes(1000, 3));
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint };
  const p = await resolveHfModel(`hf:o/r@${COMMIT}/m.bin`, opts);
  assert.equal(p, join(dir.path, "o--r", COMMIT, "m.bin"));
  hub.requests.length = 0;
  assert.equal(await resolveHfModel(`hf:o/r@${COMMIT}/m.bin`, opts), p);
  assert.equal(hub.requests.length, 0);
});

Deno.test("an interrupted download resumes with Range and yields identical bytes", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const data = bytes(200_000, 4);
  const key = "o/r/main/big.safetensors";
  hub.files.set(key, data);
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint };
  const dest = join(dir.path, "o--r", "main", "big.safetensors");

  // Without retries the first call fails, keeping the partial file.
  hub.dropOnce.add(key);
  await rejectsWith(resolveHfModel("hf:o/r/big.safetensors", { ...opts, retries: 0 }), "NETWORK", /--model/);
  const partial = (await Deno.stat(`${dest}.partial`)).size;
  assert.ok(partial > 0 && partial < data.length, `partial size ${partial}`);
  // The next call resumes from there.
  assert.equal(await resolveHfModel("hf:o/r/big.safetensors", opts), dest);
  assert.equal(hub.gets().at(-1)!.range, `bytes=${partial}-`);
  assert.deepEqual(await Deno.readFile(dest), data);
  await assert.rejects(Deno.stat(`${dest}.partial`), Deno.errors.NotFound);

  // With retries (the default) one call recovers by itself.
  const key2 = "o/r/main/big2.safetensors";
  hub.files.set(key2, data);
  hub.dropOnce.add(key2);
  const p2 = await resolveHfModel("hf:o/r/big2.safetensors", opts);
  const gets = hub.gets(key2);
  assert.equal(gets.length, 2);
  assert.equal(gets[0].range, null);
  assert.match(gets[1].range ?? "", /^bytes=\d+-$/);
  assert.deepEqual(await Deno.readFile(p2), data);
});

Deno.test("LFS files behind a redirect: cache check on the hub's ETag, resume through the CDN", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  hub.lfs = true;
  const key = "o/r/main/w.safetensors";
  const data = bytes(150_000, 10);
  hub.files.set(key, data);
  hub.dropOnce.add(key);
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint, token: "t" };
  const p = await resolveHfModel("hf:o/r/w.safetensors", opts);
  assert.deepEqual(await Deno.readFile(p), data);
  const cdnGets = hub.gets(`cdn:${key}`);
  assert.equal(cdnGets.length, 2);
  assert.match(cdnGets[1].range ?? "", /^bytes=\d+-$/);
  // The CDN's ETag differs on every request; the check uses the hub's, so nothing is fetched again.
  hub.requests.length = 0;
  assert.equal(await resolveHfModel("hf:o/r/w.safetensors", opts), p);
  assert.deepEqual(hub.requests.map((r) => `${r.method} ${r.path}`), [`HEAD ${key}`]);
});

Deno.test("a partial file of an older version is not resumed", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const key = "o/r/main/m.gguf";
  hub.files.set(key, bytes(100_000, 11));
  hub.dropOnce.add(key);
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint };
  await rejectsWith(resolveHfModel("hf:o/r/m.gguf", { ...opts, retries: 0 }), "NETWORK");
  const v2 = bytes(120_000, 12);
  hub.files.set(key, v2);
  const p = await resolveHfModel("hf:o/r/m.gguf", opts);
  assert.equal(hub.gets(key).at(-1)!.range, null);
  assert.deepEqual(await Deno.readFile(p), v2);
});

Deno.test("a server that ignores Range restarts the download from 0", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const data = bytes(100_000, 5);
  hub.files.set("o/r/main/f.bin", data);
  hub.dropOnce.add("o/r/main/f.bin");
  hub.ignoreRange = true;
  const p = await resolveHfModel("hf:o/r/f.bin", { cacheDir: dir.path, endpoint: hub.endpoint });
  assert.deepEqual(await Deno.readFile(p), data);
  assert.deepEqual(hub.gets().map((r) => r.range !== null), [false, true]); // asked to resume, got 200
});

Deno.test("directory model with a sharded index; optional files may 404; offline reuse", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const rev = `o/llama@${COMMIT}`;
  const base = `o/llama/${COMMIT}`;
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const shard1 = bytes(50_000, 6), shard2 = bytes(30_000, 7);
  hub.files.set(`${base}/config.json`, enc(`{"model_type":"llama"}`));
  hub.files.set(`${base}/tokenizer.json`, enc(`{"model":{}}`));
  hub.files.set(
    `${base}/model.safetensors.index.json`,
    enc(JSON.stringify({
      weight_map: {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors",
        "c.weight": "model-00001-of-00002.safetensors",
      },
    })),
  );
  hub.files.set(`${base}/model-00001-of-00002.safetensors`, shard1);
  hub.files.set(`${base}/model-00002-of-00002.safetensors`, shard2);
  const labels = new Set<string>();
  const opts = {
    cacheDir: dir.path,
    endpoint: hub.endpoint,
    onProgress: (e: ProgressEvent) => labels.add(e.label!),
  };
  const root = await resolveHfModel(`hf:${rev}`, opts);
  assert.equal(root, join(dir.path, "o--llama", COMMIT));
  const names = [...Deno.readDirSync(root)].map((e) => e.name).sort();
  assert.deepEqual(names, [
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
  ]);
  assert.deepEqual(await Deno.readFile(join(root, "model-00002-of-00002.safetensors")), shard2);
  assert.equal(hub.gets(`${base}/model-00001-of-00002.safetensors`).length, 1); // listed twice, fetched once
  assert.ok(labels.has("model-00001-of-00002.safetensors"));
  // Offline, with a commit revision: everything, including the known-absent optional files, comes from the cache.
  assert.equal(await resolveHfModel(`hf:${rev}`, { ...opts, endpoint: closedEndpoint() }), root);

  // A single-file directory model.
  hub.files.set("o/small/main/config.json", enc("{}"));
  hub.files.set("o/small/main/model.safetensors", shard2);
  const small = await resolveHfModel("hf:o/small", opts);
  assert.deepEqual(await Deno.readFile(join(small, "model.safetensors")), shard2);
  // Neither weights file.
  hub.files.set("o/none/main/config.json", enc("{}"));
  await rejectsWith(resolveHfModel("hf:o/none", opts), "NOT_FOUND", /neither model\.safetensors.*\.gguf/);
  // A hostile index cannot write outside the cache.
  hub.files.set("o/evil/main/config.json", enc("{}"));
  hub.files.set("o/evil/main/model.safetensors.index.json", enc(`{"weight_map":{"x":"../../escape"}}`));
  await rejectsWith(resolveHfModel("hf:o/evil", opts), "MODEL_FORMAT", /unsafe shard/);
});

Deno.test("404 is NOT_FOUND, 401 is BAD_REQUEST about gated models and HF_TOKEN", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint };
  await rejectsWith(resolveHfModel("hf:o/r/missing.gguf", opts), "NOT_FOUND", /missing\.gguf.*o\/r/);
  hub.status.set("o/gated/main/m.gguf", { status: 401 });
  await rejectsWith(resolveHfModel("hf:o/gated/m.gguf", opts), "BAD_REQUEST", /gated.*HF_TOKEN/s);
  hub.status.set("o/gated/main/m.gguf", { status: 403 });
  await rejectsWith(resolveHfModel("hf:o/gated/m.gguf", { ...opts, token: "bad" }), "BAD_REQUEST", /token/);
  // The hub answers 401 for repositories that do not exist (to hide private ones); its error code says which.
  hub.status.set("o/nope/main/m.gguf", { status: 401, headers: { "x-error-code": "RepoNotFound" } });
  await rejectsWith(resolveHfModel("hf:o/nope/m.gguf", opts), "NOT_FOUND", /o\/nope.*HF_TOKEN/);
  hub.status.set("o/r/main/err.gguf", { status: 503 });
  await rejectsWith(resolveHfModel("hf:o/r/err.gguf", { ...opts, retries: 1 }), "NETWORK", /503/);
});

Deno.test("connection refused is NETWORK with the helpful message", async () => {
  await using dir = await tempDir();
  const endpoint = closedEndpoint();
  const e = await rejectsWith(resolveHfModel("hf:o/r/m.gguf", { cacheDir: dir.path, endpoint }), "NETWORK");
  assert.ok(
    e.message.startsWith(`could not reach ${endpoint} to download o/r/m.gguf (`),
    e.message,
  );
  assert.match(
    e.message,
    /check your connection, or download it yourself and pass the local path with --model$/,
  );
});

Deno.test("abort gives ABORTED and keeps the partial file for the next run", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const data = bytes(100_000, 8);
  hub.files.set("o/r/main/m.gguf", data);
  hub.stall.add("o/r/main/m.gguf");
  const ac = new AbortController();
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint, signal: ac.signal };
  const pending = resolveHfModel("hf:o/r/m.gguf", opts);
  await hub.stalled;
  await new Promise((r) => setTimeout(r, 100)); // let the first chunk reach the file
  ac.abort();
  await rejectsWith(pending, "ABORTED", /partial file is kept/);
  const dest = join(dir.path, "o--r", "main", "m.gguf");
  assert.equal((await Deno.stat(`${dest}.partial`)).size, 4096);
  await rejectsWith(resolveHfModel("hf:o/r/m.gguf", opts), "ABORTED"); // already aborted: no work
  hub.stall.clear();
  const p = await resolveHfModel("hf:o/r/m.gguf", { cacheDir: dir.path, endpoint: hub.endpoint });
  assert.equal(hub.gets().at(-1)!.range, "bytes=4096-");
  assert.deepEqual(await Deno.readFile(p), data);
});

Deno.test("two concurrent resolves of one file download it once", async () => {
  await using hub = startHub();
  await using dir = await tempDir();
  const data = bytes(500_000, 9);
  hub.files.set(`o/r/${COMMIT}/m.gguf`, data);
  const opts = { cacheDir: dir.path, endpoint: hub.endpoint };
  const [a, b] = await Promise.all([
    resolveHfModel(`hf:o/r@${COMMIT}/m.gguf`, opts),
    resolveHfModel(`hf:o/r@${COMMIT}/m.gguf`, opts),
  ]);
  assert.equal(a, b);
  assert.deepEqual(await Deno.readFile(a), data);
  assert.equal(hub.gets().length, 1);
});

Deno.test("bad options are BAD_REQUEST", async () => {
  await rejectsWith(resolveHfModel("hf:o/r/m.gguf", { cacheDir: "" }), "BAD_REQUEST", /cacheDir/);
  await rejectsWith(
    resolveHfModel("hf:o/r/m.gguf", { cacheDir: "/tmp", retries: -1 }),
    "BAD_REQUEST",
    /retries/,
  );
  await rejectsWith(resolveHfModel("o/r/m.gguf", { cacheDir: "/tmp" }), "BAD_REQUEST", /hf:/);
});
