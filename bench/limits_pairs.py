"""The limits' CPU per request as many short paired runs of the harness's load generator
(``../shared/bench/load.py``, whose CPU meter samples the gateway at the edges of each measured
window), for ``limits_ab.sh`` with ``PAIRS=N``.

Why short pairs: on a shared machine the speed of the gateway's core drifts by tens of percent
over minutes, more than the effect measured. Runs of a few seconds, the two keys back to back in
A-B-B-A order, put both sides of each difference in nearly the same conditions; the median of
the differences is then robust to the drift that a median of each side is not.

    python bench/limits_pairs.py --harness DIR --url URL/v1 --pid GATEWAY_PID \\
        --lifted KEY --limited KEY [--pairs 30] [-d 2] [--warmup 0.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(a: argparse.Namespace, key: str) -> float:
    cmd = [sys.executable, str(Path(a.harness) / "load.py"), a.url, "--key", key, "-c", str(a.c),
           "-d", str(a.d), "--warmup", str(a.warmup), "--pid", f"gateway={a.pid}", "--json"]  # fmt: skip
    # The load generator shares CPU 1 with the fake upstream, as in measure.py; the gateway has CPU 0.
    out = subprocess.run(["taskset", "-c", "1", *cmd], capture_output=True, check=False, timeout=120)
    r = json.loads(out.stdout)
    if out.returncode or r["errors"] or not r["ok"]:
        raise SystemExit(f"a run failed: {out.stdout[:500]!r}")
    return float(r["gateway"]["cpu_us_per_req"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--harness", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", required=True)
    ap.add_argument("--lifted", required=True)
    ap.add_argument("--limited", required=True)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("-c", type=int, default=32)
    ap.add_argument("-d", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    lifted: list[float] = []
    limited: list[float] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for i in range(a.pairs):
        order = ("lifted", "limited") if i % 2 == 0 else ("limited", "lifted")  # A-B, B-A, ...
        for which in order:
            (lifted if which == "lifted" else limited).append(run(a, getattr(a, which)))
    diffs = [on - off for on, off in zip(limited, lifted, strict=True)]
    q = statistics.quantiles(diffs, n=4)
    result = {
        "started": started,
        "ended": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "pairs": a.pairs,
        "seconds_each": a.d,
        "lifted_median": statistics.median(lifted),
        "limited_median": statistics.median(limited),
        "diff_median": statistics.median(diffs),
        "diff_quartiles": [q[0], q[2]],
        "lifted": lifted,
        "limited": limited,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    print(
        f"{a.pairs} pairs of {a.d:g} s, {started} to {result['ended']}: lifted {result['lifted_median']:.0f} "
        f"µs/req (range {min(lifted):.0f} to {max(lifted):.0f}), limited {result['limited_median']:.0f}; "
        f"limits add {result['diff_median']:+.1f} µs (median of pair differences; quartiles "
        f"{q[0]:+.1f} … {q[2]:+.1f})"
    )


if __name__ == "__main__":
    main()
