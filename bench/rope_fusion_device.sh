#!/usr/bin/env bash
# The QKV GEMV with RoPE and the KV-cache write in its epilogue (gemv.cu rope_kv_store, fused by runtime.cu
# when a MATMUL_MULTI of Q, K, V is followed by their ROPE_KV), checked and A/B-timed on the GPU machine in
# one call (device tool, carrying .deno and .gl; run bench/cuda_prebuild.sh here first):
#   source .deno/device-env.sh; bash bench/rope_fusion_device.sh
# 1. the CUDA library (prebuilt or built); 2. the GPU model tests (tests/cuda_test.ts "cuda:" tests: both
# RoPE styles, f32/f16 KV, int8/int4 weights, batches, against ref) and tests/sample_op_test.ts; 3. the
# random-weight LLaMA-7B-shape checkpoint; 4. batch-1 decode (cli.ts bench, 16-token prompt, 128 new tokens,
# best of 3) for fp16, int8 and int4 weights, fused and with LLAMA_TS_CUDA_NO_ROPE_FUSION=1 (the baseline),
# alternating; 5. a profiled int8 step each way: the op list shows whether rope_kv still launches.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
status=0
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
t=$(date +%s)
use_prebuilt || deno run -A tools/build_cuda.ts --arch sm_90 >"$OUT/build.log" 2>&1 ||
  { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - t)) s"
t=$(date +%s)
timeout 300 deno test -A --filter "cuda:" tests/cuda_test.ts >"$OUT/gpu_tests.log" 2>&1 || status=1
timeout 120 deno test -A tests/sample_op_test.ts >>"$OUT/gpu_tests.log" 2>&1 || status=1
grep -E "FAILED|passed|nmse|greedy tokens" "$OUT/gpu_tests.log" | grep -vE "XDG" | tail -24
echo "tests: $(($(date +%s) - t)) s"
[ "$status" = 0 ] || exit 1  # no timings of a wrong kernel
ckpt_7b || exit 1
bench() {  # name, weight-quant flag (or none), then env assignments via `env`
  local name=$1 q=$2
  shift 2
  local qf=()
  [ "$q" != fp16 ] && qf=(--weight-quant "$q")
  env "$@" timeout 240 deno run -A cli.ts bench --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf \
    --backend cuda "${qf[@]}" --prompt-tokens 16 --gen-tokens 128 --repeat 3 --ctx 1024 \
    >"$OUT/bench_$name.json" 2>"$OUT/bench_$name.log" || { status=1; tail -3 "$OUT/bench_$name.log"; return; }
  python3 -c "
import json; r = json.load(open('$OUT/bench_$name.json'))
print('$name: decode', round(r['decodeTokPerS'], 1), 'tok/s (runs', [round(x['decodeTokPerS'], 1) for x in r['runs']], ')')"
}
t=$(date +%s)
for q in fp16 int8 int4; do
  bench "${q}_fused" "$q" X=1
  bench "${q}_unfused" "$q" LLAMA_TS_CUDA_NO_ROPE_FUSION=1
done
echo "benches: $(($(date +%s) - t)) s"
for mode in fused unfused; do
  extra=X=1
  [ $mode = unfused ] && extra=LLAMA_TS_CUDA_NO_ROPE_FUSION=1
  env $extra LLAMA_TS_CUDA_PROFILE="$OUT/profile_$mode.txt" timeout 200 deno run -A cli.ts bench --model "$ckpt" \
    --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --weight-quant int8 --prompt-tokens 16 \
    --gen-tokens 32 --repeat 1 --ctx 1024 >/dev/null 2>"$OUT/profile_$mode.log" || status=1
  echo "profile $mode (int8, rows 1):"
  awk '/^rows 1:/{f=1} /^rows [0-9]+:/ && !/^rows 1:/{f=0} f' "$OUT/profile_$mode.txt" | head -12
done
exit $status
