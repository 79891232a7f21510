"""Canonical stream events -> Anthropic's named SSE events, with explicit per-stream state.

Anthropic streams content as blocks, one open at a time: text runs and tool calls each get a
``content_block_start`` ... ``content_block_stop``. The stop reason and usage are held back until
the end, because ``message_delta`` carries both and canonical streams may report usage after the
finish (OpenAI sends a usage-only chunk last). Only choice 0 exists in Anthropic's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from stellargate.core.stream import (
    Finish,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from stellargate.core.usage import Usage
from stellargate.dialects.anthropic_wire import STOP_REASONS, message_id, usage_json
from stellargate.dialects.sse import encode


@dataclass(slots=True)
class RenderState:
    model: str
    id: str = ""
    started: bool = False
    block: int = -1  # index of the last block started
    open: Literal["text", "tool"] | None = None
    tool_blocks: dict[int, int] = field(default_factory=dict)  # tool_index -> block index
    stop_reason: str = "end_turn"
    usage: Usage | None = None
    prompt_tokens: int | None = None  # the gateway's count, until the upstream reports its own


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return encode(orjson.dumps(obj), name)


def _start(st: RenderState) -> bytes:
    st.started = True
    message: dict[str, Any] = {
        "id": st.id or message_id(""),
        "type": "message",
        "role": "assistant",
        "model": st.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        # Translated upstreams report usage at the end: Anthropic's SDKs and clients read the input
        # tokens here, so the gateway's own count stands in; message_delta carries the final counts.
        "usage": usage_json(Usage(prompt_tokens=st.prompt_tokens or 0)),
    }
    return _event("message_start", {"type": "message_start", "message": message})


def _close(st: RenderState) -> bytes:
    if st.open is None:
        return b""
    st.open = None
    return _event("content_block_stop", {"type": "content_block_stop", "index": st.block})


def _open(st: RenderState, kind: Literal["text", "tool"], block: dict[str, Any]) -> bytes:
    out = _close(st)
    st.block += 1
    st.open = kind
    return out + _event(
        "content_block_start", {"type": "content_block_start", "index": st.block, "content_block": block}
    )


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def render_event(ev: StreamEvent, st: RenderState) -> bytes:
    if isinstance(ev, StreamStart):
        st.id = message_id(ev.id)
        st.model = ev.model or st.model
        if ev.prompt_tokens is not None:
            st.prompt_tokens = ev.prompt_tokens
        return b"" if st.started else _start(st)
    if isinstance(ev, UsageReport):
        st.usage = ev.usage
        return b""
    if getattr(ev, "index", 0) != 0:
        return b""  # n > 1 choices have no Anthropic form; translated requests never ask for them
    out = b"" if st.started else _start(st)
    if isinstance(ev, TextDelta):
        if st.open != "text":
            out += _open(st, "text", {"type": "text", "text": ""})
        return out + _delta(st.block, {"type": "text_delta", "text": ev.text})
    if isinstance(ev, ToolCallStart):
        out += _open(st, "tool", {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}})
        st.tool_blocks[ev.tool_index] = st.block
        return out
    if isinstance(ev, ToolCallDelta):
        block = st.tool_blocks.get(ev.tool_index)
        if block is None:
            return out
        return out + _delta(block, {"type": "input_json_delta", "partial_json": ev.arguments})
    if isinstance(ev, Finish):
        st.stop_reason = STOP_REASONS[ev.reason]
    return out


def render_end(st: RenderState) -> bytes:
    out = (b"" if st.started else _start(st)) + _close(st)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": st.stop_reason, "stop_sequence": None},
        # Cumulative, as Anthropic's is; the SDKs fold its input and cache counts into the final
        # message, so the upstream's figures replace the estimate message_start gave (which stays
        # when the upstream reported none).
        "usage": usage_json(st.usage or Usage(prompt_tokens=st.prompt_tokens or 0)),
    }
    return out + _event("message_delta", delta) + _event("message_stop", {"type": "message_stop"})
