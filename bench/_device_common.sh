# Sourced by the bench/*_device.sh scripts on the GPU machine (a copy of the tree; nothing here is kept).
# The lockfile lists every npm package of deno.json, the openai client included, which bench/cuda_prep.sh
# leaves out of the carried cache (size); without the lockfile Deno resolves only what a run imports, from
# the carried cache.
[ -f deno.lock ] && mv deno.lock /tmp/deno.lock.device
export LLAMA_TS_MODELS=$PWD/.deno/models NO_COLOR=1 DENO_DIR=${DENO_DIR:-$PWD/.deno/cache}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# use_prebuilt: unpack .deno/prebuilt.tar.xz (bench/cuda_prebuild.sh) when it was built from these very
# sources; returns 1 (build here instead) otherwise.
source "$(dirname "${BASH_SOURCE[0]}")/_cuda_stamp.sh"
use_prebuilt() {
  [ -f .deno/prebuilt.tar.xz ] || return 1
  mkdir -p /tmp/prebuilt && tar xJf .deno/prebuilt.tar.xz -C /tmp/prebuilt || return 1
  [ "$(cat /tmp/prebuilt/build/PREBUILT_STAMP)" = "$(cuda_stamp)" ] || { echo "prebuilt: stale, building here"; return 1; }
  mkdir -p build && cp /tmp/prebuilt/build/* build/ && echo "prebuilt: using build/ from .deno/prebuilt.tar.xz"
}
# build_lib [tools/build_cuda.ts flags, e.g. --checks]: build/ for sm_90, unpacked from the prebuilt copy when
# it matches the sources, else built here; prints the time; on failure the build log's tail, and returns 1.
build_lib() {
  local t=$(date +%s)
  use_prebuilt || deno run -A tools/build_cuda.ts --arch sm_90 "$@" >"$OUT/build.log" 2>&1 ||
    { tail -40 "$OUT/build.log"; return 1; }
  echo "build: $(($(date +%s) - t)) s"
}
# ckpt_7b: sets $ckpt to the random-weight LLaMA-7B-shape HF checkpoint (fp16), writing it with
# bench/hf_compare.py first unless $CKPT (or /tmp/llama7b-hf) already holds one; returns 1 if that fails.
ckpt_7b() {
  ckpt=${CKPT:-/tmp/llama7b-hf}
  [ -f "$ckpt/config.json" ] && return 0
  local t=$(date +%s)
  python3 bench/hf_compare.py --checkpoint-only --ckpt "$ckpt" 2>&1 | tail -1 || return 1
  echo "checkpoint: $(($(date +%s) - t)) s"
}
# bench_7b QUANT PROMPT GEN REPEAT CTX: `cli.ts bench` on the cuda backend with $ckpt (ckpt_7b first), fp16
# weights or --weight-quant QUANT; prints the best decode tok/s and every run's, "best [run, ...]". Settings
# for the library go in the caller's environment (e.g. LLAMA_TS_ATTN_FUSE=0 bench_7b f16 16 128 3 1024).
bench_7b() {
  local extra=()
  [ "$1" != f16 ] && extra=(--weight-quant "$1")
  deno run -A cli.ts bench --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda \
    --prompt-tokens "$2" --gen-tokens "$3" --repeat "$4" --ctx "$5" "${extra[@]}" 2>>"$OUT/bench.log" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(f\"{d['decodeTokPerS']:.1f}\", [round(r['decodeTokPerS'],1) for r in d['runs']])"
}
# bench_lib LIB QUANT [NAME=VALUE ...]: bench_7b QUANT 16 128 $REPEAT 1024 (REPEAT default 3) with the CUDA
# library LIB and the given settings in its environment (A/B scripts: the same call, two libraries or settings).
bench_lib() {
  local lib=$1 q=$2
  shift 2
  (
    for kv in "$@"; do export "$kv"; done
    LLAMA_TS_CUDA_LIB=$lib bench_7b "$q" 16 128 "${REPEAT:-3}" 1024
  )
}
# check_during_ckpt NAME ARGS...: runs build/NAME ARGS (at most 200 s) into $OUT/NAME.txt, its exit status
# appended, while ckpt_7b writes the checkpoint in the background; then sets $ckpt (ckpt_7b; returns 1 if the
# checkpoint is not there).
check_during_ckpt() {
  local name=$1
  shift
  ckpt_7b >"$OUT/ckpt.log" 2>&1 &
  timeout 200 "build/$name" "$@" >"$OUT/$name.txt" 2>&1
  echo "$name exit $?" >>"$OUT/$name.txt"
  wait
  ckpt_7b
}
# gpu_tests SUMMARY PATTERN FILES...: `deno test` of FILES (at most 280 s) into $OUT/tests.log with its exit
# status; the last 12 lines matching PATTERN, "passed" or "FAILED" go to stdout and are appended to SUMMARY.
gpu_tests() {
  local summary=$1 pattern=$2
  shift 2
  timeout 280 deno test -A "$@" >"$OUT/tests.log" 2>&1
  echo "tests exit $?" >>"$OUT/tests.log"
  grep -E "${pattern:+$pattern|}passed|FAILED" "$OUT/tests.log" | tail -12 | tee -a "$summary"
}
