"""Gemini's errors -> the gateway's error tree.

Gemini answers ``{"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT",
"details": [...]}}`` (Vertex wraps the same object in a one-element list). The canonical
``status`` string decides; the HTTP status is the fallback when the body is not Google's.

A bad API key is a 400 INVALID_ARGUMENT whose details carry ``ErrorInfo.reason`` API_KEY_INVALID:
that is the gateway's credential failing, not the client's request, so it is an upstream auth
error (502) like PERMISSION_DENIED / UNAUTHENTICATED, and its message is never passed on.
"""

from __future__ import annotations

import re
from typing import Any

from stellargate.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from stellargate.providers.base import UpstreamResponse
from stellargate.providers.errors_common import context_overflow, map_json_error, overflows

_BY_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_KEY_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")
# "The input token count (1200293) exceeds the maximum number of tokens allowed (1048576)."
_OVERFLOW = (
    re.compile(r"input token count \(?\d+\)? exceeds the maximum number of tokens allowed", re.IGNORECASE),
)


def _error_object(obj: Any) -> dict[str, Any]:
    if isinstance(obj, list) and len(obj) == 1:
        obj = obj[0]
    e = obj.get("error") if isinstance(obj, dict) else None
    return e if isinstance(e, dict) else {}


def _details(e: dict[str, Any]) -> list[dict[str, Any]]:
    d = e.get("details")
    return [x for x in d if isinstance(x, dict)] if isinstance(d, list) else []


def retry_delay(e: dict[str, Any]) -> float | None:
    """google.rpc.RetryInfo.retryDelay, a protobuf Duration such as "37s" or "1.5s"."""
    for d in _details(e):
        if str(d.get("@type", "")).endswith("google.rpc.RetryInfo"):
            m = _DURATION.match(str(d.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def _key_rejected(e: dict[str, Any]) -> bool:
    return any(
        str(d.get("@type", "")).endswith("google.rpc.ErrorInfo") and d.get("reason") in _KEY_REASONS
        for d in _details(e)
    )


def error_from_body(http_status: int, obj: Any, raw: bytes) -> GatewayError:
    e = _error_object(obj)
    given = e.get("code")
    code = given if isinstance(given, int) else http_status
    status = str(e.get("status") or _BY_HTTP.get(code) or _BY_HTTP.get(http_status, "UNKNOWN"))
    message = str(e.get("message") or f"The upstream answered with HTTP {http_status}.")
    kw: dict[str, Any] = {"upstream_status": http_status, "upstream_body": raw}
    if status in ("PERMISSION_DENIED", "UNAUTHENTICATED") or _key_rejected(e):
        # The message may describe (or quote part of) the gateway's provider key: never pass it on.
        return UpstreamAuthError("The upstream provider refused the gateway's credentials.", **kw)
    if status == "NOT_FOUND":
        return ModelNotFound(message, param="model", **kw)
    if status == "RESOURCE_EXHAUSTED":
        return RateLimited(message, code="upstream_rate_limited", retry_after=retry_delay(e), **kw)
    if status == "INVALID_ARGUMENT" and http_status == 400 and overflows(message, _OVERFLOW):
        return context_overflow(message, **kw)
    if status in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"):
        return InvalidRequest(message, status=413 if http_status == 413 else 400, **kw)
    if status == "UNAVAILABLE":
        return UpstreamUnavailable(message, **kw)
    if status == "DEADLINE_EXCEEDED":
        return UpstreamTimeout(message, **kw)
    return UpstreamError(message, **kw)  # INTERNAL, UNKNOWN, CANCELLED, ...


def map_error(resp: UpstreamResponse) -> GatewayError:
    return map_json_error(resp, error_from_body)
