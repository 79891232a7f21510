"""OpenTelemetry spans from a finished call: one per request, one per upstream attempt (GenAI
semantic conventions), nothing of the prompt."""

from __future__ import annotations

import pytest

from stellargate.settings import TracingSettings
from tests.unit.test_metrics import record

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from stellargate.tracing import Tracing, start_tracing


def test_off_by_default() -> None:
    assert start_tracing(TracingSettings()) is None


def test_a_request_span_and_one_span_per_attempt() -> None:
    exporter = InMemorySpanExporter()
    tr = Tracing(TracingSettings(enabled=True), exporter=exporter)
    down = {"status": 503, "error": "upstream_unavailable", "ms": 20.0}
    attempts = [
        {"model": "gpt-4o", "deployment": "a/gpt-4o", "provider": "a", **down},
        {"model": "gpt-4o", "deployment": "b/gpt-4o", "provider": "b", "status": 200, "ms": 35.0},
    ]
    tr(record(created_at=1_700_000_000.0, latency_ms=120.0, ttft_ms=60.0, meta={"attempts": attempts}), None)
    tr.shutdown()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    server = spans["chat gpt-4o"]
    assert server.kind == SpanKind.SERVER
    a = server.attributes or {}
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4o" and a["gen_ai.response.model"] == "gpt-4o"
    assert a["gen_ai.usage.input_tokens"] == 10 and a["gen_ai.usage.output_tokens"] == 5
    assert server.end_time - server.start_time == 120_000_000  # type: ignore[operator]
    first, second = spans["chat a/gpt-4o"], spans["chat b/gpt-4o"]
    assert first.kind == second.kind == SpanKind.CLIENT
    assert first.parent is not None and first.parent.span_id == server.context.span_id  # type: ignore[union-attr]
    assert (first.attributes or {})["error.type"] == "upstream_unavailable"
    assert first.end_time == second.start_time and second.end_time == server.end_time
    assert all("content" not in k and "prompt" not in k for s in spans.values() for k in (s.attributes or {}))
