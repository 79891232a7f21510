#!/usr/bin/env bash
# Instructions the limits add per request, counted by callgrind (repeatable, unlike time on a
# shared machine): one gateway process under valgrind, 1,000 requests of a lifted key then 1,000
# of a limited key (bench/gateway.yaml's limits, the model without context_window), after a
# warm-up and after the usage outbox's first flush, with usage writes held back (flush every 60 s)
# so that both phases do the same database work.
#
#   bench/limits_callgrind.sh   (N requests per phase, default 1000; STUB: see stubbed_serve.py;
#                                KEEP=DIR keeps the two phases' callgrind files for callgrind_annotate;
#                                REDIS_URL=redis://127.0.0.1:6379/0 for the Redis store)
# Prints "DIFF <instructions a request>". Takes about three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench}
PY=$ROOT/.venv/bin/python
N=${N:-1000}
URL=http://127.0.0.1:18100
WORK=$(mktemp -d)
export BENCH_DATA_DIR=$WORK
UP=; GW=
cleanup() { [ -n "$GW" ] && kill "$GW" 2>/dev/null; [ -n "$UP" ] && kill "$UP" 2>/dev/null; [ -n "${KEEP:-}" ] && cp "$WORK"/cg.out.* "$KEEP"/ 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
{ sed 's/, context_window: [0-9]*//' bench/gateway.yaml
  echo "usage: {flush_interval: 60, batch_size: 10000, max_buffer: 100000}"
  echo "keys: {poll_interval: 60}"
  if [ -n "${REDIS_URL:-}" ]; then echo "redis: $REDIS_URL"; fi; } > "$WORK/gw.yaml"
(cd "$HARNESS" && exec "$PY" upstream.py > "$WORK/upstream.log" 2>&1) & UP=$!
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
  "$PY" bench/stubbed_serve.py serve --config "$WORK/gw.yaml" > "$WORK/gateway.log" 2>&1 & GW=$!
for _ in $(seq 600); do curl -sf "$URL/healthz" > /dev/null && break; sleep 0.5; done
START=$(date +%s)
. bench/keys.sh
ON=$(new_key "$WORK/gw.yaml" limited)
OFF=$(new_key "$WORK/gw.yaml" lifted "$LIFTED")
run() {  # key, requests -> requests sent
  "$PY" "$HARNESS/load.py" "$URL/v1" --key "$1" -c 4 -n "$2" --warmup 0 -d 600 --timeout 60 --json |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["sent_total"])'
}
for _ in 1 2; do run "$OFF" 300 > /dev/null; run "$ON" 300 > /dev/null; done
# load.py numbers its questions from 1 on every run: 2,100 more push those the measured phase will
# send out of the gateway's prompt-count cache (2,048 texts), so each of them is counted, as under
# the harness's long runs.
run "$ON" 2100 > /dev/null
while [ $(( $(date +%s) - START )) -lt 63 ]; do sleep 1; done  # past the outbox's first flush
# (the next comes 60 s later: both phases together take about 30 s)
callgrind_control -i on "$GW" > /dev/null
declare -A per_req
for v in lifted limited; do
  key=$OFF; [ "$v" = limited ] && key=$ON
  callgrind_control -z "$GW" > /dev/null
  sent=$(run "$key" "$N")
  callgrind_control -d "$v" "$GW" > /dev/null
  total=$(grep -m1 '^totals:\|^summary:' "$(ls -t "$WORK"/cg.out.* | head -1)" | awk '{print $2}')
  per_req[$v]=$(( total / sent ))
  echo "$v: $sent requests, ${per_req[$v]} instructions a request"
done
echo "DIFF $(( per_req[limited] - per_req[lifted] )) ${STUB:+(stubbed: $STUB)}"
