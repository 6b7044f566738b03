#!/usr/bin/env bash
# int8 against f16 KV cache on the GPU machine, in one call (device tool, carrying .deno and .gl; run
# bench/cuda_prebuild.sh here first to skip the build):
#   source .deno/device-env.sh; bash bench/kv_device.sh
# 1. the CUDA library (prebuilt or built);
# 2. correctness (TESTS=0 skips): tests/attention_kv_test.ts (kv_write + attention against ref, int8 caches at
#    head dims 16..128, prefill, decode and continuation steps) on the default int8 path (attention()'s
#    pipelined kernel) and on kv8_attention (LLAMA_TS_KV8_ATTN=kv8), and the cuda int8-KV model test
#    (stories260K against ref's int8 cache);
# 3. a random-weight LLaMA-7B-shape fp16 HF checkpoint (bench/hf_compare.py --checkpoint-only; reused when a
#    script before it in the same call made one);
# 4. `cli.ts bench` on cuda at a 4,096-token context, fp16 weights: prefill of the prompt and decode of 128
#    tokens after a 16-token and after a 3,072-token prompt: f16 KV (the baseline), int8 KV, and int8 KV on
#    kv8_attention (KV8=kv8, the int8 path before 2026-11-25 night); GPU memory in use after each;
# 5. SERVE=1 (default): bench/serve_load.ts, CLIENTS (32) greedy streams at once, int8 KV, default path and
#    kv8_attention.
# Output: $OUT/kv.txt.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
status=0
build_lib || exit 1
if [ "${TESTS:-1}" = 1 ]; then
  t=$(date +%s)
  for path in kv8 default; do
    env_=()
    [ "$path" != default ] && env_=(LLAMA_TS_KV8_ATTN=$path)
    env "${env_[@]}" timeout 240 deno test -A tests/attention_kv_test.ts >"$OUT/tests_kv_$path.log" 2>&1 || status=1
    echo "attention_kv_test, int8 path $path: $(grep -E "passed|FAILED" "$OUT/tests_kv_$path.log" | tail -1)"
  done
  timeout 240 deno test -A --filter "int8 KV" tests/cuda_test.ts >"$OUT/tests_cuda_kv.log" 2>&1 || status=1
  grep -E "int8 KV:|passed|FAILED" "$OUT/tests_cuda_kv.log" | tail -4
  echo "tests: $(($(date +%s) - t)) s"
fi
[ -n "${ONLY_TESTS:-}" ] && exit $status
ckpt_7b || exit 1
bench() {  # kv prompt [env assignments...]
  local kv=$1 prompt=$2
  shift 2
  env "$@" timeout 200 deno run -A cli.ts bench --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf \
    --backend cuda --ctx 4096 --prompt-tokens "$prompt" --gen-tokens 128 --repeat 3 --kv-dtype "$kv" \
    2>>"$OUT/kv_bench.log" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(f\"decode {d['decodeTokPerS']:.1f} tok/s, prefill {d['prefillTokPerS']:.0f} tok/s, GPU memory {d['deviceMemoryUsed']/2**30:.2f} GiB\")" ||
    status=1
}
{
  echo "$(nvidia-smi --query-gpu=name --format=csv,noheader), fp16 weights, ctx 4096, 128 new tokens, best of 3"
  for p in 3072 16; do
    echo "prompt $p, KV f16: $(bench f16 $p)"
    echo "prompt $p, KV int8: $(bench int8 $p)"
    echo "prompt $p, KV int8, KV8=kv8: $(bench int8 $p LLAMA_TS_KV8_ATTN=kv8)"
  done
} | tee "$OUT/kv.txt"
# decode batches: CLIENTS streams at once through the server (one decode row per sequence per step), int8 KV
# on the default path and on kv8_attention
serve() {  # name [env assignments...]
  local name=$1
  shift
  env "$@" timeout 200 deno run -A bench/serve_load.ts --clients "${CLIENTS:-32}" --max-tokens 128 --prompt-tokens 16 \
    --rounds 2 --timeout-s 180 --out "$OUT/serve_$name.json" -- --model "$ckpt" \
    --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --kv-dtype int8 --max-batch "${CLIENTS:-32}" \
    --ctx 1024 --kv-tokens $((${CLIENTS:-32} * 256)) >"$OUT/serve_$name.log" 2>&1 || status=1
  python3 -c "
import json; r = json.load(open('$OUT/serve_$name.json'))
print('serve, KV int8 $name:', r['concurrent']['clients'], 'streams', r['concurrent']['tokPerS'], 'tok/s | single',
      r['single']['tokPerS'], 'tok/s | failed', r['failed'])" || tail -5 "$OUT/serve_$name.log"
}
[ "${SERVE:-1}" = 1 ] && { serve default; serve kv8 LLAMA_TS_KV8_ATTN=kv8; } | tee -a "$OUT/kv.txt"
exit $status
