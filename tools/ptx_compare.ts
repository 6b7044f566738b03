/**
 * Shows that a change to kernels/cuda (a refactor, a file split) left the device code as it was: compiles
 * every kernel file (kernels/cuda/*.cu and kernels/cuda/checks/*.cu) to PTX at a git revision and in the
 * working tree, and compares the multisets of top-level PTX items (each .entry / .func with its body,
 * each module-level variable) over all files. Names are demangled with c++filt and their anonymous
 * namespaces dropped (`_GLOBAL__N__<hash>_7_gemv_cu_<hash>` names the file), and the per-module function
 * index in labels ($L__BB<i>_<n>, __local_depot<i>) is dropped, so moving code between files compares
 * equal while any change of an instruction, register or constant does not.
 *   deno run -A tools/ptx_compare.ts [--ref main] [--arch sm_90] [--define NAME=VALUE]...
 *   deno run -A tools/ptx_compare.ts --before DIR --after DIR   (two folders of .ptx files)
 * Exits 1 when the sets differ, listing the items found on one side only.
 */
import { parseArgs } from "node:util";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    ref: { type: "string", default: "main" },
    arch: { type: "string", default: "sm_90" },
    nvcc: { type: "string", default: "nvcc" },
    define: { type: "string", multiple: true, default: [] },
    before: { type: "string" },
    after: { type: "string" },
  },
});
const root = new URL("..", import.meta.url).pathname;

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; stdin?: string } = {},
): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** PTX of every kernel file under `tree` (a checkout's root), keyed by file path. */
async function compileTree(tree: string): Promise<Map<string, string>> {
  const files: string[] = [];
  for (const dir of ["kernels/cuda", "kernels/cuda/checks"]) {
    for await (const e of Deno.readDir(`${tree}/${dir}`)) {
      if (e.isFile && e.name.endsWith(".cu")) files.push(`${dir}/${e.name}`);
    }
  }
  files.sort();
  const out = new Map<string, string>();
  const defines = (f.define ?? []).map((d) => `-D${d}`);
  const queue = [...files];
  const worker = async (): Promise<void> => {
    for (let file = queue.shift(); file; file = queue.shift()) {
      const ptx = `${await Deno.makeTempFile({ suffix: ".ptx" })}`;
      await run(f.nvcc!, ["-O3", "-std=c++17", `-arch=${f.arch}`, ...defines, "-ptx", "-o", ptx, file], {
        cwd: tree,
      });
      out.set(file, await Deno.readTextFile(ptx));
      await Deno.remove(ptx);
    }
  };
  await Promise.all([worker(), worker()]);
  return out;
}

async function readDir(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ptx")) out.set(e.name, await Deno.readTextFile(`${dir}/${e.name}`));
  }
  return out;
}

/** Top-level items of one PTX module (functions with their bodies, variables), comments and header dropped. */
function items(ptx: string): string[] {
  const res: string[] = [];
  let cur: string[] = [];
  let depth = 0;
  for (const raw of ptx.split("\n")) {
    const line = raw.replace(/\s+$/, "");
    if (
      depth === 0 && (line === "" || line.startsWith("//") || /^\.(version|target|address_size)\b/.test(line))
    ) {
      continue;
    }
    cur.push(line);
    for (const ch of line) depth += ch === "{" ? 1 : ch === "}" ? -1 : 0;
    if (depth === 0 && (line.endsWith("}") || line.endsWith(";"))) {
      res.push(cur.join("\n"));
      cur = [];
    }
  }
  if (cur.length) res.push(cur.join("\n"));
  return res;
}

const MANGLED = /_Z[A-Za-z0-9_$]+/g;

/** Demangled names without anonymous namespaces, for every mangled name in `texts`. */
async function demangler(texts: string[]): Promise<(s: string) => string> {
  const names = new Set<string>();
  for (const t of texts) for (const m of t.matchAll(MANGLED)) names.add(m[0].replace(/_param_\d+$/, ""));
  const list = [...names];
  const out = (await run("c++filt", [], { stdin: list.join("\n") + "\n" })).split("\n");
  const map = new Map(list.map((n, i) => [n, out[i].replaceAll("(anonymous namespace)::", "")]));
  return (s) =>
    s.replace(MANGLED, (m) => {
      const p = m.match(/^(.*?)(_param_\d+)?$/)!;
      return `<${map.get(p[1]) ?? p[1]}>${p[2] ?? ""}`;
    });
}

function normalise(item: string, demangle: (s: string) => string): string {
  return demangle(item).replace(/\$L__BB\d+_/g, "$L__BB_").replace(/__local_depot\d+/g, "__local_depot");
}

function nameOf(item: string): string {
  const head = item.split("\n").slice(0, 3).join(" ");
  return head.match(/<[^>]*(?:<[^>]*>[^>]*)*>/)?.[0] ?? head.slice(0, 120);
}

async function main(): Promise<number> {
  let before: Map<string, string>, after: Map<string, string>, what: string;
  if (f.before || f.after) {
    if (!f.before || !f.after) throw new Error("--before and --after go together");
    [before, after] = [await readDir(f.before), await readDir(f.after)];
    what = `${f.before} against ${f.after}`;
  } else {
    const tmp = await Deno.makeTempDir();
    try {
      const tar = `${tmp}/src.tar`;
      await run("git", ["-C", root, "archive", "-o", tar, f.ref!, "kernels/cuda"]);
      await run("tar", ["-xf", tar, "-C", tmp]);
      [before, after] = [await compileTree(tmp), await compileTree(root)];
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
    what = `${f.ref} (${before.size} files) against the working tree (${after.size} files), -arch=${f.arch}`;
  }
  const all = (m: Map<string, string>): string[] => [...m.values()].flatMap(items);
  const [a, b] = [all(before), all(after)];
  const demangle = await demangler([...a, ...b]);
  const count = (xs: string[]): Map<string, number> => {
    const m = new Map<string, number>();
    for (const x of xs) {
      const n = normalise(x, demangle);
      m.set(n, (m.get(n) ?? 0) + 1);
    }
    return m;
  };
  const [ca, cb] = [count(a), count(b)];
  const onlyIn = (x: Map<string, number>, y: Map<string, number>): string[] =>
    [...x].flatMap(([k, n]) => Array(Math.max(0, n - (y.get(k) ?? 0))).fill(k));
  const [lost, gained] = [onlyIn(ca, cb), onlyIn(cb, ca)];
  const lines = (xs: string[]): number => xs.reduce((s, x) => s + x.split("\n").length, 0);
  console.log(`${what}: ${a.length} items (${lines(a)} lines) before, ${b.length} (${lines(b)} lines) after`);
  if (!lost.length && !gained.length) {
    console.log("identical: every (name, body) pair matches");
    return 0;
  }
  for (const x of lost) console.log(`  only before: ${nameOf(x)}`);
  for (const x of gained) console.log(`  only after:  ${nameOf(x)}`);
  return 1;
}

Deno.exit(await main());
