"""Anthropic wire values shared by the dialect and the Anthropic provider: usage, stop reasons, ids."""

from __future__ import annotations

from typing import Any

import orjson

from stellargate.core.response import FinishReason
from stellargate.core.usage import Usage

STOP_REASONS: dict[FinishReason, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": "end_turn",
}


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def merge_usage(base: Usage | None, u: Any) -> Usage | None:
    """``base`` updated with the counts Anthropic's usage object ``u`` gives; counts it omits keep
    their value (a stream's ``message_delta`` repeats only some of ``message_start``'s)."""
    if not isinstance(u, dict):
        return base
    b = base or Usage()
    read = _int(u.get("cache_read_input_tokens"))
    created = _int(u.get("cache_creation_input_tokens"))
    inp = _int(u.get("input_tokens"))
    out = _int(u.get("output_tokens"))
    details = u.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else None
    read = b.cached_tokens if read is None else read
    created = b.cache_creation_tokens if created is None else created
    if inp is None:
        inp = b.prompt_tokens - b.cached_tokens - b.cache_creation_tokens
    return Usage(
        prompt_tokens=inp + read + created,  # Anthropic's input_tokens excludes cache reads and writes
        completion_tokens=b.completion_tokens if out is None else out,
        cached_tokens=read,
        cache_creation_tokens=created,
        reasoning_tokens=b.reasoning_tokens if thinking is None else thinking,
    )


def usage_from_json(u: Any) -> Usage | None:
    return merge_usage(None, u)


def usage_json(u: Usage | None) -> dict[str, Any]:
    u = u or Usage()
    return {
        "input_tokens": max(u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens, 0),
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cached_tokens,
        "output_tokens": u.completion_tokens,
    }


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else "msg_" + upstream_id


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as Anthropic's ``input`` object. Arguments that are not a JSON
    object (a model's malformed output) are kept, not lost, under ``_raw_arguments``."""
    if not arguments.strip():
        return {}
    try:
        v = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        v = None
    return v if isinstance(v, dict) else {"_raw_arguments": arguments}
