#!/usr/bin/env bash
# The decode attention's fusions (RoPE + KV write in the decode kernel, splits merged in-kernel; see
# kernels/cuda/attention_decode.cu) on the GPU machine, one call (device tool, carrying .deno and .gl):
#   source .deno/device-env.sh; bash bench/fuse_device.sh
# Before the call, here: PREBUILT_CHECKS=ops_check bash bench/cuda_prebuild.sh (else it builds there).
# 1. build/ops_check --no-timing: every op against its reference, now with the fused decode kernel (bit
#    equality with rope_kv_write + attention, refused cases) and the in-kernel merge in every decode case.
# 2. Decode tok/s, 7B shape, batch 1, 16-token prompt, 128 new tokens, best of 3, fp16 / int8 / int4, and
#    fp16 after a 3,072-token prompt (ctx 4096, where the merge has ~100 splits): LLAMA_TS_ATTN_FUSE=0 (the
#    separate rope_kv / combine kernels, the baseline) and fused (the default), interleaved.
# 3. The GPU tests: the fusion test, cuda_test, ops / golden / attention-KV / sample-op tests.
# ROUNDS=2 REPEAT=5: each A/B pair that many times (interleaved), best of REPEAT runs each (defaults 1, 3).
# Output: $OUT/fuse.txt (summary), $OUT/ops_check.txt, $OUT/tests.log.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib --checks || exit 1
[ -x build/ops_check ] || deno run -A tools/build_cuda.ts --arch sm_90 --checks >"$OUT/build.log" 2>&1
check_during_ckpt ops_check --no-timing || exit 1
run() { LLAMA_TS_ATTN_FUSE=$1 bench_7b "$2" "$3" 128 "${REPEAT:-3}" "$4"; }  # fuse quant prompt ctx
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  grep -E "attn\+rope|FAIL|failures|passed|all ok|exit" "$OUT/ops_check.txt" | tail -20
  for round in $(seq "${ROUNDS:-1}"); do
    for q in f16 int8 int4; do
      echo "$q separate kernels (LLAMA_TS_ATTN_FUSE=0): $(run 0 $q 16 1024)"
      echo "$q fused:                                  $(run 1 $q 16 1024)"
    done
  done
  echo "f16 after 3072 tokens, separate: $(run 0 f16 3072 4096)"
  echo "f16 after 3072 tokens, fused:    $(run 1 f16 3072 4096)"
} | tee "$OUT/fuse.txt"
gpu_tests "$OUT/fuse.txt" "fused vs separate" tests/cuda_attn_fuse_test.ts tests/cuda_test.ts tests/ops_test.ts \
  tests/golden_test.ts tests/attention_kv_test.ts tests/sample_op_test.ts
