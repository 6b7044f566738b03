#!/usr/bin/env bash
# What each kind of op costs inside a captured batch-1 decode step, on the GPU machine (device tool, carrying
# .deno and .gl):
#   source .deno/device-env.sh; bash bench/ablate_device.sh
# (bench/cuda_prebuild.sh here first saves the build there). Times decode (7B shape, 16-token prompt, 128
# new tokens, best of 3) for fp16 / int8 / int4 with nothing skipped, then with LLAMA_TS_CUDA_SKIP_OPS naming
# ops that the decode steps then do not launch (runtime_launch.cu): the time a skip saves is what those
# records cost in the graph, boundaries included. The tokens are wrong under a skip; only the timing counts.
# Output: $OUT/ablate.txt.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
build_lib || exit 1
ckpt_7b || exit 1
run() {  # skip quant: "tok/s ms/token" of the best of 3
  local best
  best=$(LLAMA_TS_CUDA_SKIP_OPS=$1 bench_7b "$2" 16 128 3 1024) || return 1
  best=${best%% *}
  printf '%7.1f tok/s %6.3f ms/token' "$best" "$(python3 -c "print(1000 / $best)")"
}
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  for q in f16 int8 int4; do
    for s in "" rope_kv attention rope_kv,attention matmul,matmul_multi,gateup; do
      printf '%-5s skip %-30s %s\n' "$q" "[${s}]" "$(run "$s" $q)"
    done
  done
} | tee "$OUT/ablate.txt"
