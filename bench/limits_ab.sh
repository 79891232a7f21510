#!/usr/bin/env bash
# The CPU the limits add per request, with ../shared/bench: within ONE gateway process (pinned to
# CPU 0, bench/gateway.yaml's limits: request rate, token rate, concurrency, daily spend, never
# reached), a key under those limits against a key with every limit lifted (a per-key override,
# so its requests skip the limits stage), alternated run by run; in-process, then on Redis.
#
# Why one process for both: two processes of the same configuration differ by up to ±30 µs a
# request on this machine (memory layout, hash seeds), more than the effect measured; alternating
# keys in one process compares like with like.
#
#   bench/limits_ab.sh [extra measure.py args]     (ROUNDS, default 4; BACKENDS, default "memory redis";
#                                                 REDIS_URL, default local)
#   PAIRS=30 bench/limits_ab.sh                    (instead of rounds: 30 short A-B/B-A pairs of the
#                                                 harness's load.py, PAIR_SECONDS each; limits_pairs.py)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
HARNESS=${HARNESS:-$ROOT/../shared/bench}
OUT=${OUT:-$ROOT/bench-results/limits}  # bench-results/ is git-ignored
PY=$ROOT/.venv/bin/python
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
URL=http://127.0.0.1:18100
mkdir -p "$OUT"
rm -f "$OUT"/*.json
"$PY" -m pip install -q -r "$HARNESS/requirements.txt"
export BENCH_DATA_DIR; BENCH_DATA_DIR=$(mktemp -d)
GW=; UP=
cleanup() { [ -n "$GW" ] && kill "$GW" 2>/dev/null; [ -n "$UP" ] && kill "$UP" 2>/dev/null; rm -rf "$BENCH_DATA_DIR"; }
trap cleanup EXIT
if [ -n "${PAIRS:-}" ]; then  # measure.py starts the fake upstream for each of its runs; here, once
  (cd "$HARNESS" && exec taskset -c 1 "$PY" upstream.py > "$OUT/upstream.log" 2>&1) & UP=$!
  for _ in $(seq 50); do curl -sf http://127.0.0.1:19090/health > /dev/null && break; sleep 0.1; done
  rm -f "$OUT/pairs.txt"
fi
# Without the model's context_window: its pre-check would count every prompt for both keys, and
# the tokenizer's cost belongs to the limits here.
sed 's/, context_window: [0-9]*//' bench/gateway.yaml > "$BENCH_DATA_DIR/memory.yaml"
{ cat "$BENCH_DATA_DIR/memory.yaml"; echo "redis: $REDIS_URL"; } > "$BENCH_DATA_DIR/redis.yaml"

. bench/keys.sh

for backend in ${BACKENDS:-memory redis}; do
  cfg=$BENCH_DATA_DIR/$backend.yaml
  taskset -c 0 "$ROOT/.venv/bin/stellargate" serve --config "$cfg" > "$OUT/gateway-$backend.log" 2>&1 &
  GW=$!
  for _ in $(seq 100); do curl -sf "$URL/healthz" > /dev/null && break; sleep 0.1; done
  ON=$(new_key "$cfg" "limited-$backend")
  OFF=$(new_key "$cfg" "lifted-$backend" "$LIFTED")
  if [ -n "${PAIRS:-}" ]; then  # many short A-B/B-A pairs instead of measure.py rounds (limits_pairs.py)
    "$PY" bench/limits_pairs.py --harness "$HARNESS" --url "$URL/v1" --pid "$GW" --lifted "$OFF" \
      --limited "$ON" --pairs "$PAIRS" -d "${PAIR_SECONDS:-2}" --json "$OUT/pairs-$backend.json" |
      tee -a "$OUT/pairs.txt"
    kill "$GW"; wait "$GW" 2>/dev/null || true; GW=
    continue
  fi
  for round in $(seq 1 "${ROUNDS:-4}"); do
    for v in off on; do
      key=$OFF; [ "$v" = on ] && key=$ON
      (cd "$HARNESS" && "$PY" measure.py --name "$backend-$v-r$round" --url "$URL/v1" --key "$key" \
        --pid "$GW" --out "$OUT" --runs 1 --modes nonstream --rate 0 --stream-rate 0 "$@")
    done
  done
  kill "$GW"; wait "$GW" 2>/dev/null || true; GW=
done

[ -n "${PAIRS:-}" ] && exit 0
"$PY" - "$OUT" <<'PY' | tee "$OUT/summary.md"
import glob, json, statistics, sys
runs: dict[str, list[float]] = {}
for path in sorted(glob.glob(f"{sys.argv[1]}/*-r*.json")):
    r = json.load(open(path))
    cfg = r["name"].rsplit("-r", 1)[0]
    runs.setdefault(cfg, []).extend(
        x["gateway"]["cpu_us_per_req"] for x in r["all_runs"] if x["mode"] == "nonstream" and x["kind"] == "closed"
    )
print("| backend | lifted µs/req | limited µs/req | limits add | runs (ranges) |")
print("|---|---|---|---|---|")
for backend in ("memory", "redis"):
    if f"{backend}-on" not in runs:
        continue
    on, off = runs[f"{backend}-on"], runs[f"{backend}-off"]
    m_on, m_off = statistics.median(on), statistics.median(off)
    pairs = [a - b for a, b in zip(on, off)]  # round by round, the same process
    print(f"| {backend} | {m_off:.0f} | {m_on:.0f} | +{m_on - m_off:.0f} "
          f"(round by round {min(pairs):+.0f} … {max(pairs):+.0f}) | {len(on)} each; "
          f"limited {min(on):.0f}–{max(on):.0f}, lifted {min(off):.0f}–{max(off):.0f} |")
PY
