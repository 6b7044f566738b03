#!/usr/bin/env bash
# int8 against f16 KV cache on the GPU machine, in one call (device tool, carrying .deno and .gl):
#   source .deno/device-env.sh; bash bench/kv_device.sh
# A random-weight LLaMA-7B-shape fp16 HF checkpoint (bench/hf_compare.py --checkpoint-only; reused when a
# script before it in the same call made one), then `cli.ts bench` on cuda at a 4,096-token context:
# decode of 128 tokens after a 16-token and after a 3,072-token prompt, f16 and int8 KV cache, fp16
# weights; GPU memory in use after each. Output: $OUT/kv.txt.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
[ -f build/libllama_ts_cuda.so ] || deno run -A tools/build_cuda.ts --arch sm_90 >"$OUT/build.log" 2>&1 ||
  { tail -20 "$OUT/build.log"; exit 1; }
ckpt=/tmp/llama7b-hf
[ -f "$ckpt/config.json" ] || python3 bench/hf_compare.py --checkpoint-only --ckpt "$ckpt" 2>&1 | tail -1
bench() {  # weights kv prompt
  local extra=(--kv-dtype "$2")
  [ "$1" != f16 ] && extra+=(--weight-quant "$1")
  deno run -A cli.ts bench --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda \
    --ctx 4096 --prompt-tokens "$3" --gen-tokens 128 --repeat 3 "${extra[@]}" 2>>"$OUT/kv_bench.log" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(f\"decode {d['decodeTokPerS']:.1f} tok/s, prefill {d['prefillTokPerS']:.0f} tok/s, GPU memory {d['deviceMemoryUsed']/2**30:.2f} GiB\")"
}
{
  echo "$(nvidia-smi --query-gpu=name --format=csv,noheader), ctx 4096, 128 new tokens, best of 3"
  for w in f16; do
    for p in 16 3072; do
      for kv in f16 int8; do echo "weights $w, prompt $p, KV $kv: $(bench $w $kv $p)"; done
    done
  done
} | tee "$OUT/kv.txt"
