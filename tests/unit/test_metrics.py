"""Metrics: what a request records, the Prometheus text, merging workers, and the hot-path cost."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson

from stellargate.core.usage import UsageRecord
from stellargate.logs import JsonFormatter, RequestIdFilter, redact, request_id_var
from stellargate.metrics import Metrics


def record(**kw: object) -> UsageRecord:
    base: dict[str, object] = dict(
        request_id="r1", created_at=0.0, key_id="key_1", endpoint="chat", dialect="openai", model="gpt-4o",
        provider="fake", upstream_model="gpt-4o", status=200, streamed=False, prompt_tokens=10,
        completion_tokens=5, cached_tokens=0, cache_creation_tokens=0, reasoning_tokens=0, cost_usd=0.001,
        latency_ms=120.0, ttft_ms=None, error_code=None, usage_estimated=False, attempts=1, meta={},
    )  # fmt: skip
    base.update(kw)
    return UsageRecord(**base)  # type: ignore[arg-type]


def test_a_request_is_counted_and_rendered() -> None:
    m = Metrics()
    m.gauge("stellargate_outbox_depth", "depth", (), lambda: [((), 3)])
    m.observe(record(), attempts=1)
    m.observe(record(streamed=True, ttft_ms=40.0, latency_ms=900.0), attempts=1)
    m.observe(record(status=429, error_code="budget_exceeded", prompt_tokens=0, completion_tokens=0), 0)
    m.observe(record(status=504, error_code="upstream_timeout_idle", model='we"ird\n'), attempts=1)
    text = m.render()
    assert (
        'stellargate_requests_total{model="gpt-4o",provider="fake",status="200",dialect="openai"} 2' in text
    )
    assert 'stellargate_tokens_total{model="gpt-4o",provider="fake",kind="prompt"} 20' in text
    assert 'stellargate_limit_refusals_total{kind="budget"} 1' in text
    assert 'stellargate_upstream_errors_total{provider="fake",class="upstream_timeout_idle"} 1' in text
    assert 'model="we\\"ird\\n"' in text
    assert (
        'stellargate_request_duration_seconds_bucket{model="gpt-4o",provider="fake",dialect="openai",'
        'le="0.25"} 2' in text
    )
    assert (
        'stellargate_request_duration_seconds_count{model="gpt-4o",provider="fake",dialect="openai"} 3'
        in text
    )
    assert (
        'stellargate_time_to_first_token_seconds_bucket{model="gpt-4o",provider="fake",le="0.05"} 1' in text
    )
    assert "stellargate_outbox_depth 3" in text
    assert "# TYPE stellargate_request_duration_seconds histogram" in text


def test_workers_snapshots_are_summed(tmp_path: Path) -> None:
    a, b = Metrics(tmp_path), Metrics(tmp_path)
    a.observe(record(), 1)
    b.observe(record(), 1)
    b.observe(record(), 1)
    text = a.render([orjson.loads(orjson.dumps(b.snapshot()))])
    assert 'status="200",dialect="openai"} 3' in text
    assert (
        'stellargate_request_duration_seconds_count{model="gpt-4o",provider="fake",dialect="openai"} 3'
        in text
    )


def test_series_are_capped() -> None:
    m = Metrics()
    for i in range(2100):
        m.observe(record(model=f"m{i}"), 1)
    assert len(m.requests.values) <= 2001
    assert ("(other)", "(other)", "(other)", "(other)") in m.requests.values


def test_observing_costs_microseconds() -> None:
    """The hot-path cost of metrics: one observe() per finished call."""
    m = Metrics()
    rec = record(ttft_ms=30.0)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        m.observe(rec, 1)
    per_call = (time.perf_counter() - t0) / n
    print(f"metrics observe: {per_call * 1e6:.2f} µs per request")
    assert per_call < 20e-6  # generous for a loaded CI machine; typically ~1-2 µs


def test_json_logs_carry_the_request_id_and_no_secret() -> None:
    rec = logging.LogRecord("stellargate", logging.WARNING, __file__, 1, "key %s header %s", None, None)
    rec.args = ("sg-abcdefgh" + "x" * 38, "Bearer adm-secret")
    token = request_id_var.set("req_123")
    try:
        RequestIdFilter().filter(rec)
    finally:
        request_id_var.reset(token)
    line = orjson.loads(JsonFormatter().format(rec))
    assert line["request_id"] == "req_123" and line["level"] == "warning"
    assert "xxxxxxxx" not in line["message"] and "adm-secret" not in line["message"]
    assert "sg-abcdefgh" in line["message"]
    assert redact("upstream said sk-proj-ABCDEFGHIJKLMNOP") == "upstream said sk-pro***"
