#!/usr/bin/env bash
# The fused decode attention's L2 prefetch of the next GEMV's weights (attention()'s l2 range, filled by the
# runtime from the MATMUL record after ATTENTION: wo) on the GPU machine, one call (device tool, carrying
# .deno and .gl):
#   source .deno/device-env.sh; bash bench/l2pf_device.sh
# Before the call, here: PREBUILT_CHECKS=ops_check bash bench/cuda_prebuild.sh (else it builds there).
# 1. build/ops_check --no-timing (the decode attention kernel among every op's checks).
# 2. Decode tok/s, 7B shape, batch 1, 16-token prompt, 128 new tokens, best of REPEAT (5), fp16 / int8 / int4,
#    LLAMA_TS_ATTN_L2PF=0 (no prefetch, the baseline) and the default interleaved, ROUNDS (2) times; then fp16
#    after a 3,072-token prompt (ctx 4096), where the attention reads ~100x more cache.
# 3. The GPU tests: the fusion / prefetch tests, cuda_test, ops, golden.
# Output: $OUT/l2pf.txt (summary), $OUT/ops_check.txt, $OUT/tests.log.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib --checks || exit 1
[ -x build/ops_check ] || deno run -A tools/build_cuda.ts --arch sm_90 --checks >"$OUT/build.log" 2>&1
ckpt_7b >"$OUT/ckpt.log" 2>&1 &
timeout 200 build/ops_check --no-timing >"$OUT/ops_check.txt" 2>&1
echo "ops_check exit $?" >>"$OUT/ops_check.txt"
wait
ckpt_7b || exit 1
run() { LLAMA_TS_ATTN_L2PF=$1 bench_7b "$2" "$3" 128 "${REPEAT:-5}" "$4"; }  # l2pf quant prompt ctx
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  grep -E "FAIL|failures|all ok|exit" "$OUT/ops_check.txt" | tail -6
  for round in $(seq "${ROUNDS:-2}"); do
    for q in f16 int8 int4; do
      echo "$q no prefetch (LLAMA_TS_ATTN_L2PF=0): $(run 0 $q 16 1024)"
      echo "$q prefetch:                          $(run 1 $q 16 1024)"
    done
  done
  echo "f16 after 3072 tokens, no prefetch: $(run 0 f16 3072 4096)"
  echo "f16 after 3072 tokens, prefetch:    $(run 1 f16 3072 4096)"
} | tee "$OUT/l2pf.txt"
timeout 280 deno test -A tests/cuda_attn_fuse_test.ts tests/cuda_test.ts tests/ops_test.ts tests/golden_test.ts \
  >"$OUT/tests.log" 2>&1
echo "tests exit $?" >>"$OUT/tests.log"
grep -E "passed|FAILED" "$OUT/tests.log" | tail -8 | tee -a "$OUT/l2pf.txt"
