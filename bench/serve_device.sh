#!/usr/bin/env bash
# Serving on the GPU machine, in one call (device tool), from the repo root, carrying .deno and .gl:
#   source .deno/device-env.sh; bash bench/serve_device.sh
# 1. builds the CUDA library; 2. checks multi-sequence steps and batched-vs-unbatched outputs on the GPU
# (tests/scheduler_test.ts runs every backend, cuda included; the openai-client test stays here: its
# package is too big to carry);
# 3. writes a random-weight LLaMA-7B-shape HF checkpoint (fp16, torch on the GPU, as bench/hf_compare.py
# does); 4. runs bench/serve_load.ts against `cli.ts serve --backend cuda --weight-quant int8`: one stream
# alone (baseline) then CLIENTS concurrent streams, same server, same run. Every stream must end with [DONE].
# It prints where a step's time goes (from /metrics): inside the backend (program run + read-back, i.e.
# device time plus launches) against host time in the step (plan, sample) and between steps (streaming,
# HTTP), and the server main thread's top functions by self time during the concurrent rounds (a V8
# sampling profile over the inspector: $OUT/serve_concurrent.cpuprofile, opens in Chrome DevTools), the
# server main thread's CPU time per token (all host work: the device runs on other threads), and, from one
# more round each at 4, 8, 9, 16 and 32 streams, how the backend's step time grows with the rows per step.
# Results: $OUT/serve_load.json and logs. Prepare here first: bash ../shared/tools/device-prep.sh;
# bash bench/cuda_prep.sh (models and the Deno cache with the npm packages).
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
CLIENTS=${CLIENTS:-64}
MAX_TOKENS=${MAX_TOKENS:-128}
CTX=${CTX:-1024}
status=0
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem --format=csv,noheader
t=$(date +%s)
# SKIP_BUILD=1: a command before this one in the same call built build/libllama_ts_cuda.so
[ -n "${SKIP_BUILD:-}" ] && [ -f build/libllama_ts_cuda.so ] ||
  deno run -A tools/build_cuda.ts --arch sm_90 >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(($(date +%s) - t)) s"
timeout 300 deno test -A tests/scheduler_test.ts >"$OUT/serve_tests.log" 2>&1 || status=1
grep -E "FAILED|passed|SKIP|error:|nmse" "$OUT/serve_tests.log" | tail -15
ckpt_7b || exit 1  # $ckpt (CKPT: an earlier command of the same call wrote one)
# KV: CLIENTS sequences of prompt 16 + MAX_TOKENS tokens fit in CLIENTS * 256 tokens (f16: 0.5 MiB/token)
timeout 560 deno run -A bench/serve_load.ts --clients "$CLIENTS" --max-tokens "$MAX_TOKENS" --prompt-tokens 16 \
  --rounds 2 --timeout-s 540 --out "$OUT/serve_load.json" --cpu-profile "$OUT/serve_concurrent.cpuprofile" \
  --sweep "${SWEEP:-4,8,9,16,32}" -- \
  --model "$ckpt" --tokenizer .deno/models/llama-2-tiny-random.gguf --backend cuda --weight-quant int8 \
  --max-batch "$CLIENTS" --ctx "$CTX" --kv-tokens $((CLIENTS * 256 > CTX ? CLIENTS * 256 : CTX)) \
  >"$OUT/serve_load.log" 2>&1 || status=1
tail -5 "$OUT/serve_load.log"
python3 -c "
import json; r = json.load(open('$OUT/serve_load.json'))
print('device', r['device'], '| single', r['single']['tokPerS'], 'tok/s | concurrent', r['concurrent']['clients'],
      'streams', r['concurrent']['tokPerS'], 'tok/s | ratio', r['ratio'], '| failed', r['failed'])
for k in ('single', 'concurrent'):
    s = r[k].get('split')
    if not s: print(k, ': no split (server without the phase counters)'); continue
    m = s['msPerStep']
    print(f\"{k}: {s['steps']} steps; ms per step: backend {m['backend']} | host: plan {m['plan']} sample {m['sample']} \"
          f\"gap {m['gap']} | backend share {s['backendShare']}; us per token: backend {s['usPerToken']['backend']} \"
          f\"host {s['usPerToken']['host']}\")
    c = r[k].get('serverCpuUsPerToken')
    if c: print(f\"{k}: server CPU per token: main (JS) thread {c['mainThread']} us (\"
                f\"{c['mainThread'] * r[k]['tokens'] / s['steps'] / 1000:.2f} ms per step; on cuda all of it is host work), \"
                f\"whole process {c['process']} us\")
for w in r.get('sweep', []):
    m = w['msPerStep'] or {}
    print(f\"sweep {w['clients']:3d} streams: {w['tokPerS']} tok/s; ms per step: backend {m.get('backend')} plan \"
          f\"{m.get('plan')} sample {m.get('sample')} gap {m.get('gap')}; main-thread CPU \"
          f\"{(w.get('serverCpuUsPerToken') or {}).get('mainThread')} us/token\")
p = r.get('cpuProfile')
if p:
    print(f\"server main thread, concurrent round: {p['totalMs']:.0f} ms profiled; ms by section: {p['sections']}; top by owner:\")
    for e in p['byOwner'][:15]: print(f\"  {e['ms']:9.1f} ms {e['pct']:5.1f}%  {e['name']}\")
    t = r['concurrent']['tokens']
    print('  by area, us per token:', ', '.join(f'{k} {v * 1000 / t:.1f}' for k, v in p['byArea'].items()))
" || status=1
exit $status
