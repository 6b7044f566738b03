#!/usr/bin/env bash
# Here, before a device call: put the shared test models and a Deno cache of every module the device
# runs into .deno/ (ignored by git, carried by the device tool). Run after ../shared/tools/device-prep.sh.
set -eu
cd "$(git rev-parse --show-toplevel)"
mkdir -p .deno/models
cp ../shared/models/stories260K.bin ../shared/models/tok512.bin ../shared/models/stories260K.golden.json \
  ../shared/models/llama-2-tiny-random.gguf .deno/models/
DENO_DIR=.deno/cache deno cache mod.ts cli.ts tests/*.ts bench/*.ts tools/*.ts >/dev/null
# the openai client (35 MB, only tests/serve_openai_test.ts uses it) would push the carried tree over the
# device tool's 64 MiB; device scripts source bench/_device_common.sh, which sets the lockfile aside so
# Deno does not try to fetch it there
rm -rf .deno/cache/npm/registry.npmjs.org/openai .deno/cache/npm/registry.npmjs.org/esbuild \
  .deno/cache/npm/registry.npmjs.org/@esbuild  # esbuild (the bundle tool) is not run there either
du -sh .deno .gl
