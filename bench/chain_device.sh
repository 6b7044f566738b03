#!/usr/bin/env bash
# Chained decode GEMVs (kernels/cuda/gemv_chain.cu) on the GPU machine, one call (device tool, carrying .deno
# and .gl):
#   source .deno/device-env.sh; bash bench/chain_device.sh
# Before the call, here: PREBUILT_CHECKS=gemv_check bash bench/cuda_prebuild.sh (else it builds there).
# 1. build/gemv_check --layer-timing: gemv_chain against one launch per GEMV (same bits, 7 formats, chains
#    back to back and in a replayed graph, declined cases), then one 7B layer's decode GEMVs (wo, gate/up,
#    w2, QKV) timed as 4 launches and as one chain, per format (CUDA-graph replay, weights rotated).
# 2. Decode tok/s, 7B shape, batch 1, 16-token prompt, 128 new tokens, best of 3, fp16 / int8 / int4:
#    LLAMA_TS_GEMV_CHAIN=0 (one launch per GEMV, the baseline) and the default (chained), interleaved.
# 3. The GPU tests: the chain test, cuda_test, ops / golden / attention-KV / sample-op tests on all backends.
# Output: $OUT/chain.txt (summary), $OUT/gemv_check.txt, $OUT/tests.log.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
tok=.deno/models/llama-2-tiny-random.gguf
build_lib --checks || exit 1
[ -x build/gemv_check ] || deno run -A tools/build_cuda.ts --arch sm_90 --checks >"$OUT/build.log" 2>&1
ckpt_7b >"$OUT/ckpt.log" 2>&1 &
timeout 240 build/gemv_check --layer-timing >"$OUT/gemv_check.txt" 2>&1
echo "gemv_check exit $?" >>"$OUT/gemv_check.txt"
wait
ckpt_7b || exit 1
run() {  # chain quant
  local extra=()
  [ "$2" != f16 ] && extra=(--weight-quant "$2")
  LLAMA_TS_GEMV_CHAIN=$1 deno run -A cli.ts bench --model "$ckpt" --tokenizer "$tok" --backend cuda \
    --prompt-tokens 16 --gen-tokens 128 --repeat 3 --ctx 1024 "${extra[@]}" 2>>"$OUT/bench.log" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(f\"{d['decodeTokPerS']:.1f}\", [round(r['decodeTokPerS'],1) for r in d['runs']])"
}
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  grep -E "gemv_chain|layer |FAIL|failures|passed" "$OUT/gemv_check.txt"
  for q in f16 int8 int4; do
    echo "$q one launch per GEMV (LLAMA_TS_GEMV_CHAIN=0): $(run 0 $q)"
    echo "$q chained:                                   $(run 1 $q)"
  done
} | tee "$OUT/chain.txt"
timeout 280 deno test -A tests/cuda_chain_test.ts tests/cuda_test.ts tests/ops_test.ts tests/golden_test.ts \
  tests/attention_kv_test.ts tests/sample_op_test.ts >"$OUT/tests.log" 2>&1
echo "tests exit $?" >>"$OUT/tests.log"
grep -E "^(ok|FAILED)|passed|chained logits|FAILED" "$OUT/tests.log" | tail -20 | tee -a "$OUT/chain.txt"
