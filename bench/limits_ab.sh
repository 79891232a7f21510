#!/usr/bin/env bash
# The CPU the limits add per request, with ../shared/bench: the gateway with bench/gateway.yaml's
# limits (request rate, token rate, concurrency, daily spend; never reached) against the same
# gateway with every limit lifted, in-process and on Redis, alternated run by run.
#
#   bench/limits_ab.sh [--runs N] [extra measure.py args]     (REDIS_URL, default the local one)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench}
OUT=${OUT:-$ROOT/bench-results/limits}  # bench-results/ is git-ignored
PY=$ROOT/.venv/bin/python
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
mkdir -p "$OUT"
"$PY" -m pip install -q -r "$HARNESS/requirements.txt"
export BENCH_DATA_DIR; BENCH_DATA_DIR=$(mktemp -d)
trap 'rm -rf "$BENCH_DATA_DIR"' EXIT
LIFTED='limits: {rps: unlimited, concurrency: unlimited}'
sed '/^limits:/d' bench/gateway.yaml > "$BENCH_DATA_DIR/memory-off.yaml"; echo "$LIFTED" >> "$BENCH_DATA_DIR/memory-off.yaml"
cp bench/gateway.yaml "$BENCH_DATA_DIR/memory-on.yaml"
for v in on off; do
  { cat "$BENCH_DATA_DIR/memory-$v.yaml"; echo "redis: $REDIS_URL"; } > "$BENCH_DATA_DIR/redis-$v.yaml"
done
KEY=$("$ROOT/.venv/bin/stellargate" keys create --config "$BENCH_DATA_DIR/memory-on.yaml" --name bench --json |
      "$PY" -c 'import json, sys; print(json.load(sys.stdin)["key"])')
cd "$HARNESS"
for cfg in memory-off memory-on redis-off redis-on; do
  "$PY" measure.py --name "$cfg" --url http://127.0.0.1:18100/v1 --key "$KEY" --out "$OUT" --rate 0 \
    --stream-rate 0 --cmd "exec $ROOT/.venv/bin/stellargate serve --config $BENCH_DATA_DIR/$cfg.yaml" "$@"
done
cd "$OUT" && "$PY" "$HARNESS/table.py" | tee "$OUT/table.md"
