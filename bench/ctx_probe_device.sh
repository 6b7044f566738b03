#!/usr/bin/env bash
# Probe (GPU machine, one call; carry .deno and .gl): does the decode attention grid cost time for the split
# blocks that have no positions yet? The grid is sized from --ctx (maxCtx): 4 / 8 / 16 splits per head at ctx
# 128 / 256 / 1024 on an H100, while a 16-token prompt plus 100 new tokens uses 1..4. Same decode timed at
# each ctx, fp16 and int4, two rounds, best of 5:
#   source .deno/device-env.sh; bash bench/ctx_probe_device.sh   (output: $OUT/probe.txt)
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
tok=.deno/models/llama-2-tiny-random.gguf
build_lib || exit 1
ckpt_7b || exit 1
run() {  # quant ctx
  local extra=()
  [ "$1" != f16 ] && extra=(--weight-quant "$1")
  deno run -A cli.ts bench --model "$ckpt" --tokenizer "$tok" --backend cuda --prompt-tokens 16 --gen-tokens 100 \
    --repeat 5 --ctx "$2" "${extra[@]}" 2>>"$OUT/bench.log" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(f\"{d['decodeTokPerS']:.1f}\", [round(r['decodeTokPerS'],1) for r in d['runs']])"
}
{
  for round in 1 2; do
    for q in f16 int4; do
      for c in 128 256 1024; do echo "$q ctx $c: $(run $q $c)"; done
    done
  done
} | tee "$OUT/probe.txt"
