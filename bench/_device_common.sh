# Sourced by the bench/*_device.sh scripts on the GPU machine (a copy of the tree; nothing here is kept).
# The lockfile lists every npm package of deno.json, the openai client included, which bench/cuda_prep.sh
# leaves out of the carried cache (size); without the lockfile Deno resolves only what a run imports, from
# the carried cache.
[ -f deno.lock ] && mv deno.lock /tmp/deno.lock.device
export LLAMA_TS_MODELS=$PWD/.deno/models NO_COLOR=1 DENO_DIR=${DENO_DIR:-$PWD/.deno/cache}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
