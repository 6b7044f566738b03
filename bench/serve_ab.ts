/**
 * A/B of the serving path: this checkout's server against a baseline commit's, in the same run, with
 * bench/serve_load.ts (one stream alone, then N concurrent streams), alternating baseline and ours
 * `--repeat` times per setup so a busy machine hurts both alike. Setups: stories260K (the shared trained
 * model) on the ref backend; the shared 1-layer dim-8 GGUF with the 32,000-token Llama-2 vocabulary
 * (little model compute, vocabulary-sized work per token) on the ref backend; and the same GGUF on null
 * steps (bench/_null_serve.ts: the same server, steps that compute nothing, so only host work is left).
 * Prints one JSON line per run and a Markdown table of the medians per side: throughput, the host/backend
 * split from /metrics, host and GC time per token from a CPU profile of the server's concurrent round,
 * and the server main thread's CPU time per token (Linux schedstat; the least noisy on a shared machine).
 *
 *   deno run -A bench/serve_ab.ts --base <git ref> [--clients 64] [--max-tokens 64] [--repeat 3]
 *
 * The baseline tree is exported with `git archive` into a temporary folder (removed afterwards). The
 * baseline must have the /metrics phase counters (the commit that added llama_step_phase_seconds_total,
 * or later) for its split to show.
 * @module
 */
import { parseArgs } from "node:util";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    base: { type: "string" },
    clients: { type: "string", default: "64" },
    "max-tokens": { type: "string", default: "64" },
    repeat: { type: "string", default: "3" },
  },
});
if (!f.base) {
  console.error(
    "--base <git ref> is required: the baseline commit (it must have the /metrics phase counters)",
  );
  Deno.exit(2);
}
const root = new URL("..", import.meta.url).pathname;
const models = new URL("../../shared/models/", import.meta.url).pathname;

async function run(cmd: string, args: string[], options: { cwd?: string } = {}): Promise<string> {
  const o = await new Deno.Command(cmd, { args, cwd: options.cwd ?? root, stderr: "piped" }).output();
  const err = new TextDecoder().decode(o.stderr);
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")} failed:\n${err.slice(-2000)}`);
  return new TextDecoder().decode(o.stdout);
}

const sha = (await run("git", ["rev-parse", "--short", f.base!])).trim();
const head = (await run("git", ["rev-parse", "--short", "HEAD"])).trim();
const dirty = (await run("git", ["status", "--porcelain", "--untracked-files=no"])).trim() !== "";
const baseDir = await Deno.makeTempDir({ prefix: "serve_ab_base_" });
const tmp = await Deno.makeTempDir({ prefix: "serve_ab_out_" });

const stories = ["--model", `${models}stories260K.bin`, "--tokenizer", `${models}tok512.bin`];
const tiny = ["--model", `${models}llama-2-tiny-random.gguf`];
/** Server setups: model flags, and whether steps run on the null backend (bench/_null_serve.ts). */
const MODELS: Record<string, { args: string[]; null: boolean }> = {
  "stories260K ref": { args: stories, null: false },
  "tiny-llama2-vocab ref": { args: tiny, null: false },
  "tiny-llama2-vocab null steps": { args: tiny, null: true },
};

interface Row {
  model: string;
  side: string;
  single: number;
  concurrent: number;
  ratio: number;
  failed: number;
  backendMsPerStep: number;
  hostMsPerStep: number;
  planMs: number;
  sampleMs: number;
  gapMs: number;
  hostUsPerToken: number;
  /** From the CPU profile of the concurrent round: host-side samples (not backend, idle or GC) per token. */
  profileHostUsPerToken: number;
  profileGcUsPerToken: number;
  /** Server main-thread CPU time per token in the concurrent round (Linux schedstat). */
  cpuUsPerToken: number;
  cpuUsPerTokenSingle: number;
  /** Profile time per token by area of the code (bench/_cpu_profile.ts AREAS), µs. */
  areas: Record<string, number>;
}

