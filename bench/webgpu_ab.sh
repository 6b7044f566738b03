#!/usr/bin/env bash
# A/B of a WebGPU tuning override on the GPU machine, in one call (device tool, carrying .deno and .gl;
# prepare here with bash ../shared/tools/device-prep.sh; bash bench/webgpu_prep.sh):
#   source .deno/device-env.sh; AB_TUNING='{"gemv": {...}}' bash bench/webgpu_ab.sh
# A = the compiled-in defaults, B = the defaults with AB_TUNING (a Partial<Tuning> JSON, shallow-merged as
# createWebGpuBackend does: give a whole `gemv` map). First the webgpu op and model tests on the GPU adapter,
# then the LLaMA-7B-shape step as webgpu_device.sh runs it (bench/webgpu_7b.ts: decode 16 + 128 best of 2,
# prefill, per-kernel device time) for each of VARIANTS (default int4) in the order A, B, A, B, one process
# each. Output: $OUT/ab.txt and each run's webgpu_7b.json under $OUT/<variant>_<A|B><n>/.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
trap '[ -f /tmp/deno.lock.device ] && mv -f /tmp/deno.lock.device deno.lock' EXIT
status=0
echo "${AB_TUNING:?set AB_TUNING to a tuning JSON}" >/tmp/ab_tuning.json
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 120 deno test -A --no-check tests/ops_test.ts tests/webgpu_test.ts >"$OUT/tests.log" 2>&1 || status=1
grep -E "FAILED|^ok \||passed" "$OUT/tests.log" | tail -3
{
  echo "B = defaults + $(tr -d ' \n' </tmp/ab_tuning.json)"
  for v in ${VARIANTS:-int4}; do
    for run in A1 B1 A2 B2; do
      extra=()
      [ "${run:0:1}" = B ] && extra=(--tuning /tmp/ab_tuning.json)
      mkdir -p "$OUT/${v}_$run"
      timeout 90 deno run -A bench/webgpu_7b.ts --out "$OUT/${v}_$run" --variants "$v" --skip-compare --repeat 2 \
        "${extra[@]}" >/dev/null 2>"$OUT/${v}_$run.log" || status=1
      echo "$v $run: $(grep -E "decode [0-9.]+ tok/s|one decode step" "$OUT/${v}_$run.log" | sed 's/^\[[0-9.]*s\] //' |
        tr '\n' ' ')"
    done
  done
} | tee "$OUT/ab.txt"
exit $status
