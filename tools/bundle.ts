/**
 * Bundles the edge entry (src/edge.ts: core + wasm and ref backends, kernels embedded) into one ES
 * module with esbuild (pinned at 0.28.2 in deno.json): dist/llama_edge.js. It needs no FFI, no WebGPU and no file system.
 *   deno task bundle [--out dist/llama_edge.js] [--minify]
 */
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "dist/llama_edge.js" },
    minify: { type: "boolean", default: false },
  },
});
const root = new URL("..", import.meta.url).pathname;

/**
 * esbuild cannot see Deno's npm cache: resolve the bare specifiers deno.json maps to `npm:name@version`
 * (e.g. @huggingface/jinja, which the serve handler imports) to the package's ESM entry in that cache,
 * after `deno cache` has put it there.
 */
async function denoNpmPlugin(): Promise<esbuild.Plugin> {
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`)) as {
    imports?: Record<string, string>;
  };
  const npm = new Map<string, { name: string; version: string }>();
  for (const [spec, target] of Object.entries(config.imports ?? {})) {
    const m = target.match(/^npm:(@?[^@]+)@([^/]+)$/);
    if (m) npm.set(spec, { name: m[1], version: m[2] });
  }
  const cached = await new Deno.Command(Deno.execPath(), { args: ["cache", `${root}src/edge.ts`] }).output();
  if (!cached.success) {
    throw new Error(`deno cache src/edge.ts failed: ${new TextDecoder().decode(cached.stderr)}`);
  }
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
  const npmCache = (JSON.parse(new TextDecoder().decode(info.stdout)) as { npmCache: string }).npmCache;
  return {
    name: "deno-npm-cache",
    setup(build) {
      build.onResolve({ filter: /^[@a-z]/ }, async (args) => {
        const pkg = npm.get(args.path);
        if (!pkg) return undefined;
        const dir = `${npmCache}/registry.npmjs.org/${pkg.name}/${pkg.version}`;
        const meta = JSON.parse(await Deno.readTextFile(`${dir}/package.json`)) as {
          module?: string;
          main?: string;
          exports?: { ".": { import?: string } };
        };
        const entry = meta.exports?.["."]?.import ?? meta.module ?? meta.main ?? "index.js";
        return { path: `${dir}/${entry.replace(/^\.\//, "")}` };
      });
    },
  };
}

try {
  const result = await esbuild.build({
    entryPoints: [`${root}src/edge.ts`],
    outfile: f.out!.startsWith("/") ? f.out : `${Deno.cwd()}/${f.out}`,
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    minify: f.minify,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
    plugins: [await denoNpmPlugin()],
  });
  const inputs = Object.keys(result.metafile.inputs);
  const bad = inputs.filter((p) => /backends\/(cuda|webgpu)|\/io\/(deno_fs|load|hf_hub|hf_dir)\.ts/.test(p));
  if (bad.length) throw new Error(`the edge bundle must not contain ${bad.join(", ")}`);
  const size = Object.values(result.metafile.outputs)[0].bytes;
  console.error(`wrote ${f.out} (${inputs.length} modules, ${(size / 1024).toFixed(0)} KiB)`);
} finally {
  await esbuild.stop();
}