try {
  // the baseline's tracked files at that commit
  const tar = await new Deno.Command("sh", {
    args: ["-c", `git archive ${sha} | tar -x -C ${baseDir}`],
    cwd: root,
  }).output();
  if (!tar.success) throw new Error(`git archive ${sha} failed: ${new TextDecoder().decode(tar.stderr)}`);
  const rows: Row[] = [];
  // the null-backend server runs against each side's own modules
  await Deno.copyFile(`${root}bench/_null_serve.ts`, `${baseDir}/bench/_null_serve.ts`);
  for (const [model, { args, null: nul }] of Object.entries(MODELS)) {
    for (let rep = 0; rep < Number(f.repeat); rep++) {
      for (const side of ["base", "ours"]) {
        const tag = `${model.replaceAll(" ", "_")}_${side}_${rep}`, out = `${tmp}/${tag}.json`;
        const dir = side === "base" ? `${baseDir}/` : root;
        const cli = nul ? `${dir}bench/_null_serve.ts` : `${dir}cli.ts`;
        await run(Deno.execPath(), [
          "run",
          "-A",
          `${root}bench/serve_load.ts`,
          "--clients",
          f.clients!,
          "--max-tokens",
          f["max-tokens"]!,
          "--rounds",
          "2",
          "--timeout-s",
          "300",
          "--cli",
          cli,
          "--out",
          out,
          "--cpu-profile",
          `${tmp}/${tag}.cpuprofile`,
          "--",
          ...args,
          "--backend",
          "ref",
          "--max-batch",
          f.clients!,
          "--ctx",
          "512",
          "--kv-tokens",
          String(Number(f.clients) * (Number(f["max-tokens"]) + 32)), // every stream fits at once
        ]);
        const r = JSON.parse(await Deno.readTextFile(out));
        const s = r.concurrent.split;
        const m = s?.msPerStep ?? {};
        const row: Row = {
          model,
          side,
          single: r.single.tokPerS,
          concurrent: r.concurrent.tokPerS,
          ratio: r.ratio,
          failed: r.failed,
          backendMsPerStep: m.backend,
          hostMsPerStep: Number((m.plan + m.sample + m.gap).toFixed(3)),
          planMs: m.plan,
          sampleMs: m.sample,
          gapMs: m.gap,
          hostUsPerToken: s?.usPerToken.host,
          profileHostUsPerToken: Number(
            ((r.cpuProfile.sections.host / r.concurrent.tokens) * 1000).toFixed(1),
          ),
          profileGcUsPerToken: Number(((r.cpuProfile.sections.gc / r.concurrent.tokens) * 1000).toFixed(1)),
          cpuUsPerToken: r.concurrent.serverCpuUsPerToken?.mainThread,
          cpuUsPerTokenSingle: r.single.serverCpuUsPerToken?.mainThread,
          areas: Object.fromEntries(
            Object.entries(r.cpuProfile.byArea as Record<string, number>).map((
              [k, ms],
            ) => [k, Number(((ms / r.concurrent.tokens) * 1000).toFixed(2))]),
          ),
        };
        console.log(JSON.stringify(row));
        rows.push(row);
      }
    }
  }
  const med = (xs: number[]): number => {
    const v = [...xs].sort((a, b) => a - b), n = v.length;
    return Number((n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2).toFixed(3));
  };
  console.log(
    `\nbase ${sha}, ours ${head}${dirty ? " (uncommitted changes)" : ""}; ${f.clients} clients x ${
      f["max-tokens"]
    } tokens; medians of ${f.repeat} alternating runs per side\n`,
  );
  console.log(
    "| server | side | 1 stream tok/s | N streams tok/s | backend ms/step | host ms/step: plan + sample + gap | host µs/token (metrics) | host µs/token (profile) | GC µs/token | main-thread CPU µs/token: N streams / 1 stream |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const model of Object.keys(MODELS)) {
    for (const side of ["base", "ours"]) {
      const rs = rows.filter((r) => r.model === model && r.side === side);
      const m = (k: keyof Row): number => med(rs.map((r) => r[k] as number));
      console.log(
        `| ${model} | ${side} | ${m("single")} | ${m("concurrent")} | ${m("backendMsPerStep")} | ${
          m("hostMsPerStep")
        }: ${m("planMs")} + ${m("sampleMs")} + ${m("gapMs")} | ${m("hostUsPerToken")} | ${
          m("profileHostUsPerToken")
        } | ${m("profileGcUsPerToken")} | ${m("cpuUsPerToken")} / ${m("cpuUsPerTokenSingle")} |`,
      );
    }
  }
  console.log("\nServer main thread by area, µs per token in the N-stream round (CPU profile; medians):\n");
  console.log("| server | area | base | ours |");
  console.log("| --- | --- | --- | --- |");
  for (const model of Object.keys(MODELS)) {
    const rs = rows.filter((r) => r.model === model);
    const names = [...new Set(rs.flatMap((r) => Object.keys(r.areas)))];
    const of = (side: string, k: string): number =>
      med(rs.filter((r) => r.side === side).map((r) => r.areas[k] ?? 0));
    names.sort((a, b) => of("base", b) - of("base", a));
    for (const k of names) console.log(`| ${model} | ${k} | ${of("base", k)} | ${of("ours", k)} |`);
  }
  const failed = rows.reduce((a, r) => a + r.failed, 0);
  if (failed) {
    console.error(`${failed} streams failed`);
    Deno.exitCode = 1;
  }
} finally {
  await Deno.remove(baseDir, { recursive: true });
  await Deno.remove(tmp, { recursive: true });
}
