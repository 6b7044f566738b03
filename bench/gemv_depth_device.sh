#!/usr/bin/env bash
# A/B of the decode GEMVs on the GPU machine, one call (device tool, carrying .deno and .gl): A = this tree's
# library (prebuilt), B = a library built before the call from other sources or with other macros, or (AB_ENV
# set) the same library run with AB_ENV's settings in its environment:
#   source .deno/device-env.sh; bash bench/gemv_depth_device.sh
#   source .deno/device-env.sh; AB_ENV="LLAMA_TS_ATTN_FUSE=0" bash bench/gemv_depth_device.sh
# Before the call, here:
#   PREBUILT_CHECKS="gemv_check" bash bench/cuda_prebuild.sh                (A)
#   B, for the one-row depth / L2 prefetch / accumulator chains / staged norm weight change (gemv.cu OneRow):
#   deno run -A tools/build_cuda.ts --arch sm_90 --out /tmp/lib_b.so --define LLAMA_TS_GEMV_D1=4 \
#     --define LLAMA_TS_GEMV_L2AHEAD=0 --define LLAMA_TS_GEMV_SPLITACC=0 --define LLAMA_TS_GEMV_NORM_SMEM=0
#   or from an earlier commit's kernels/cuda (git archive), nvcc with tools/build_cuda.ts's source list;
#   mkdir -p .deno/ab && xz -9e -c /tmp/lib_b.so >.deno/ab/lib_b.so.xz
# 1. build/gemv_check: every GEMV case against its double reference, then one 7B layer's GEMVs timed (A; with
#    AB_ENV also B's layer timing, twice each, interleaved).
# 2. Decode tok/s, 7B shape, batch 1, 16-token prompt, 128 new tokens, best of REPEAT (5), QUANTS (f16 int8 int4),
#    B and A interleaved, ROUNDS (2) times.
# 3. The GPU tests with A.
# Output: $OUT/depth.txt (summary), $OUT/gemv_check.txt, $OUT/tests.log.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib --checks || exit 1
envB=(${AB_ENV:-})
if [ ${#envB[@]} -gt 0 ]; then
  libB=build/libllama_ts_cuda.so
else
  [ -f .deno/ab/lib_b.so.xz ] || { echo "no .deno/ab/lib_b.so.xz (B); see the header"; exit 1; }
  xz -dc .deno/ab/lib_b.so.xz >build/lib_b.so
  libB=build/lib_b.so
fi
check_during_ckpt gemv_check --layer-timing || exit 1
if [ ${#envB[@]} -gt 0 ]; then
  for i in 1 2; do
    echo "B (${envB[*]}): $(env "${envB[@]}" build/gemv_check --layer-timing | grep -E "layer" | tr '\n' ' ')"
    echo "A: $(build/gemv_check --layer-timing | grep -E "layer" | tr '\n' ' ')"
  done >"$OUT/layer_ab.txt"
fi
REPEAT=${REPEAT:-5}  # bench_lib's runs per measurement
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  grep -E "layer|FAIL|failures|all ok|exit" "$OUT/gemv_check.txt" | tail -8
  [ -f "$OUT/layer_ab.txt" ] && cat "$OUT/layer_ab.txt"
  for round in $(seq "${ROUNDS:-2}"); do
    for q in ${QUANTS:-f16 int8 int4}; do
      echo "$q B (before): $(bench_lib $libB $q "${envB[@]}")"
      echo "$q A (now):    $(bench_lib build/libllama_ts_cuda.so $q)"
    done
  done
} | tee "$OUT/depth.txt"
gpu_tests "$OUT/depth.txt" "" tests/cuda_test.ts tests/cuda_attn_fuse_test.ts tests/ops_test.ts \
  tests/golden_test.ts tests/quant_test.ts tests/sample_op_test.ts tests/attention_kv_test.ts
