"""Anthropic's errors -> the gateway's error tree, from the HTTP status and the ``error.type``.

Anthropic answers ``{"type": "error", "error": {"type": ..., "message": ...}}`` both as an HTTP
error body and as the ``error`` event of a stream; the type names the class of failure more
precisely than the status (a 529 and an ``overloaded_error`` event mean the same thing).
"""

from __future__ import annotations

import re
from typing import Any

from stellargate.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from stellargate.providers.errors_common import context_overflow, json_or_none, overflows, with_retry_after

# The status Anthropic pairs with each error type, for errors that arrive inside a stream.
TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_STATUS_TYPE = {s: t for t, s in TYPE_STATUS.items()}
# Anthropic's context-overflow 400s (``invalid_request_error``, no dedicated type): the prompt alone
# ("prompt is too long: 210000 tokens > 200000 maximum"), and prompt plus ``max_tokens`` ("input
# length and `max_tokens` exceed context limit: 188240 + 21333 > 200000, decrease input length or
# `max_tokens` and try again"), both of which a model with a larger window may take.
_OVERFLOW = (
    re.compile(r"^prompt is too long:\s*\d+ tokens\s*>\s*\d+ maximum", re.IGNORECASE),
    re.compile(r"^input length and `?max_tokens`? exceed context limit:\s*\d+\s*\+\s*\d+\s*>\s*\d+", re.I),
)


def parse_error(raw: bytes) -> tuple[str | None, str | None]:
    """(error.type, error.message) of an Anthropic error body, or Nones when it is not one."""
    obj = json_or_none(raw)
    e = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(e, dict):
        return None, None
    t, m = e.get("type"), e.get("message")
    return (t if isinstance(t, str) else None), (m if isinstance(m, str) else None)


def map_error(status: int, raw: bytes, retry_after: str | None = None) -> GatewayError:
    kind, message = parse_error(raw)
    kind = kind or _STATUS_TYPE.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    err = _by_type(kind, status, message or f"The upstream answered with HTTP {status}.", raw)
    return with_retry_after(err, retry_after)


def _by_type(kind: str, status: int, message: str, raw: bytes) -> GatewayError:
    kw: dict[str, Any] = {"upstream_status": status, "upstream_body": raw}
    if kind in ("authentication_error", "permission_error"):
        # The message may name (part of) the gateway's provider key: never pass it on.
        return UpstreamAuthError("The upstream provider refused the gateway's credentials.", **kw)
    if kind == "billing_error":
        # The operator's account state is not the caller's business.
        return UpstreamError(
            "The upstream provider refused the request for billing reasons.",
            code="upstream_billing_error",
            **kw,
        )
    if kind == "not_found_error":
        if message.startswith("model:") or "model" in message.lower():
            return ModelNotFound(message, param="model", **kw)
        return UpstreamError(f"The upstream has no such resource (HTTP 404): {message}", **kw)
    if kind == "request_too_large":
        return PayloadTooLarge(message, **kw)
    if kind == "rate_limit_error":
        return RateLimited(message, code="upstream_rate_limited", **kw)
    if kind == "overloaded_error":
        return UpstreamUnavailable(message, code="upstream_overloaded", **kw)
    if kind == "timeout_error":
        return UpstreamTimeout(message, **kw)
    if kind == "invalid_request_error" and status == 400 and overflows(message, _OVERFLOW):
        return context_overflow(message, **kw)
    if kind == "invalid_request_error" or 400 <= status < 500:
        return InvalidRequest(message, status=status if status in (413, 422) else 400, **kw)
    return UpstreamError(message, **kw)


def stream_error(data: bytes) -> GatewayError:
    """The error an ``event: error`` of a stream carries (its status is implied by its type)."""
    kind, _ = parse_error(data)
    return map_error(TYPE_STATUS.get(kind or "", 500), data)
