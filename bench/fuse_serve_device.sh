#!/usr/bin/env bash
# The decode attention's fusions (attention_decode.cu) under serving load on the GPU machine, one call (device
# tool, carrying .deno and .gl):
#   source .deno/device-env.sh; bash bench/fuse_serve_device.sh
# (bench/cuda_prebuild.sh here first saves the build there). bench/serve_load.ts against `cli.ts serve
# --backend cuda --weight-quant int8` (7B shape): one stream, then CLIENTS (64) concurrent streams of 16 + 128
# tokens, whose decode steps run up to 64 rows of distinct sequences through the decode kernel; with
# LLAMA_TS_ATTN_FUSE=0 (separate rope_kv and combine kernels, the baseline) and fused, interleaved, ROUNDS
# (2) times. Every stream must end with [DONE]. Output: $OUT/fuse_serve.txt and the JSON of each run.
# Other A/Bs of the server: B_ENV / A_ENV name the baseline's and the change's settings, e.g.
#   B_ENV=LLAMA_TS_CUDA_QUEUE=0 A_ENV=LLAMA_TS_CUDA_QUEUE=2 bash bench/fuse_serve_device.sh   (queued decoding)
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
CLIENTS=${CLIENTS:-64}
build_lib || exit 1
ckpt_7b || exit 1
B_ENV=${B_ENV:-LLAMA_TS_ATTN_FUSE=0}
A_ENV=${A_ENV:-LLAMA_TS_ATTN_FUSE=1}
serve() {  # NAME=VALUE tag
  env "$1" timeout 280 deno run -A bench/serve_load.ts --clients "$CLIENTS" --max-tokens 128 \
    --prompt-tokens 16 --rounds 2 --timeout-s 240 --out "$OUT/serve_$2.json" -- \
    --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --weight-quant int8 \
    --max-batch "$CLIENTS" --ctx 1024 --kv-tokens $((CLIENTS * 256)) >"$OUT/serve_$2.log" 2>&1
  python3 -c "
import json; r = json.load(open('$OUT/serve_$2.json'))
s = (r['concurrent'].get('split') or {}).get('msPerStep') or {}
print('single', r['single']['tokPerS'], 'tok/s | $CLIENTS streams', r['concurrent']['tokPerS'], 'tok/s | failed',
      r['failed'], '| backend ms/step', s.get('backend'))" 2>&1 | tail -1
}
{
  echo "device: $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  for round in $(seq "${ROUNDS:-2}"); do
    echo "B ($B_ENV): $(serve "$B_ENV" b$round)"
    echo "A ($A_ENV): $(serve "$A_ENV" a$round)"
  done
} | tee "$OUT/fuse_serve.txt"
