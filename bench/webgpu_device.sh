#!/usr/bin/env bash
# The webgpu backend on the GPU machine, in one call (device tool, from the repo root, carrying .deno and
# .gl, about 48 MB):
#   source .deno/device-env.sh; bash bench/webgpu_device.sh
# Prepare here first: bash ../shared/tools/device-prep.sh; bash bench/webgpu_prep.sh
# (models into .deno/models, a Deno cache into .deno/cache).
# Steps (each with its own time limit; the whole run stays under 8 minutes):
#   1. adapter facts; the op-parity, golden (stories260K greedy tokens) and webgpu tests on the GPU;
#   2. bench/webgpu_bandwidth.ts: best WebGPU read bandwidth, dispatch cost, map round trip;
#   3. stories260K decode/prefill, webgpu against ref;
#   4. bench/webgpu_gemv_sweep.ts: decode GEMV thread layouts on the 7B matrix shapes, best per format;
#   5. bench/webgpu_7b.ts with that tuning: LLaMA-7B shape, fp16 / int8 / int4: decode, prefill, roofline
#      fraction, per-kernel device time, and 1-layer logits against ref.
# WEBGPU_SWEEP_ARGS / WEBGPU_7B_ARGS add arguments to steps 4 / 5 (e.g. "--scale 8 --quick" and
# "--shape stories15M --layers 1" for a quick local try).
# Writes under $OUT (8 files): summary.md, tests.log, bench.log, bandwidth.json, stories260k.jsonl,
# sweep.md, tuning.json, webgpu_7b.json.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
# _device_common.sh sets deno.lock aside (for the device's copy); put it back when run from a checkout
trap '[ -f /tmp/deno.lock.device ] && mv -f /tmp/deno.lock.device deno.lock' EXIT
W=$(mktemp -d) # what does not go back (the device tool returns at most 8 files from $OUT)
status=0
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$W/gpu.txt"

stamp "tests on the GPU adapter"
timeout 150 deno test -A --no-check tests/ops_test.ts tests/golden_test.ts tests/webgpu_test.ts >"$OUT/tests.log" 2>&1 || status=1
grep -E "^webgpu:|SKIP webgpu|FAILED|^ok \||passed" "$OUT/tests.log" | grep -v XDG | tail -8

stamp "bandwidth"
timeout 90 deno run -A bench/webgpu_bandwidth.ts --json "$OUT/bandwidth.json" >>"$OUT/bench.log" 2>&1 || status=1
grep -E '"(adapter|bestReadGBps|emptyDispatchUs|mapRoundTripMs)"' "$OUT/bandwidth.json"

stamp "stories260K"
timeout 60 deno run -A bench/decode_bench.ts --backend ref,webgpu --prompt-tokens 64 --gen-tokens 128 --repeat 3 \
  >"$OUT/stories260k.jsonl" 2>>"$OUT/bench.log" || status=1
python3 -c 'import json,sys
for l in open(sys.argv[1]):
  if l.startswith("{"): r=json.loads(l); print(r["backend"], "prefill", round(r["prefillTokPerS"]), "decode", round(r["decodeTokPerS"]), "tok/s")' \
  "$OUT/stories260k.jsonl" 2>/dev/null

stamp "GEMV layout sweep (7B shapes)"
timeout 90 deno run -A bench/webgpu_gemv_sweep.ts --out "$OUT/tuning.json" --json "$W/sweep.json" ${WEBGPU_SWEEP_ARGS:-} \
  >"$OUT/sweep.md" 2>>"$OUT/bench.log" || status=1
tuning=(); [ -s "$OUT/tuning.json" ] && tuning=(--tuning "$OUT/tuning.json")
cat "$OUT/tuning.json" 2>/dev/null | tr -d ' \n'; echo

stamp "LLaMA-7B shape"
timeout 300 deno run -A bench/webgpu_7b.ts --out "$OUT" --bandwidth "$OUT/bandwidth.json" --repeat 2 ${tuning[@]+"${tuning[@]}"} ${WEBGPU_7B_ARGS:-} \
  >/dev/null 2>>"$OUT/bench.log" || status=1
grep -E '^\[[0-9.]+s\]' "$OUT/bench.log" | tail -20

stamp "summary"
cp "$W/gpu.txt" "$OUT/" && deno run -A bench/webgpu_summary.ts "$OUT" >"$OUT/summary.md" 2>>"$OUT/bench.log" || status=1
rm -f "$OUT/gpu.txt"
cat "$OUT/summary.md"
stamp "done (status $status)"
exit $status
