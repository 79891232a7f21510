"""OpenTelemetry traces (optional: ``pip install 'stellargate[otel]'``; off unless ``tracing.enabled``).

One SERVER span per model call and one CLIENT span per upstream attempt, named and attributed by
the OpenTelemetry GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` /
``output_tokens``, ``error.type``), exported over OTLP/HTTP in batches by the SDK's background
thread. Never a prompt or a completion.

Why the spans are made after the fact, from the usage record: the record already carries every
figure (arrival, latency, time to first token, status, tokens, each attempt's deployment, status
and time to answer), so tracing adds no work to the request path, only to the observer at its
end (and nothing at all while disabled). Attempt spans are laid end to end from the request's
arrival: attempt i starts when attempt i-1 gave up; the last one lasts to the end of the answer.
"""

from __future__ import annotations

import logging
from typing import Any

from stellargate.core.usage import UsageRecord
from stellargate.settings import TracingSettings

log = logging.getLogger("stellargate.tracing")

OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}


class Tracing:
    """A usage observer that turns each finished call into spans."""

    def __init__(self, settings: TracingSettings, exporter: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
        from opentelemetry.trace import SpanKind, Status, StatusCode

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.endpoint, timeout=10)
        self._kind, self._status, self._code = SpanKind, Status, StatusCode
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}),
            sampler=TraceIdRatioBased(settings.sample_ratio),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        self._tracer = self.provider.get_tracer("stellargate")

    def __call__(self, rec: UsageRecord, ctx: Any) -> None:
        start = int(rec.created_at * 1e9)
        end = start + int(rec.latency_ms * 1e6)
        op = OPERATIONS.get(rec.endpoint, rec.endpoint)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": op,
            "gen_ai.request.model": rec.model,
            "http.response.status_code": rec.status,
            "stellargate.request_id": rec.request_id,
            "stellargate.dialect": rec.dialect,
            "stellargate.streamed": rec.streamed,
        }
        if rec.key_id:
            attrs["stellargate.key_id"] = rec.key_id
        if rec.provider:
            attrs["gen_ai.provider.name"] = rec.provider
        if rec.upstream_model:
            attrs["gen_ai.response.model"] = rec.upstream_model
        if rec.prompt_tokens or rec.completion_tokens:
            attrs["gen_ai.usage.input_tokens"] = rec.prompt_tokens
            attrs["gen_ai.usage.output_tokens"] = rec.completion_tokens
        if rec.ttft_ms is not None:
            attrs["stellargate.time_to_first_token_ms"] = rec.ttft_ms
        if rec.error_code:
            attrs["error.type"] = rec.error_code
        span = self._tracer.start_span(
            f"{op} {rec.model}", kind=self._kind.SERVER, attributes=attrs, start_time=start
        )
        if rec.error_code and rec.status >= 500:
            span.set_status(self._status(self._code.ERROR, rec.error_code))
        from opentelemetry import trace

        parent = trace.set_span_in_context(span)
        attempts = rec.meta.get("attempts") if isinstance(rec.meta, dict) else None
        if not attempts and rec.attempts and rec.provider:
            attempts = [{"provider": rec.provider, "deployment": f"{rec.provider}/{rec.upstream_model}",
                         "status": rec.status, "error": rec.error_code, "ms": rec.latency_ms}]  # fmt: skip
        t = start
        for i, a in enumerate(attempts or []):
            last = i == len(attempts or []) - 1
            a_end = end if last else min(end, t + int(float(a.get("ms") or 0) * 1e6))
            a_attrs: dict[str, Any] = {
                "gen_ai.operation.name": op,
                "gen_ai.request.model": rec.model,
                "gen_ai.provider.name": str(a.get("provider", "")),
                "stellargate.deployment": str(a.get("deployment", "")),
                "stellargate.attempt": i + 1,
            }
            if a.get("status") is not None:
                a_attrs["http.response.status_code"] = int(a["status"])
            if a.get("error"):
                a_attrs["error.type"] = str(a["error"])
            child = self._tracer.start_span(
                f"{op} {a.get('deployment', rec.model)}",
                context=parent,
                kind=self._kind.CLIENT,
                attributes=a_attrs,
                start_time=t,
            )
            child.end(end_time=a_end)
            t = a_end
        span.end(end_time=end)

    def shutdown(self) -> None:
        """Flush and stop the exporter thread (blocking: call it off the event loop)."""
        self.provider.shutdown()


def start_tracing(settings: TracingSettings) -> Tracing | None:
    if not settings.enabled:
        return None
    try:
        return Tracing(settings)
    except ImportError:
        log.error(
            "tracing.enabled is set but OpenTelemetry is not installed: pip install 'stellargate[otel]'"
        )
        return None
