#!/usr/bin/env bash
# Quantization quality and speed on the LLaMA-7B shape, one call on the GPU machine (device tool), from the
# repo root, carrying .deno and .gl:
#   source .deno/device-env.sh; bash bench/quant_device.sh
# Prepare here first: bash ../shared/tools/device-prep.sh; bash bench/cuda_prep.sh
#
# 1. builds the CUDA library; writes a random-weight LLaMA-7B-shape fp16 HF checkpoint (bench/hf_compare.py
#    --checkpoint-only: transformers, HF's default init, no activation outliers unlike trained models);
# 2. quantizes it to q8_0 and q4_0 GGUF with `cli.ts quantize` (on the CPU, in the background);
# 3. `cli.ts eval` on cuda against the fp16 checkpoint (f16 KV) over tests/data/eval_stories.txt:
#    int8 KV cache (fp16 weights), --weight-quant int8 / int4 (the int8_per_channel / int4_g128 numerics,
#    quantized at load), q8_0.gguf, q4_0.gguf: perplexity change, KL, top-1 agreement, memory;
# 4. `cli.ts bench` decode speed (16-token prompt, 128 new tokens, best of 2), fp16 with f16 KV as the
#    baseline in the same call.
# SmoothQuant W8A8 is not run: the cuda backend has no int8-activation matmul yet (the engine refuses it).
# Writes $OUT/quant_device.log and $OUT/summary.md. Aims at under 6 minutes.
# Dry run of the flow without a GPU: BACKEND=ref CK=<small HF dir> bash bench/quant_device.sh (the
# --weight-quant rows fail there: only cuda quantizes at load).
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
LOG=$OUT/quant_device.log
T0=$(date +%s)
step() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOG"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"

BACKEND=${BACKEND:-cuda}
if [ "$BACKEND" = cuda ] && [ ! -f build/libllama_ts_cuda.so ]; then
  step "build"
  deno run -A tools/build_cuda.ts --arch sm_90 >>"$LOG" 2>&1 || { tail -40 "$LOG"; exit 1; }
fi

TOK=${TOK:-.deno/models/llama-2-tiny-random.gguf}
J=/tmp/quant-json
rm -rf "$J" && mkdir -p "$J"
if [ -z "${CK:-}" ]; then
  # the recipe every device script shares (reused when a script before this one in the call made it)
  CK=/tmp/llama7b-hf
  step "checkpoint"
  [ -f "$CK/config.json" ] || python3 bench/hf_compare.py --checkpoint-only --ckpt "$CK" >>"$LOG" 2>&1 ||
    { tail -20 "$LOG"; exit 1; }
fi

step "quantize q8_0 and q4_0 in the background"
for s in q8_0 q4_0; do
  (timeout 300 deno run -A cli.ts quantize --model "$CK" --tokenizer "$TOK" --out "/tmp/llama7b-$s.gguf" \
    --scheme "$s" --format json >"$J/quantize_$s.json" 2>>"$LOG"; echo "quantize $s exit $?" >>"$LOG") &
done

EVAL=(deno run -A cli.ts eval --backend "$BACKEND" --reference "$CK" --tokenizer "$TOK" --ctx 1024
  --text tests/data/eval_stories.txt --format json)
ev() { # name, extra flags...
  local name=$1; shift
  step "eval $name"
  timeout 120 "${EVAL[@]}" "$@" >"$J/eval_$name.json" 2>>"$LOG" || echo "eval $name failed ($?)" | tee -a "$LOG"
}
ev kv_int8 --model "$CK" --kv-dtype int8 --reference-kv-dtype f16
ev int8 --model "$CK" --weight-quant int8
ev int4 --model "$CK" --weight-quant int4
step "waiting for the quantizers"
wait
ev q8_0 --model /tmp/llama7b-q8_0.gguf
ev q4_0 --model /tmp/llama7b-q4_0.gguf

BENCH=(deno run -A cli.ts bench --backend "$BACKEND" --tokenizer "$TOK" --ctx 1024 --prompt-tokens 16 --gen-tokens 128
  --repeat 2)
bn() {
  local name=$1; shift
  step "bench $name"
  timeout 90 "${BENCH[@]}" "$@" >"$J/bench_$name.json" 2>>"$LOG" || echo "bench $name failed ($?)" | tee -a "$LOG"
}
bn f16 --model "$CK"
bn f16_kv_int8 --model "$CK" --kv-dtype int8
bn int8 --model "$CK" --weight-quant int8
bn q8_0 --model /tmp/llama7b-q8_0.gguf
bn int4 --model "$CK" --weight-quant int4
bn q4_0 --model /tmp/llama7b-q4_0.gguf
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
b0 = load("bench_f16.json")
print("| variant | weights GiB | KV MiB (ctx 1024) | perplexity (fp16 -> variant) | KL(fp16 || variant) | top-1 | decode tok/s | vs fp16 |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
rows = [("fp16, f16 KV (baseline)", None, "bench_f16.json"), ("fp16, int8 KV", "eval_kv_int8.json", "bench_f16_kv_int8.json"),
        ("int8 per channel (load)", "eval_int8.json", "bench_int8.json"), ("q8_0 GGUF", "eval_q8_0.json", "bench_q8_0.json"),
        ("int4 g128 (load)", "eval_int4.json", "bench_int4.json"), ("q4_0 GGUF", "eval_q4_0.json", "bench_q4_0.json")]
for name, e, b in rows:
    ev, bj = (load(e) if e else None), load(b)
    t = ev and ev.get("text")
    m = ev and ev.get("model")
    w = f"{m['weightBytes'] / 2**30:.2f}" if m else "—"
    kv = f"{m['kvBytes'] / 2**20:.1f} vs {ev['reference']['kvBytes'] / 2**20:.1f}" if m else "—"
    ppl = f"{t['reference']['perplexity']:.1f} -> {t['model']['perplexity']:.1f}" if t else "—"
    kl = f"{t['klMean']:.3g}" if t else "—"
    top = f"{100 * t['top1Agreement']:.1f}%" if t else "—"
    tok = f"{bj['decodeTokPerS']:.1f}" if bj else "—"
    ratio = f"{bj['decodeTokPerS'] / b0['decodeTokPerS']:.2f}x" if bj and b0 else "—"
    print(f"| {name} | {w} | {kv} | {ppl} | {kl} | {top} | {tok} | {ratio} |")
for s in ("q8_0", "q4_0"):
    q = load(f"quantize_{s}.json")
    if q:
        print(f"\nquantize {s}: {q['bytes'] / 2**30:.2f} GiB, {q['matrixBitsPerWeight']:.2f} bits/weight, {q['seconds']:.0f} s")
evs = [x for x in (load(f"eval_{n}.json") for n in ("int8", "q8_0", "kv_int8")) if x]
if b0:
    print(f"\ndevice: {b0.get('device')}; scored tokens: {evs[0]['text']['model']['tokens'] if evs else None}")
EOF
cat "$OUT/summary.md"
echo "total $(( $(date +%s) - T0 )) s"
