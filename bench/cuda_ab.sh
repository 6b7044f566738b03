#!/usr/bin/env bash
# A/B of a CUDA kernel tuning macro on the GPU machine, in one call (device tool, carrying .deno and .gl):
#   source .deno/device-env.sh; AB_DEFINE=LLAMA_TS_GEMV_THREADS=256 bash bench/cuda_ab.sh
# Builds the default library (A) and one with -D$AB_DEFINE (B), makes a random-weight 7B-shape HF
# checkpoint (hf_compare.py, logits checked against HF fp32 with A), then times decode (16-token prompt,
# 128 new tokens, best of 3) for fp16 / int8 / int4 weights with A and with B, interleaved, and runs the
# GPU tests with B (AB_TESTS=0 skips them and leaves A as build/libllama_ts_cuda.so; AB_CKPT names the
# checkpoint directory, default /tmp/ab-ckpt). To skip both builds on the device: bench/cuda_prebuild.sh for A,
# and B built here with the same define into an ignored path that the call carries, named by AB_LIB_B.
# Output: $OUT/ab.txt.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
def=${AB_DEFINE:?set AB_DEFINE=NAME=VALUE}
tok=.deno/models/llama-2-tiny-random.gguf
ck=${AB_CKPT:-/tmp/ab-ckpt}
if [ -n "${AB_LIB_B:-}" ] && [ -f "$AB_LIB_B" ] && use_prebuilt; then
  # AB_LIB_B: B built here before the call (tools/build_cuda.ts --arch sm_90 --out /tmp/lib_b.so --define ...,
  # then xz -c /tmp/lib_b.so >.deno/ab/lib_b.so.xz, carried with .deno)
  case "$AB_LIB_B" in
    *.xz) xz -dc "$AB_LIB_B" >build/lib_b.so ;;
    *) cp "$AB_LIB_B" build/lib_b.so ;;
  esac && echo "A: prebuilt; B: $AB_LIB_B (built with -D$def before the call)"
else
  deno run -A tools/build_cuda.ts --arch sm_90 >"$OUT/build_a.log" 2>&1 &
  deno run -A tools/build_cuda.ts --arch sm_90 --out build/lib_b.so --define "$def" >"$OUT/build_b.log" 2>&1 &
fi
PYTHONUNBUFFERED=1 python3 bench/hf_compare.py --out "$OUT" --tokenizer "$tok" --ckpt "$ck" --skip-hf-generate \
  --skip-bench --variants "" --positions 2 >/dev/null 2>"$OUT/ckpt.log" || true
wait
[ -f build/libllama_ts_cuda.so ] && [ -f build/lib_b.so ] || { tail -20 "$OUT"/build_*.log; exit 1; }
run() {  # lib quant
  local extra=()
  [ "$2" != f16 ] && extra=(--weight-quant "$2")
  deno run -A cli.ts bench --model "$ck" --tokenizer "$tok" --backend cuda --cuda-lib "$1" --prompt-tokens 16 \
    --gen-tokens 128 --repeat 3 --ctx 1024 "${extra[@]}" 2>>"$OUT/bench.log" |
    python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(f\"{d['decodeTokPerS']:.1f}\", [round(r['decodeTokPerS'],1) for r in d['runs']])"
}
{
  echo "A = default, B = -D$def ($(nvidia-smi --query-gpu=name --format=csv,noheader))"
  for q in f16 int8 int4; do
    echo "$q A $(run build/libllama_ts_cuda.so $q)"
    echo "$q B $(run build/lib_b.so $q)"
  done
} | tee "$OUT/ab.txt"
[ "${AB_TESTS:-1}" = 0 ] && exit 0  # AB_TESTS=0: leave A in place, skip the GPU tests with B
cp build/lib_b.so build/libllama_ts_cuda.so
timeout 300 deno test -A tests/ops_test.ts tests/golden_test.ts tests/cuda_test.ts >"$OUT/test_b.log" 2>&1
grep -E "FAILED|passed" "$OUT/test_b.log" | tail -5 | tee -a "$OUT/ab.txt"
