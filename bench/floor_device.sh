#!/usr/bin/env bash
# The batch-1 decode floor of one launch per dependent op, and the device's idle time between decode steps, on
# the GPU machine (device tool, carrying .deno and .gl):
#   source .deno/device-env.sh; bash bench/floor_device.sh
# (PREBUILT_CHECKS="gemv_check" bash bench/cuda_prebuild.sh here first saves the build there).
# 1. build/gemv_check --floor: one 7B layer's four GEMVs beside chains of read-only kernels over the same
#    bytes (gemv_check_timing.cu floor_layer), and the step floor those set, per format.
# 2. Decode (7B shape, 16-token prompt, 128 new tokens, best of REPEAT (3)) per format with
#    LLAMA_TS_CUDA_STEP_TIMES: per step, the device time against the wall time between step entries.
# Output: $OUT/floor.txt (summary), $OUT/gemv_check.txt, $OUT/steps_*.txt.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib --checks || exit 1
check_during_ckpt gemv_check --floor || exit 1
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  grep -E "layer|floor|exit" "$OUT/gemv_check.txt"
  for q in ${QUANTS:-f16 int8 int4}; do
    echo "$q decode tok/s: $(LLAMA_TS_CUDA_STEP_TIMES=$OUT/steps_$q.txt bench_7b "$q" 16 128 "${REPEAT:-3}" 1024)"
    cat "$OUT/steps_$q.txt"
  done
} | tee "$OUT/floor.txt"
