#!/usr/bin/env bash
# The webgpu backend on the GPU machine, in one call (device tool, from the repo root, carrying .deno and
# .gl, about 50 MB):
#   source .deno/device-env.sh; bash bench/webgpu_device.sh
# Prepare here first: bash ../shared/tools/device-prep.sh; bash bench/webgpu_prep.sh
# (models into .deno/models, a Deno cache into .deno/cache).
# Steps, most important numbers first, each with its own time limit, all within BUDGET seconds (default
# 530, under the tool's 10 minutes with start-up to spare; a step that would start past the budget is
# skipped and says so):
#   1. bench/webgpu_bandwidth.ts: best WebGPU read bandwidth (the roofline), dispatch cost;
#   2. GEMV layout sweep of the quantized kernel (q8, q4) on the 7B shapes -> tuning.json;
#   3-4. LLaMA-7B shape, weight-only int8 and int4 (one process each): load time (and the host's share),
#      decode tok/s (16 + 128), prefill tok/s (512), roofline fraction, per-kernel device time;
#   5. tests on the GPU adapter: ops parity, golden greedy tokens, webgpu whole-model tests, W8A8 ops;
#   6. 7B shape fp16; 7. 1-layer 7B-shape logits against ref (f16, int8, int4, w8a8);
#   8. 7B shape W8A8 (q8_0 weights, int8 activations);
#   9. the full GEMV sweep (f16 too) and prefill GEMM tiles; 10. stories260K webgpu vs ref.
# Writes under $OUT (8 files): summary.md, tests.log, bench.log, bandwidth.json, stories260k.jsonl,
# sweep.md, tuning.json, webgpu_7b.json. WEBGPU_7B_ARGS adds arguments to every 7B step (e.g.
# "--shape stories15M --layers 1" for a quick local try), WEBGPU_SWEEP_ARGS to the sweeps ("--scale 8").
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
# _device_common.sh sets deno.lock aside (for the device's copy); put it back when run from a checkout
trap '[ -f /tmp/deno.lock.device ] && mv -f /tmp/deno.lock.device deno.lock' EXIT
W=$(mktemp -d) # what does not go back (the device tool returns at most 8 files from $OUT)
BUDGET=${BUDGET:-530}
status=0
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
# step LIMIT NAME CMD...: run CMD under min(LIMIT, what is left of the budget)
step() {
  local limit=$1 name=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - t0) ))
  if [ "$left" -lt 20 ]; then stamp "SKIPPED $name (budget spent)"; echo "SKIPPED $name" >>"$OUT/bench.log"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  stamp "$name (limit ${limit} s)"
  timeout "$limit" "$@" || { echo "step $name failed or timed out (rc $?)" | tee -a "$OUT/bench.log"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$W/gpu.txt"
B7=(deno run -A bench/webgpu_7b.ts --out "$OUT" --bandwidth "$OUT/bandwidth.json" --repeat 2 --append)
log7() { grep -E '^\[[0-9.]+s\]' "$OUT/bench.log" | tail -"${1:-5}"; }

step 45 "bandwidth" sh -c "deno run -A bench/webgpu_bandwidth.ts --json '$OUT/bandwidth.json' >>'$OUT/bench.log' 2>&1"
grep -E '"(adapter|bestReadGBps|emptyDispatchUs|mapRoundTripMs)"' "$OUT/bandwidth.json"

step 60 "GEMV sweep q8/q4 (7B shapes)" sh -c "deno run -A bench/webgpu_gemv_sweep.ts --formats q8,q4 --no-gemm \
  --out '$OUT/tuning.json' ${WEBGPU_SWEEP_ARGS:-} >'$W/sweep_q.md' 2>>'$OUT/bench.log'"
tuning=(); [ -s "$OUT/tuning.json" ] && tuning=(--tuning "$OUT/tuning.json")
tr -d ' \n' <"$OUT/tuning.json" 2>/dev/null; echo

for v in int8 int4; do
  step 80 "7B $v" sh -c '"$@" >/dev/null 2>>"'"$OUT/bench.log"'"' _ "${B7[@]}" --variants $v --skip-compare \
    ${tuning[@]+"${tuning[@]}"} ${WEBGPU_7B_ARGS:-}
  log7 4
done

step 100 "tests on the GPU adapter" sh -c "deno test -A --no-check tests/ops_test.ts tests/golden_test.ts \
  tests/webgpu_test.ts tests/quant_ops_test.ts >'$OUT/tests.log' 2>&1"
grep -E "^webgpu:|SKIP webgpu|FAILED|^ok \||passed" "$OUT/tests.log" | grep -v XDG | tail -8

step 80 "7B f16" sh -c '"$@" >/dev/null 2>>"'"$OUT/bench.log"'"' _ "${B7[@]}" --variants f16 --skip-compare \
  ${tuning[@]+"${tuning[@]}"} ${WEBGPU_7B_ARGS:-}
log7 4

step 70 "1-layer logits vs ref" sh -c '"$@" >/dev/null 2>>"'"$OUT/bench.log"'"' _ "${B7[@]}" --variants f16,int8,int4,w8a8 \
  --compare-only ${WEBGPU_7B_ARGS:-}
log7 4

step 60 "7B W8A8" sh -c '"$@" >/dev/null 2>>"'"$OUT/bench.log"'"' _ "${B7[@]}" --variants w8a8 --skip-compare \
  ${tuning[@]+"${tuning[@]}"} ${WEBGPU_7B_ARGS:-}
log7 4

step 60 "full GEMV sweep + GEMM tiles" sh -c "deno run -A bench/webgpu_gemv_sweep.ts --json '$W/sweep.json' \
  ${WEBGPU_SWEEP_ARGS:-} >'$OUT/sweep.md' 2>>'$OUT/bench.log'"
[ -s "$OUT/sweep.md" ] || cp "$W/sweep_q.md" "$OUT/sweep.md" 2>/dev/null

step 30 "stories260K" sh -c "deno run -A bench/decode_bench.ts --backend ref,webgpu --prompt-tokens 64 --gen-tokens 128 \
  --repeat 3 >'$OUT/stories260k.jsonl' 2>>'$OUT/bench.log'"

stamp "summary"
cp "$W/gpu.txt" "$OUT/" && deno run -A bench/webgpu_summary.ts "$OUT" >"$OUT/summary.md" 2>>"$OUT/bench.log" || status=1
rm -f "$OUT/gpu.txt"
cat "$OUT/summary.md"
stamp "done (status $status)"
exit $status
