#!/usr/bin/env bash
# Sampling on the GPU (the `sample` op, kernels/cuda/sample.cu), checked and timed on the GPU machine in one
# call (device tool, carrying .deno and .gl; run bench/cuda_prebuild.sh here first to skip the build):
#   source .deno/device-env.sh; bash bench/sample_device.sh
# 1. the CUDA library (prebuilt or built);
# 2. correctness: tests/sample_op_test.ts (the kernel against pickToken, the rule it implements, on rows
#    of 7 / 1,000 / 32,003 logits with every setting, ties, +-Infinity, NaN, extreme uniforms) and
#    tests/scheduler_test.ts (device sampling gives the host sampler's tokens, same seeds, batched);
# 3. the random-weight LLaMA-7B-shape checkpoint (bench/hf_compare.py --checkpoint-only), int8 weights;
# 4. batch-1 decode (cli.ts bench, 16-token prompt, 128 new tokens): greedy, then generate's default
#    sampling (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05) on the device and, as the baseline, on
#    the host (--host-sampling);
# 5. serving: bench/serve_load.ts, CLIENTS streams sampling at temperature 0.8 / top-p 0.95, one stream alone
#    first, device sampling then host sampling (same server flags otherwise);
# 6. the per-op device time of a sampled batch-1 step (LLAMA_TS_CUDA_PROFILE), for the kernel's own cost,
#    with top-k 40 (candidate path) and top-k 0 (whole-vocabulary top-p path).
# GPU_TESTS overrides the test files of step 2 (tests/cuda_test.ts adds a 90 s nvcc build); ONLY_TESTS=1 stops
# after it.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
CLIENTS=${CLIENTS:-64}
status=0
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv,noheader
build_lib || exit 1
if [ "${TESTS:-1}" = 1 ]; then
  t=$(date +%s)
  timeout 300 deno test -A ${GPU_TESTS:-tests/sample_op_test.ts tests/scheduler_test.ts} >"$OUT/gpu_tests.log" 2>&1 ||
    status=1
  grep -E "FAILED|passed|SKIP|error" "$OUT/gpu_tests.log" | grep -vE "\.\.\. ok|XDG" | tail -12
  echo "tests: $(($(date +%s) - t)) s"
fi
[ -n "${ONLY_TESTS:-}" ] && exit $status
ckpt_7b || exit 1  # $ckpt (CKPT: an earlier command of the same call wrote one)
model=(--model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --weight-quant int8)
bench() {  # name, extra flags
  local name=$1
  shift
  timeout 240 deno run -A cli.ts bench "${model[@]}" --prompt-tokens 16 --gen-tokens 128 --repeat 3 --ctx 1024 \
    "$@" >"$OUT/bench_$name.json" 2>"$OUT/bench_$name.log" || { status=1; tail -5 "$OUT/bench_$name.log"; }
  python3 -c "
import json; r = json.load(open('$OUT/bench_$name.json'))
print('bench $name: decode', round(r['decodeTokPerS'], 1), 'tok/s (runs', [round(x['decodeTokPerS'], 1) for x in r['runs']], ')')"
}
t=$(date +%s)
bench greedy
bench sample_device --sample
bench sample_host --sample --host-sampling
echo "batch-1 benches: $(($(date +%s) - t)) s"
serve() {  # name, extra server flags
  local name=$1
  shift
  timeout 200 deno run -A bench/serve_load.ts --clients "$CLIENTS" --max-tokens 128 --prompt-tokens 16 --rounds 2 \
    --temperature 0.8 --top-p 0.95 --timeout-s 180 --out "$OUT/serve_$name.json" -- "${model[@]}" \
    --max-batch "$CLIENTS" --ctx 1024 --kv-tokens $((CLIENTS * 256)) "$@" >"$OUT/serve_$name.log" 2>&1 || status=1
  python3 -c "
import json; r = json.load(open('$OUT/serve_$name.json'))
s = r['concurrent'].get('split') or {}
m = s.get('msPerStep', {})
print('serve $name: single', r['single']['tokPerS'], 'tok/s | concurrent', r['concurrent']['clients'], 'streams',
      r['concurrent']['tokPerS'], 'tok/s | ratio', r['ratio'], '| failed', r['failed'], '| ms per step: backend',
      m.get('backend'), 'sample', m.get('sample'), 'plan', m.get('plan'), 'gap', m.get('gap'))" || tail -5 "$OUT/serve_$name.log"
}
t=$(date +%s)
serve device
serve host --host-sampling
echo "serve: $(($(date +%s) - t)) s"
for topk in 40 0; do  # top-k 40: the candidate path; 0: the whole-vocabulary top-p path
  LLAMA_TS_CUDA_PROFILE=$OUT/profile_k$topk.txt timeout 200 deno run -A cli.ts bench "${model[@]}" --prompt-tokens 16 \
    --gen-tokens 32 --repeat 1 --ctx 1024 --sample --top-k $topk >/dev/null 2>"$OUT/profile.log" || status=1
  echo "profile, top-k $topk:"
  grep -E "^rows|sample|argmax" "$OUT/profile_k$topk.txt" | head -4
done
exit $status
