#!/usr/bin/env bash
# Queued decoding on the cuda backend (decodeGreedy over llama_ts_program_queue / take) against one synchronous
# FFI call per token, on the GPU machine (device tool, carrying .deno and .gl):
#   source .deno/device-env.sh; bash bench/queue_device.sh
# Before the call, here: PREBUILT_CHECKS="gemv_check" bash bench/cuda_prebuild.sh (A). Optionally a B library
# (and its gemv_check) built with other kernel macros, carried as .deno/ab/lib_b.so.xz (and
# .deno/ab/gemv_check_b.xz), e.g. --define LLAMA_TS_GEMV_THREADS=256 --define LLAMA_TS_GEMV_MINB=2.
# 1. gemv_check --layer-timing: A's one 7B layer's GEMVs (B's too, when carried), each twice, interleaved.
# 2. Decode tok/s, 7B shape, batch 1, 16-token prompt, 128 new tokens, best of REPEAT (3), QUANTS (f16 int8
#    int4), ROUNDS (2) rounds of: A with LLAMA_TS_CUDA_QUEUE=0 (with LLAMA_TS_CUDA_STEP_TIMES: the device's
#    idle time between steps), A queued (default depth), A at depth 3, and B queued when carried.
# 3. The GPU tests with A (tests/cuda_queue_test.ts among them).
# Output: $OUT/queue.txt (summary), $OUT/gemv_check.txt, $OUT/steps_*.txt, $OUT/tests.log.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib --checks || exit 1
libB=
if [ -f .deno/ab/lib_b.so.xz ]; then
  xz -dc .deno/ab/lib_b.so.xz >build/lib_b.so && libB=build/lib_b.so
  [ -f .deno/ab/gemv_check_b.xz ] && xz -dc .deno/ab/gemv_check_b.xz >build/gemv_check_b && chmod +x build/gemv_check_b
fi
check_during_ckpt gemv_check --layer-timing || exit 1
A=build/libllama_ts_cuda.so
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  grep -E "layer|FAIL|failures|all ok|exit" "$OUT/gemv_check.txt" | tail -6
  if [ -x build/gemv_check_b ]; then
    for i in 1 2; do
      echo "layer A: $(build/gemv_check --layer-timing | grep -E "^  layer" | tr '\n' ' ')"
      echo "layer B: $(build/gemv_check_b --layer-timing | grep -E "^  layer" | tr '\n' ' ')"
    done
  fi
  for round in $(seq "${ROUNDS:-2}"); do
    for q in ${QUANTS:-f16 int8 int4}; do
      echo "$q A, queue 0:  $(bench_lib $A $q LLAMA_TS_CUDA_QUEUE=0 LLAMA_TS_CUDA_STEP_TIMES=$OUT/steps_${q}_$round.txt)"
      sed 's/^/    /' "$OUT/steps_${q}_$round.txt"
      echo "$q A, queued:   $(bench_lib $A $q)"
      echo "$q A, queue 3:  $(bench_lib $A $q LLAMA_TS_CUDA_QUEUE=3)"
      [ -n "$libB" ] && echo "$q B, queued:   $(bench_lib $libB $q)"
    done
  done
} 2>&1 | tee "$OUT/queue.txt"
gpu_tests "$OUT/queue.txt" "queue" tests/cuda_test.ts tests/cuda_queue_test.ts tests/cuda_attn_fuse_test.ts \
  tests/ops_test.ts tests/golden_test.ts tests/sample_op_test.ts tests/attention_kv_test.ts
