#!/usr/bin/env bash
# SmoothQuant W8A8 on the cuda backend, one call on the GPU machine (device tool), from the repo root,
# carrying .deno and .gl:
#   source .deno/device-env.sh; bash bench/w8a8_device.sh
# Prepare here first: bash ../shared/tools/device-prep.sh; bash bench/cuda_prep.sh
#
# 1. builds the library and build/w8a8_check (in parallel) while bench/hf_compare.py writes the random-weight
#    LLaMA-7B-shape fp16 HF checkpoint;
# 2. quantizes it to int8_per_channel GGUF in the background (CPU);
# 3. runs build/w8a8_check (kernel cases against a CPU double reference, then 7B-shape kernel timings of the
#    W8A8 GEMV / GEMM next to the weight-only int8 GEMV / GEMM), then the GPU tests: tests/quant_ops_test.ts
#    (the op on every backend) and the cuda tests of tests/cuda_test.ts (W8A8 logits against ref, GEMV and
#    GEMM paths, stories260K w8a8_smoothquant; plus the existing cuda tests as a regression check);
# 4. `cli.ts bench`: decode (16-token prompt, 128 new tokens) and prefill (512-token prompt) of the
#    int8_per_channel file (weight-only int8, the baseline), then of the same file relabelled W8A8
#    (`llama_ts.quantization` patched in place to w8a8_smoothquant: same int8 weights, per-token int8
#    activations, no smoothing: calibrating the 7B shape would not fit this call, and smoothing changes the
#    numbers, not the kernels or their speed).
# Writes $OUT/w8a8_device.log, $OUT/w8a8_check.log, $OUT/deno_test.log and $OUT/summary.md. Aims at < 7 min.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
LOG=$OUT/w8a8_device.log
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
TOK=${TOK:-.deno/models/llama-2-tiny-random.gguf}
CK=${CK:-/tmp/llama7b-hf}
Q=/tmp/llama7b-int8pc.gguf
J=/tmp/w8a8-json
rm -rf "$J" && mkdir -p "$J"

step "build library + w8a8_check, checkpoint"
COMMON=(-O3 -std=c++17 -lineinfo -arch=sm_90)
(nvcc "${COMMON[@]}" -o build/w8a8_check kernels/cuda/checks/w8a8_check.cu kernels/cuda/{w8a8,gemv,gemv_launch,weight_prepare,gemm,gemm_tc,gemm_rows,ops,attention,attention_launch,attention_decode,kv_int8}.cu \
  >"$OUT/build_check.log" 2>&1; echo "w8a8_check build exit $?" >>"$LOG") &
CHECK_PID=$!
([ -f "$CK/config.json" ] || python3 bench/hf_compare.py --checkpoint-only --ckpt "$CK" >>"$LOG" 2>&1
  echo "checkpoint exit $?" >>"$LOG") &
CKPT_PID=$!
deno run -A tools/build_cuda.ts --arch sm_90 >>"$LOG" 2>&1 || { tail -40 "$LOG"; exit 1; }
wait "$CKPT_PID"
step "quantize int8_per_channel in the background"
(timeout 400 deno run -A cli.ts quantize --model "$CK" --tokenizer "$TOK" --out "$Q" --scheme int8_per_channel \
  --format json >"$J/quantize.json" 2>>"$LOG"; echo "quantize exit $?" >>"$LOG") &
QUANT_PID=$!
wait "$CHECK_PID"

step "w8a8_check"
timeout 240 build/w8a8_check >"$OUT/w8a8_check.log" 2>&1 || status=1
grep -E "FAIL" "$OUT/w8a8_check.log" | head -20 | tee -a "$LOG"
sed -n '/^timings/,$p' "$OUT/w8a8_check.log" | tee -a "$LOG"

step "GPU tests"
timeout 300 deno test -A tests/quant_ops_test.ts tests/cuda_test.ts --filter "/cuda|int8 activations|W8A8/" \
  >"$OUT/deno_test.log" 2>&1 || status=1
grep -E "^(ok|FAILED)|W8A8|SKIP|=> |error:|nmse" "$OUT/deno_test.log" | tail -30 | tee -a "$LOG"

step "waiting for the quantizer"
wait "$QUANT_PID"
BENCH=(deno run -A cli.ts bench --backend cuda --ctx 1024 --repeat 2)
bn() { # name, extra flags...
  local name=$1; shift
  step "bench $name"
  timeout 120 "${BENCH[@]}" --model "$Q" "$@" >"$J/$name.json" 2>>"$LOG" || { echo "bench $name failed ($?)" | tee -a "$LOG"; status=1; }
}
if [ -f "$Q" ]; then
  bn int8_decode --prompt-tokens 16 --gen-tokens 128
  bn int8_prefill --prompt-tokens 512 --gen-tokens 2
  step "relabel the file W8A8 (no smoothing)"
  python3 - "$Q" >>"$LOG" 2>&1 <<'EOF' || status=1
import sys
with open(sys.argv[1], "r+b") as f:
    head = f.read(64 << 20)
    i = head.find(b"llama_ts.quantization")
    j = head.find(b"int8_per_channel", i, i + 80) if i >= 0 else -1
    assert j > 0, "llama_ts.quantization = int8_per_channel not found"
    f.seek(j)
    f.write(b"w8a8_smoothquant")  # same length: the header stays valid
print("relabelled", sys.argv[1])
EOF
  bn w8a8_decode --prompt-tokens 16 --gen-tokens 128
  bn w8a8_prefill --prompt-tokens 512 --gen-tokens 2
else
  echo "no quantized file; see $LOG" | tee -a "$LOG"
  status=1
fi
step "done"

python3 - "$J" >"$OUT/summary.md" 2>>"$LOG" <<'EOF'
import json, os, sys
d = sys.argv[1]
def load(n):
    try:
        with open(os.path.join(d, n)) as f:
            return json.load(f)
    except Exception:
        return None
q = load("quantize.json")
if q:
    print(f"int8_per_channel GGUF: {q['bytes'] / 2**30:.2f} GiB, {q['seconds']:.0f} s to quantize\n")
print("| LLaMA-7B shape, random weights | decode tok/s (16 + 128) | prefill 512 tok/s | device memory GiB |")
print("| --- | --- | --- | --- |")
base = {}
for name, key in (("int8 weight-only (int8_per_channel GGUF)", "int8"), ("W8A8 (same weights, int8 activations)", "w8a8")):
    dec, pre = load(f"{key}_decode.json"), load(f"{key}_prefill.json")
    base.setdefault("dec", dec)
    base.setdefault("pre", pre)
    ds = f"{dec['decodeTokPerS']:.1f}" if dec else "—"
    ps = f"{pre['prefillTokPerS']:.0f}" if pre else "—"
    if key == "w8a8" and dec and base["dec"]:
        ds += f" ({dec['decodeTokPerS'] / base['dec']['decodeTokPerS']:.2f}x)"
    if key == "w8a8" and pre and base["pre"]:
        ps += f" ({pre['prefillTokPerS'] / base['pre']['prefillTokPerS']:.2f}x)"
    mem = f"{dec['deviceMemoryUsed'] / 2**30:.1f}" if dec and dec.get("deviceMemoryUsed") else "—"
    print(f"| {name} | {ds} | {ps} | {mem} |")
if base.get("dec"):
    print(f"\ndevice: {base['dec'].get('device')}")
EOF
cat "$OUT/summary.md"
echo "total $(( $(date +%s) - T0 )) s"
exit $status
