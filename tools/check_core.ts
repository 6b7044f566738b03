/**
 * Keeps the core runtime-agnostic: type-checks every core file with only the web/ES libraries (no
 * Deno namespace), and fails when a core file imports a backend or Deno-specific I/O.
 * Core = src/** except src/backends/** and the Deno I/O files listed below; src/edge.ts (the edge bundle's
 * entry) may import backends, and is type-checked with them, so the bundle needs no Deno types either.
 */
/** Entry points that assemble the core with backends; still type-checked without Deno types. */
const ENTRIES = new Set(["src/edge.ts"]);
const DENO_IO = new Set([
  "src/io/deno_fs.ts",
  "src/io/load.ts",
  "src/io/hf_dir.ts",
  "src/io/hf_hub.ts",
  "src/io/create_engine.ts",
  "src/io/quantize_file.ts",
  "src/io/eval_files.ts",
]);

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

const root = new URL("..", import.meta.url).pathname;
Deno.chdir(root);
const core: string[] = [];
for await (const f of walk("src")) {
  if (f.startsWith("src/backends/") || DENO_IO.has(f)) continue;
  core.push(f);
}
core.sort();

const problems: string[] = [];
for (const f of core) {
  const text = await Deno.readTextFile(f);
  for (const m of text.matchAll(/from\s+"([^"]+)"/g)) {
    const spec = m[1];
    if (spec.includes("/backends/") && !ENTRIES.has(f)) {
      problems.push(`${f} imports a backend (${spec}); backends are leaves`);
    }
    const target = new URL(spec, `file://${root}${f}`).pathname.slice(root.length);
    if (DENO_IO.has(target)) problems.push(`${f} imports Deno-specific I/O (${spec})`);
  }
  if (/\bDeno\./.test(text.replace(/\/\/.*$/gm, "").replace(/\/\*[\s\S]*?\*\//g, ""))) {
    problems.push(`${f} uses the Deno namespace`);
  }
}
if (problems.length) {
  console.error(problems.join("\n"));
  Deno.exit(1);
}

const config = await Deno.makeTempFile({ suffix: ".json" });
await Deno.writeTextFile(
  config,
  JSON.stringify({
    compilerOptions: { strict: true, lib: ["esnext", "dom", "dom.iterable"] },
    // the package's npm dependencies, so core files can import them by bare name
    imports: JSON.parse(await Deno.readTextFile("deno.json")).imports ?? {},
  }),
);
const out = await new Deno.Command(Deno.execPath(), {
  args: ["check", "--quiet", "--config", config, ...core],
  stdout: "inherit",
  stderr: "inherit",
}).output();
await Deno.remove(config);
if (!out.success) {
  console.error("core type-check without Deno types failed (see above)");
  Deno.exit(1);
}
console.log(`core: ${core.length} files type-check without Deno types`);
