#!/usr/bin/env bash
# Here, before the webgpu device call: the shared test models and a Deno cache of exactly the modules
# bench/webgpu_device.sh runs, into .deno/ (ignored by git, carried by the device tool: with .gl about
# 50 MB, under the tool's 64 MiB). Run after ../shared/tools/device-prep.sh.
set -eu
cd "$(git rev-parse --show-toplevel)"
mkdir -p .deno/models
cp ../shared/models/stories260K.bin ../shared/models/tok512.bin ../shared/models/stories260K.golden.json \
  ../shared/models/llama-2-tiny-random.gguf .deno/models/
DENO_DIR=.deno/cache deno cache mod.ts cli.ts tests/ops_test.ts tests/golden_test.ts tests/webgpu_test.ts tests/quant_ops_test.ts \
  tests/sample_op_test.ts tests/webgpu_sample_test.ts \
  bench/decode_bench.ts bench/webgpu_*.ts >/dev/null
# npm packages the webgpu run never imports (a cache made by cuda_prep.sh may hold them): size
rm -rf .deno/cache/npm/registry.npmjs.org/openai .deno/cache/npm/registry.npmjs.org/esbuild \
  .deno/cache/npm/registry.npmjs.org/@esbuild
du -sh .deno .gl
