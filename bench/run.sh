#!/usr/bin/env bash
# Produces the README's benchmark table: direct (no gateway), nginx (one proxy hop),
# StellarGate on the identity path, and StellarGate translating to an Anthropic upstream,
# measured in one sitting with ../shared/bench (see its README for the method).
#
#   bench/run.sh [--runs N] [extra measure.py args]
#
# Needs the project's .venv (README, first command). Installs nginx and the harness's
# requirements if missing. Results: bench/results/*.json and bench/results/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench}
OUT=$ROOT/bench/results
PY=$ROOT/.venv/bin/python
mkdir -p "$OUT" /tmp/nginx-bench
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
"$PY" -m pip install -q -r "$HARNESS/requirements.txt"

export BENCH_DATA_DIR; BENCH_DATA_DIR=$(mktemp -d)
CFG=$ROOT/bench/gateway.yaml
KEY=$("$ROOT/.venv/bin/stellargate" keys create --config "$CFG" --name bench --json |
      "$PY" -c 'import json, sys; print(json.load(sys.stdin)["key"])')

cd "$HARNESS"
"$PY" measure.py --name direct --url http://127.0.0.1:19090/v1 --out "$OUT" "$@"
"$PY" measure.py --name nginx --url http://127.0.0.1:19081/v1 --out "$OUT" \
  --cmd "exec nginx -p /tmp/nginx-bench/ -c $HARNESS/targets/nginx.conf" "$@"
"$PY" measure.py --name stellargate --url http://127.0.0.1:18100/v1 --key "$KEY" --out "$OUT" \
  --cmd "exec $ROOT/.venv/bin/stellargate serve --config $CFG" "$@"
# Translated: the same OpenAI clients, an Anthropic upstream (our fake, pinned like the harness's).
taskset -c 1 env UPSTREAM_CHUNK_DELAY_MS=1 "$PY" "$ROOT/bench/anthropic_upstream.py" > "$OUT/anthropic-upstream.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:19090/health >/dev/null && break; sleep 0.1; done
"$PY" measure.py --name stellargate-to-anthropic --url http://127.0.0.1:18100/v1 --key "$KEY" --out "$OUT" \
  --no-upstream --cmd "exec $ROOT/.venv/bin/stellargate serve --config $ROOT/bench/gateway-anthropic.yaml" "$@"
kill $UP
cd "$OUT" && "$PY" "$HARNESS/table.py" . | tee "$OUT/table.md"  # "." : table.py defaults to ./bench-results
rm -rf "$BENCH_DATA_DIR"
