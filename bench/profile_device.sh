#!/usr/bin/env bash
# Where the device time of a serve step goes, on the GPU machine, in one call (device tool, carrying .deno
# and .gl; run bench/cuda_prebuild.sh here first to skip the build there):
#   source .deno/device-env.sh; bash bench/profile_device.sh
# 1. the CUDA library (prebuilt or built); 2. build/gemm_check (GEMM correctness, then timings incl. the
# decode-batch k-range table) unless CHECK=0; 3. the GPU tests (tests/cuda_test.ts, tests/scheduler_test.ts)
# unless TESTS=0; 4. the int8 7B-shape serve setup of bench/serve_device.sh with LLAMA_TS_CUDA_PROFILE set:
# every step runs uncaptured with an event after each op (kernels/cuda/profile.cu), one stream alone and
# then CLIENTS concurrent streams, so $OUT/profile.txt holds the per-op time of the 1-row decode step and
# of the CLIENTS-row step. The throughput of this run is not a measurement (the events serialize the ops).
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
CLIENTS=${CLIENTS:-64}
status=0
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
build_lib --checks || exit 1
if [ "${CHECK:-1}" = 1 ]; then
  t=$(date +%s)
  timeout 240 build/gemm_check >"$OUT/gemm_check.txt" 2>&1 || status=1
  grep -E "FAIL|k-range|^  |gemm_check" "$OUT/gemm_check.txt" | tail -16
  echo "gemm_check: $(($(date +%s) - t)) s"
fi
if [ "${TESTS:-1}" = 1 ]; then
  t=$(date +%s)
  timeout 300 deno test -A tests/cuda_test.ts tests/scheduler_test.ts >"$OUT/gpu_tests.log" 2>&1 || status=1
  grep -E "FAILED|passed|=> " "$OUT/gpu_tests.log" | grep -vE "\.\.\. ok" | tail -12
  echo "tests: $(($(date +%s) - t)) s"
fi
ckpt_7b || exit 1  # $ckpt (CKPT: an earlier command of the same call wrote one)
t=$(date +%s)
LLAMA_TS_CUDA_PROFILE=$OUT/profile.txt timeout 400 deno run -A bench/serve_load.ts --clients "$CLIENTS" \
  --max-tokens "${MAX_TOKENS:-32}" --prompt-tokens 16 --rounds 1 --timeout-s 380 --out "$OUT/profile_load.json" -- \
  --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --weight-quant int8 \
  --max-batch "$CLIENTS" --ctx 1024 --kv-tokens $((CLIENTS * 256)) >"$OUT/profile_load.log" 2>&1 || status=1
tail -3 "$OUT/profile_load.log"
echo "profile run: $(($(date +%s) - t)) s"
awk '/^rows/{n=0} {if (n++ < 14) print}' "$OUT/profile.txt"
exit $status
