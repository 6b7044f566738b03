#!/usr/bin/env bash
# Where a webgpu decode step's time goes on the GPU machine, in one call (device tool, carrying .deno and
# .gl; prepare here with bash ../shared/tools/device-prep.sh; bash bench/webgpu_prep.sh):
#   source .deno/device-env.sh; bash bench/webgpu_diag_device.sh
# 1. webgpu op and model tests on the GPU adapter (SKIP_TESTS=1 leaves them out);
# 2. bench/webgpu_bandwidth.ts: the read roofline and read bandwidth by bytes per dispatch;
# 3. bench/webgpu_gemv_chain.ts: 8 chained 7B layers' GEMVs per layout, with the probe ladder (q8, q4;
#    f16 default layout only unless CHAIN_ARGS says otherwise);
# 4. the 7B-shape step (bench/webgpu_7b.ts) for VARIANTS (default "int8 int4"; "" for none): decode, prefill, per-kernel
#    profile and the timeline (wall per token, one step in one pass, its dispatches one by one, host
#    encode); then, for each of AB_VARIANTS (default int8), the same with each tuning of TUNINGS (JSON
#    objects separated by ";", e.g. '{"burstMs":40}'), alternating with the defaults (A B A B).
# CHAIN_ARGS / CHAIN2_ARGS: arguments of the chain run and of a second chain process (none unless given).
# nvidia-smi samples clocks, memory, power and throttle reasons every 0.5 s during the chain (smi.csv).
# Output under $OUT: diag.txt (every number), tests.log, bandwidth.json, chain.md, chain.json, smi.csv,
# 7b_<variant>.json.
set -uo pipefail
source "$(dirname "$0")/_device_common.sh"
trap '[ -f /tmp/deno.lock.device ] && mv -f /tmp/deno.lock.device deno.lock' EXIT
status=0
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*"; }
W=$(mktemp -d)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  if [ "${SKIP_TESTS:-0}" != 1 ]; then
    stamp "tests"
    timeout 120 deno test -A --no-check tests/ops_test.ts tests/webgpu_test.ts tests/golden_test.ts \
      >"$OUT/tests.log" 2>&1 || status=1
    grep -E "FAILED|passed" "$OUT/tests.log" | tail -3
  fi
  stamp "bandwidth"
  timeout 60 deno run -A bench/webgpu_bandwidth.ts --json "$OUT/bandwidth.json" >/dev/null 2>"$W/bw.log" || status=1
  deno eval "const r = JSON.parse(Deno.readTextFileSync('$OUT/bandwidth.json'));
console.log('best read', r.bestReadGBps.toFixed(0), 'GB/s', JSON.stringify(r.best), 'empty dispatch', r.emptyDispatchUs.toFixed(2), 'us');
for (const l of r.bytesPerDispatch) console.log('  ', l.mib, 'MiB per dispatch:', l.usPerDispatch.toFixed(1), 'us,', l.gbps.toFixed(0), 'GB/s');" ||
    tail -5 "$W/bw.log"
  stamp "GEMV chain"
  nvidia-smi --query-gpu=timestamp,memory.used,clocks.sm,clocks.mem,power.draw,temperature.gpu,pstate,clocks_throttle_reasons.active \
    --format=csv -lms 500 >"$OUT/smi.csv" 2>&1 &
  smi=$!
  timeout 200 deno run -A bench/webgpu_gemv_chain.ts --json "$OUT/chain.json" ${CHAIN_ARGS:-} \
    >"$OUT/chain.md" 2>"$W/chain.log" || { status=1; tail -5 "$W/chain.log"; }
  grep -E "^\[" "$W/chain.log"
  cat "$OUT/chain.md"
  if [ -n "${CHAIN2_ARGS:-}" ]; then
    stamp "GEMV chain, second process"
    timeout 120 deno run -A bench/webgpu_gemv_chain.ts ${CHAIN2_ARGS} 2>&1 | grep -E "^\[|^\|"
  fi
  kill $smi 2>/dev/null
  for v in ${VARIANTS-int8 int4}; do
    stamp "7B $v"
    timeout 60 deno run -A bench/webgpu_7b.ts --out "$W/$v" --bandwidth "$OUT/bandwidth.json" --variants "$v" \
      --skip-compare --repeat 2 >/dev/null 2>"$W/$v.log" || status=1
    grep -E "decode|prefill|timeline|one decode step|attention" "$W/$v.log" | sed 's/^\[[0-9.]*s\] //'
    cp "$W/$v/webgpu_7b.json" "$OUT/7b_$v.json" 2>/dev/null
  done
  IFS=';' read -ra tunings <<<"${TUNINGS:-}"
  n=0
  for t in "${tunings[@]}"; do
    n=$((n + 1))
    echo "$t" >"$W/t$n.json"
    for v in ${AB_VARIANTS:-int8}; do
      for run in A1 B1 A2 B2; do
        extra=()
        [ "${run:0:1}" = B ] && extra=(--tuning "$W/t$n.json")
        timeout 60 deno run -A bench/webgpu_7b.ts --out "$W/ab$n$v$run" --variants $v --skip-compare --repeat 2 \
          "${extra[@]}" >/dev/null 2>"$W/ab$n$v$run.log" || status=1
        echo "$v $run ${extra[*]:+$t}: $(grep -E "decode [0-9.]+ tok/s|timeline" "$W/ab$n$v$run.log" |
          sed 's/^\[[0-9.]*s\] //' | tr '\n' ' ')"
      done
    done
  done
  stamp "done (status $status)"
} 2>&1 | tee "$OUT/diag.txt"
exit $status
