#!/usr/bin/env bash
# One call on the GPU machine (device tool), from the repo root, carrying .deno and .gl:
#   source .deno/device-env.sh; bash bench/cuda_device.sh [check|bench|all]
# check: build the library and the kernel checks, run the checks, then the op-parity, golden and cuda
#        tests on the GPU. bench: bench/hf_compare.py (HF baseline and llama.ts on the same weights).
# Logs go to $OUT. Prepare here first: bash ../shared/tools/device-prep.sh; bash bench/cuda_prep.sh
set -uo pipefail
mode=${1:-check}
source "$(dirname "$0")/_device_common.sh"
status=0
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem --format=csv,noheader
if [ "$mode" = check ] || [ "$mode" = all ]; then
  t=$(date +%s)
  deno run -A tools/build_cuda.ts --arch sm_90 ${CHECKS:+--checks} >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - t )) s"
  for c in ${CHECKS:+gemv ops gemm w8a8}; do
    timeout 300 "build/${c}_check" >"$OUT/${c}_check.log" 2>&1 || status=1
    grep -E "FAIL|failures" "$OUT/${c}_check.log" | head -20
    tail -16 "$OUT/${c}_check.log"
  done
  timeout 400 deno test -A tests/ops_test.ts tests/golden_test.ts tests/cuda_test.ts tests/quant_ops_test.ts >"$OUT/deno_test.log" 2>&1 || status=1
  grep -E "FAILED|passed|SKIP|error:" "$OUT/deno_test.log" | tail -15
fi
if [ "$mode" = bench ] || [ "$mode" = all ]; then
  [ -f build/libllama_ts_cuda.so ] || deno run -A tools/build_cuda.ts --arch sm_90 >"$OUT/build.log" 2>&1
  PYTHONUNBUFFERED=1 timeout ${HF_TIMEOUT:-560} python3 bench/hf_compare.py --out "$OUT" \
    --tokenizer .deno/models/llama-2-tiny-random.gguf ${HF_COMPARE_ARGS:-} 2>"$OUT/hf_compare.log" || status=1
  tail -5 "$OUT/hf_compare.log"
fi
exit $status
