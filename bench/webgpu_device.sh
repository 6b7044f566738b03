#!/usr/bin/env bash
# The webgpu backend on the GPU machine, in one call (device tool, from the repo root, carrying .deno and
# .gl, about 48 MB):
#   source .deno/device-env.sh; bash bench/webgpu_device.sh
# Prepare here first: bash ../shared/tools/device-prep.sh; bash bench/cuda_prep.sh
# (models into .deno/models, a Deno cache into .deno/cache).
# Steps (each with its own time limit; the whole run stays under 8 minutes):
#   1. adapter facts; the op-parity, golden (stories260K greedy tokens) and webgpu tests on the GPU;
#   2. bench/webgpu_bandwidth.ts: best WebGPU read bandwidth, dispatch cost, map round trip;
#   3. stories260K decode/prefill, webgpu against ref;
#   4. bench/webgpu_7b.ts: LLaMA-7B shape, fp16 / int8 / int4: decode, prefill, roofline fraction,
#      per-kernel device time, and 1-layer logits against ref.
# WEBGPU_7B_ARGS adds arguments to step 4 (e.g. "--shape stories15M --layers 1" for a quick local try).
# Writes under $OUT: summary.md, bandwidth.json, webgpu_7b.json, stories260k.jsonl, tests.log, bench.log.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export LLAMA_TS_MODELS=$PWD/.deno/models NO_COLOR=1
status=0
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"

stamp "tests on the GPU adapter"
timeout 150 deno test -A --no-check tests/ops_test.ts tests/golden_test.ts tests/webgpu_test.ts >"$OUT/tests.log" 2>&1 || status=1
grep -E "^webgpu:|SKIP webgpu|FAILED|^ok \||passed" "$OUT/tests.log" | grep -v XDG | tail -8

stamp "bandwidth"
timeout 90 deno run -A bench/webgpu_bandwidth.ts --json "$OUT/bandwidth.json" >"$OUT/bandwidth.log" 2>&1 || status=1
grep -E '"(adapter|bestReadGBps|emptyDispatchUs|mapRoundTripMs)"' "$OUT/bandwidth.json"

stamp "stories260K"
timeout 60 deno run -A bench/decode_bench.ts --backend ref,webgpu --prompt-tokens 64 --gen-tokens 128 --repeat 3 \
  >"$OUT/stories260k.jsonl" 2>>"$OUT/bench.log" || status=1
grep -o '"backend":"[a-z]*"\|"prefillTokPerS":[0-9.]*\|"decodeTokPerS":[0-9.]*' "$OUT/stories260k.jsonl" | paste -sd' '

stamp "LLaMA-7B shape"
timeout 330 deno run -A bench/webgpu_7b.ts --out "$OUT" --bandwidth "$OUT/bandwidth.json" --repeat 2 ${WEBGPU_7B_ARGS:-} \
  >"$OUT/webgpu_7b.log" 2>>"$OUT/bench.log" || status=1
tail -30 "$OUT/bench.log" | grep -v XDG

stamp "summary"
deno run -A bench/webgpu_summary.ts "$OUT" >"$OUT/summary.md" 2>>"$OUT/bench.log" || status=1
cat "$OUT/summary.md"
stamp "done (status $status)"
exit $status
