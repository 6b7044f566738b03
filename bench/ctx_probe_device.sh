#!/usr/bin/env bash
# Probe (GPU machine, one call; carry .deno and .gl): does the decode attention grid cost time for the split
# blocks that have no positions yet? The grid is sized from --ctx (maxCtx): 4 / 8 / 16 splits per head at ctx
# 128 / 256 / 1024 on an H100, while a 16-token prompt plus 100 new tokens uses 1..4. Same decode timed at
# each ctx, fp16 and int4, two rounds, best of 5:
#   source .deno/device-env.sh; bash bench/ctx_probe_device.sh   (output: $OUT/probe.txt)
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib || exit 1
ckpt_7b || exit 1
run() { bench_7b "$1" 16 100 5 "$2"; }  # quant ctx
{
  for round in 1 2; do
    for q in f16 int4; do
      for c in 128 256 1024; do echo "$q ctx $c: $(run $q $c)"; done
    done
  done
} | tee "$OUT/probe.txt"
