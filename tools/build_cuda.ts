/**
 * Builds the CUDA library: build/libllama_ts_cuda.so from kernels/cuda/*.cu with nvcc, with sm_80 and
 * sm_90 machine code plus compute_90 PTX (so newer GPUs JIT it).
 *   deno task build:cuda [--arch sm_90] [--out build/libllama_ts_cuda.so] [--checks] [--define NAME=VALUE]...
 * --arch builds one target (faster, for the GPU machine); --checks also builds the standalone kernel
 * checks (kernels/cuda/checks/*_check*.cu, see CHECKS) into build/. --define sets a kernel tuning macro (e.g.
 * LLAMA_TS_GEMV_THREADS=256) for A/B builds.
 */
import { parseArgs } from "node:util";

const { values: f } = parseArgs({
  args: Deno.args,
  options: {
    arch: { type: "string" },
    out: { type: "string", default: "build/libllama_ts_cuda.so" },
    checks: { type: "boolean", default: false },
    nvcc: { type: "string", default: "nvcc" },
    define: { type: "string", multiple: true, default: [] },
  },
});
const root = new URL("..", import.meta.url).pathname;
Deno.chdir(root);
// Sources by family; a check program links the families it tests.
const RUNTIME = ["runtime.cu", "runtime_program.cu", "runtime_launch.cu"];
const GEMV = ["gemv.cu", "gemv_launch.cu", "weight_prepare.cu"];
const GEMM = ["gemm.cu", "gemm_tc.cu", "gemm_rows.cu"];
const OPS = ["ops.cu", "attention.cu", "attention_launch.cu", "attention_decode.cu", "kv_int8.cu"];
const src = [...RUNTIME, ...GEMV, ...GEMM, ...OPS, "w8a8.cu", "profile.cu", "sample.cu"].map((f) =>
  `kernels/cuda/${f}`
);
// Check programs (build/<name>_check): their own files under kernels/cuda/checks and the families they link.
const CHECKS: readonly (readonly [string, readonly string[], readonly string[]])[] = [
  ["gemv", ["gemv_check.cu", "gemv_check_prepare.cu", "gemv_check_timing.cu"], GEMV],
  ["ops", ["ops_check.cu", "ops_check_cache.cu", "ops_check_timing.cu"], OPS],
  ["gemm", ["gemm_check.cu", "gemm_check_timing.cu"], GEMM],
  ["w8a8", ["w8a8_check.cu"], ["w8a8.cu", ...GEMV, ...GEMM, ...OPS]],
];
const gencode = f.arch ? [`-arch=${f.arch}`] : [
  "-gencode=arch=compute_80,code=sm_80",
  "-gencode=arch=compute_90,code=sm_90",
  "-gencode=arch=compute_90,code=compute_90",
];
const defines = (f.define ?? []).map((d) => `-D${d}`);
const common = ["-O3", "-std=c++17", "-lineinfo", "-Xcompiler", "-fPIC,-Wall", ...gencode, ...defines];

async function nvcc(args: string[]): Promise<void> {
  console.error(`${f.nvcc} ${args.join(" ")}`);
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(f.nvcc!, { args, stdout: "inherit", stderr: "inherit" }).output();
  } catch (e) {
    console.error(
      `cannot run ${f.nvcc} (${(e as Error).message}); install the CUDA toolkit or pass --nvcc PATH`,
    );
    Deno.exit(1);
  }
  if (!out.success) Deno.exit(out.code || 1);
}

await Deno.mkdir("build", { recursive: true });
const t0 = performance.now();
await nvcc([...common, "-shared", "-o", f.out!, ...src]);
console.error(`built ${f.out} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
if (f.checks) {
  for (const [name, files, deps] of CHECKS) {
    await nvcc([
      ...common,
      "-o",
      `build/${name}_check`,
      ...files.map((c) => `kernels/cuda/checks/${c}`),
      ...deps.map((d) => `kernels/cuda/${d}`),
    ]);
  }
}
