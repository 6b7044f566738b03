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
  });
  const inputs = Object.keys(result.metafile.inputs);
  const bad = inputs.filter((p) => /backends\/(cuda|webgpu)|\/io\/(deno_fs|load|hf_hub|hf_dir)\.ts/.test(p));
  if (bad.length) throw new Error(`the edge bundle must not contain ${bad.join(", ")}`);
  const size = Object.values(result.metafile.outputs)[0].bytes;
  console.error(`wrote ${f.out} (${inputs.length} modules, ${(size / 1024).toFixed(0)} KiB)`);
} finally {
  await esbuild.stop();
}
