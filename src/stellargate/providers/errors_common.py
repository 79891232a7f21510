"""What every adapter does the same way when it reads an upstream's body or error: parsing JSON
that may not be JSON, and the ``Retry-After`` header.

Only the mechanics live here; which error a provider's status and body mean stays in that
provider's own module (``map_error`` / ``error_from_body`` beside each adapter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from stellargate.core.stream import StreamEvent, StreamFailed
from stellargate.errors import GatewayError, InvalidRequest, UpstreamError
from stellargate.providers.base import UpstreamResponse


def json_or_none(raw: bytes) -> Any:
    """The parsed body, or None when it is not JSON (an error page, a truncated body)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def not_json(raw: bytes) -> UpstreamError:
    return UpstreamError("The upstream returned a body that is not JSON.", upstream_body=raw)


def json_object(body: bytes, not_object: str) -> dict[str, Any]:
    """The body as a JSON object; an UpstreamError when it is not JSON, or (``not_object``) not an
    object."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise not_json(body) from None
    if not isinstance(obj, dict):
        raise UpstreamError(not_object, upstream_body=body)
    return obj


def answer_object(body: bytes, key: str) -> dict[str, Any]:
    """An answer's body as a JSON object that holds a list under ``key`` (``choices``, ``content``)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise not_json(body) from None
    if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
        raise UpstreamError(f"The upstream returned a response without {key}.", upstream_body=body)
    return obj


def stream_not_json(data: bytes) -> tuple[StreamEvent]:
    """The events of a stream event whose data is not JSON: the stream fails."""
    return (
        StreamFailed(UpstreamError("The upstream sent a stream event that is not JSON.", upstream_body=data)),
    )


def with_retry_after(err: GatewayError, header: str | None) -> GatewayError:
    """Take ``Retry-After`` (in seconds) into ``err.retry_after``; an HTTP date or anything
    unreadable leaves what the body said."""
    if header is not None:
        try:
            err.retry_after = float(header)
        except ValueError:
            pass
    return err


def map_json_error(
    resp: UpstreamResponse, from_body: Callable[[int, Any, bytes], GatewayError]
) -> GatewayError:
    """A provider's ``from_body(status, parsed body or None, raw body)``, with ``Retry-After``."""
    err = from_body(resp.status, json_or_none(resp.body), resp.body)
    return with_retry_after(err, resp.header("retry-after"))


# The gateway's code for "the prompt does not fit the model" (OpenAI's own, which clients already
# handle); pipeline/retry.py reads it as the ``context_window`` fallback class.
CONTEXT_OVERFLOW = "context_length_exceeded"


def overflows(message: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    """Whether an upstream's 400 message is one of its context-overflow wordings. Each adapter
    passes its own provider's patterns: they are specific sentences, so that no other 400 (a bad
    parameter, a too-large ``max_tokens`` alone) is ever taken for an overflow and sent elsewhere."""
    return any(p.search(message) for p in patterns)


def context_overflow(message: str, **kw: Any) -> InvalidRequest:
    """The gateway error for an upstream's overflow: still a 400 for the client, in its dialect."""
    return InvalidRequest(message, code=CONTEXT_OVERFLOW, param="messages", status=400, **kw)
