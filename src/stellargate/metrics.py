"""Prometheus metrics, hand-rolled: a few dicts keyed by label tuples, rendered on scrape.

Why not ``prometheus_client``: its per-observation locking and label lookup cost more than this,
and its multi-process mode needs an environment variable set before import. Here one request
costs a handful of dict updates, done once from the usage record (measured in
tests/unit/test_metrics.py: a few microseconds per request).

Workers: every worker process counts its own requests. Each writes a snapshot of its series to
``data_dir/metrics/<pid>.json`` every ``SNAPSHOT_INTERVAL`` seconds (off the event loop), and a
scrape on any worker adds the fresh snapshots of the others to its own live figures, so one
scrape sees the whole machine. A worker that died stops contributing (its counters leave the sum,
which Prometheus treats as a counter reset).

Series per metric are capped (``MAX_SERIES``): client-chosen model ids cannot grow memory or the
scrape without bound; past the cap, new label sets are counted under ``(other)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from stellargate.core.usage import UsageRecord

MAX_SERIES = 2000
SNAPSHOT_INTERVAL = 2.0
STALE_AFTER = 15.0  # seconds: an older snapshot belongs to a worker that is gone
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)

Labels = tuple[str, ...]
GaugeFn = Callable[[], Iterable[tuple[Labels, float]]]

# Limit refusals are answered before the upstream is called; their codes name the kind.
LIMIT_KINDS = {
    "rate_limit_exceeded": "requests",
    "tokens_exceeded": "tokens",
    "concurrency_exceeded": "concurrency",
    "insufficient_quota": "token_quota",
    "budget_exceeded": "budget",
    "limits_unavailable": "unavailable",
}


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_labels(names: Labels, values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_esc(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


class Counter:
    __slots__ = ("help", "labels", "name", "values")

    def __init__(self, name: str, help: str, labels: Labels) -> None:
        self.name, self.help, self.labels = name, help, labels
        self.values: dict[Labels, float] = {}

    def inc(self, key: Labels, v: float = 1.0) -> None:
        vals = self.values
        if key in vals:
            vals[key] += v
        elif len(vals) < MAX_SERIES:
            vals[key] = v
        else:
            other = ("(other)",) * len(key)
            vals[other] = vals.get(other, 0.0) + v


class Histogram:
    __slots__ = ("bounds", "help", "labels", "name", "values")

    def __init__(self, name: str, help: str, labels: Labels, bounds: tuple[float, ...]) -> None:
        self.name, self.help, self.labels, self.bounds = name, help, labels, bounds
        # Per label set: [count in each bucket (not cumulative) ..., +Inf bucket, sum]
        self.values: dict[Labels, list[float]] = {}

    def observe(self, key: Labels, v: float) -> None:
        row = self.values.get(key)
        if row is None:
            if len(self.values) >= MAX_SERIES:
                key = ("(other)",) * len(key)
                row = self.values.get(key)
            if row is None:
                row = self.values[key] = [0.0] * (len(self.bounds) + 2)
        row[bisect_left(self.bounds, v)] += 1
        row[-1] += v


class Metrics:
    def __init__(self, snapshot_dir: Path | None = None) -> None:
        self._dir = snapshot_dir
        self.requests = Counter(
            "stellargate_requests_total",
            "Model calls answered, by model, provider, HTTP status and client dialect.",
            ("model", "provider", "status", "dialect"),
        )
        self.latency = Histogram(
            "stellargate_request_duration_seconds",
            "Time from arrival to the end of the response (streams: the last chunk).",
            ("model", "provider", "dialect"),
            LATENCY_BUCKETS,
        )
        self.ttft = Histogram(
            "stellargate_time_to_first_token_seconds",
            "Time from arrival to the first streamed chunk sent to the client.",
            ("model", "provider"),
            TTFT_BUCKETS,
        )
        self.tokens = Counter(
            "stellargate_tokens_total",
            "Tokens metered, by kind (prompt, completion, cached, reasoning).",
            ("model", "provider", "kind"),
        )
        self.cost = Counter("stellargate_cost_usd_total", "Cost metered in USD.", ("model", "provider"))
        self.refusals = Counter(
            "stellargate_limit_refusals_total", "Calls refused by a limit or budget, by kind.", ("kind",)
        )
        self.upstream_errors = Counter(
            "stellargate_upstream_errors_total",
            "Calls that failed upstream, by provider and error class (the gateway's error code).",
            ("provider", "class"),
        )
        self.counters = [self.requests, self.tokens, self.cost, self.refusals, self.upstream_errors]
        self.histograms = [self.latency, self.ttft]
        self.gauges: list[tuple[str, str, Labels, GaugeFn]] = []

    def gauge(self, name: str, help: str, labels: Labels, fn: GaugeFn) -> None:
        """A value read at scrape time (outbox depth, circuit states): costs nothing per request."""
        self.gauges.append((name, help, labels, fn))

    # -- the hot path: one call per finished model call ------------------------------------

    def observe(self, rec: UsageRecord, attempts: int) -> None:
        model, provider = rec.model or "(none)", rec.provider or "(none)"
        self.requests.inc((model, provider, str(rec.status), rec.dialect))
        self.latency.observe((model, provider, rec.dialect), rec.latency_ms / 1000)
        if rec.ttft_ms is not None:
            self.ttft.observe((model, provider), rec.ttft_ms / 1000)
        if rec.prompt_tokens or rec.completion_tokens:
            tok = self.tokens.inc
            tok((model, provider, "prompt"), rec.prompt_tokens)
            tok((model, provider, "completion"), rec.completion_tokens)
            if rec.cached_tokens:
                tok((model, provider, "cached"), rec.cached_tokens)
            if rec.reasoning_tokens:
                tok((model, provider, "reasoning"), rec.reasoning_tokens)
        if rec.cost_usd:
            self.cost.inc((model, provider), rec.cost_usd)
        code = rec.error_code
        if code is None:
            return
        if not attempts and code in LIMIT_KINDS:
            self.refusals.inc((LIMIT_KINDS[code],))
        elif attempts and rec.status >= 429 and rec.status != 499:
            self.upstream_errors.inc((provider, code))

    # -- scrape ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "c": {c.name: [[list(k), v] for k, v in c.values.items()] for c in self.counters},
            "h": {h.name: [[list(k), v] for k, v in h.values.items()] for h in self.histograms},
        }

    def _merged(self, others: list[dict[str, Any]]) -> tuple[dict[str, dict[Labels, float]], dict[str, Any]]:
        counters = {c.name: dict(c.values) for c in self.counters}
        hists: dict[str, dict[Labels, list[float]]] = {
            h.name: {k: list(v) for k, v in h.values.items()} for h in self.histograms
        }
        for snap in others:
            for name, rows in snap.get("c", {}).items():
                tgt = counters.get(name)
                if tgt is None:
                    continue
                for k, v in rows:
                    key = tuple(k)
                    tgt[key] = tgt.get(key, 0.0) + v
            for name, rows in snap.get("h", {}).items():
                htgt = hists.get(name)
                if htgt is None:
                    continue
                for k, v in rows:
                    key = tuple(k)
                    row = htgt.get(key)
                    if row is None or len(row) != len(v):
                        htgt[key] = list(v)
                    else:
                        for i, x in enumerate(v):
                            row[i] += x
        return counters, hists

    def render(self, others: list[dict[str, Any]] | None = None) -> str:
        counters, hists = self._merged(others or [])
        out: list[str] = []
        for c in self.counters:
            out += [f"# HELP {c.name} {c.help}", f"# TYPE {c.name} counter"]
            out += [
                f"{c.name}{_fmt_labels(c.labels, k)} {_num(v)}" for k, v in sorted(counters[c.name].items())
            ]
        for h in self.histograms:
            out += [f"# HELP {h.name} {h.help}", f"# TYPE {h.name} histogram"]
            for k, row in sorted(hists[h.name].items()):
                cum = 0.0
                for bound, n in zip((*h.bounds, float("inf")), row[:-1], strict=True):
                    cum += n
                    le = "+Inf" if bound == float("inf") else _num(bound)
                    out.append(
                        f"{h.name}_bucket{_fmt_labels(h.labels, k, f'le={chr(34)}{le}{chr(34)}')} {_num(cum)}"
                    )
                out.append(f"{h.name}_sum{_fmt_labels(h.labels, k)} {_num(row[-1])}")
                out.append(f"{h.name}_count{_fmt_labels(h.labels, k)} {_num(cum)}")
        for name, help, labels, fn in self.gauges:
            out += [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
            try:
                out += [f"{name}{_fmt_labels(labels, k)} {_num(v)}" for k, v in fn()]
            except Exception:  # a broken collector must not take the whole scrape down
                continue
        return "\n".join(out) + "\n"

    # -- sharing between workers ---------------------------------------------------------------

    def _write_snapshot(self, data: bytes) -> None:
        assert self._dir is not None
        self._dir.mkdir(parents=True, exist_ok=True)
        tmp = self._dir / f".{os.getpid()}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self._dir / f"{os.getpid()}.json")

    def read_others(self) -> list[dict[str, Any]]:
        """The fresh snapshots of the other workers (blocking file reads: call it off the loop)."""
        if self._dir is None or not self._dir.is_dir():
            return []
        mine, now, out = f"{os.getpid()}.json", time.time(), []
        for p in self._dir.glob("*.json"):
            if p.name == mine:
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                if now - p.stat().st_mtime <= STALE_AFTER:
                    snap = orjson.loads(p.read_bytes())
                    if isinstance(snap, dict):
                        out.append(snap)
        return out

    async def run_snapshots(self) -> None:
        if self._dir is None:
            return
        try:
            while True:
                await asyncio.sleep(SNAPSHOT_INTERVAL)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._write_snapshot, orjson.dumps(self.snapshot()))
        finally:
            with contextlib.suppress(OSError):
                (self._dir / f"{os.getpid()}.json").unlink()


CIRCUIT_STATES = ("closed", "half_open", "open")


def circuit_states(deployments: Iterable[Any]) -> list[tuple[Labels, float]]:
    """One series per deployment and state, 1 for the state it is in (Prometheus' state-set style)."""
    out: list[tuple[Labels, float]] = []
    for d in deployments:
        state = d.breaker.state
        for s in CIRCUIT_STATES:
            out.append(((d.id, d.provider, s), 1.0 if s == state else 0.0))
    return out
