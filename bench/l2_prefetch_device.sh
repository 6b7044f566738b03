#!/usr/bin/env bash
# L2 prefetch of the next GEMV's weights (kernels/cuda/gemv.cu issue_l2_prefetch, runtime.cu plan_prefetch),
# checked and timed on the GPU machine in one call (device tool, carrying .deno and .gl; run
# bench/cuda_prebuild.sh here first to skip the build):
#   source .deno/device-env.sh; bash bench/l2_prefetch_device.sh
# 1. the CUDA library (prebuilt or built);
# 2. correctness: the cuda GPU tests (stories260K against ref, decode steps, batched graphs, and the
#    prefetch budgets giving identical logits), tests/sample_op_test.ts and the golden tests;
# 3. the random-weight LLaMA-7B-shape checkpoint (bench/hf_compare.py --checkpoint-only);
# 4. batch-1 greedy decode (cli.ts bench, 16-token prompt, 128 new tokens, best of REPEAT) for the weights of
#    FORMATS (int8 int4 f16), each at the prefetch budgets of BUDGETS (MB per GEMV; 0 = off, the baseline), baseline
#    first, in one process per run, all in this call;
# 5. PROFILE=1: the per-op device time of an int8 step with the budgets 0 and the default.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
BUDGETS=${BUDGETS:-0 24 48}
REPEAT=${REPEAT:-3}
status=0
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
build_lib || exit 1
if [ "${TESTS:-1}" = 1 ]; then
  t=$(date +%s)
  timeout 240 deno test -A --filter "cuda:" tests/cuda_test.ts >"$OUT/gpu_tests_cuda.log" 2>&1 || status=1
  timeout 240 deno test -A ${GPU_TESTS:-tests/sample_op_test.ts tests/golden_test.ts} >"$OUT/gpu_tests.log" 2>&1 ||
    status=1
  cat "$OUT/gpu_tests_cuda.log" "$OUT/gpu_tests.log" | grep -E "FAILED|passed|SKIP|error|=>" | grep -vE "XDG" | tail -16
  echo "tests: $(($(date +%s) - t)) s"
fi
[ -n "${ONLY_TESTS:-}" ] && exit $status
ckpt_7b || exit 1
for q in ${FORMATS:-int8 int4 f16}; do
  for mb in $BUDGETS; do
    t=$(date +%s)
    wq=()
    [ "$q" != f16 ] && wq=(--weight-quant "$q")
    LLAMA_TS_CUDA_L2_PREFETCH_MB=$mb timeout 200 deno run -A cli.ts bench --model "$ckpt" \
      --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda "${wq[@]}" --prompt-tokens 16 \
      --gen-tokens 128 --repeat "$REPEAT" --ctx 1024 >"$OUT/bench_${q}_$mb.json" 2>"$OUT/bench_${q}_$mb.log" ||
      { status=1; tail -5 "$OUT/bench_${q}_$mb.log"; continue; }
    python3 -c "
import json; r = json.load(open('$OUT/bench_${q}_$mb.json'))
print('$q prefetch ${mb} MB: decode', round(r['decodeTokPerS'], 1), 'tok/s (runs',
      [round(x['decodeTokPerS'], 1) for x in r['runs']], ') $(($(date +%s) - t)) s')"
  done
done
if [ -n "${PROFILE:-}" ]; then
  for mb in 0 24; do
    LLAMA_TS_CUDA_L2_PREFETCH_MB=$mb LLAMA_TS_CUDA_PROFILE=$OUT/profile_int8_$mb.txt timeout 200 deno run -A cli.ts \
      bench --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --weight-quant int8 \
      --prompt-tokens 16 --gen-tokens 32 --repeat 1 --ctx 1024 >/dev/null 2>"$OUT/profile.log" || status=1
    echo "profile int8, prefetch $mb MB:"
    head -14 "$OUT/profile_int8_$mb.txt"
  done
fi
exit $status
