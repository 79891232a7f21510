"""The gateway's prompt count: made once per request and shared (limits reservation, context-window
check, a translated Anthropic stream's message_start, metering an upstream that reported nothing)."""

from __future__ import annotations

from typing import Any

import orjson

from stellargate.core.request import ChatRequest, Message, TextPart
from stellargate.core.stream import Finish, StreamStart, TextDelta, UsageReport
from stellargate.core.usage import Usage
from stellargate.dialects.anthropic import AnthropicDialect
from stellargate.dialects.openai import OpenAIDialect
from stellargate.dialects.sse import SSEDecoder
from stellargate.pipeline import estimate
from stellargate.pipeline.context import Context
from stellargate.pipeline.usage import final_usage
from stellargate.web import Request


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _ctx(text: str, target: Any = None) -> Context:
    req = ChatRequest(model="m", messages=[Message("user", [TextPart(text)])])
    http = Request({"method": "POST", "path": "/v1/chat/completions", "headers": []}, _receive)
    return Context(http=http, endpoint="chat", dialect=OpenAIDialect(), request=req, target=target)


class _Target:
    upstream_model = "gpt-4o"


async def test_a_reserved_count_is_reused_and_a_fresh_one_is_kept() -> None:
    ctx = _ctx("hello there")
    ctx.meta["reserved"] = {"prompt_tokens": 1234, "completion_tokens": 1, "cost_usd": 0.0}
    assert await estimate.count_prompt_tokens(ctx) == 1234  # the limits stage's, not counted again
    ctx = _ctx("漢字" * 75, target=_Target())
    n = await estimate.count_prompt_tokens(ctx)
    assert n > 60 and ctx.prompt_tokens == n  # BPE, where 4 characters a token would say 38
    assert ctx.counted_prompt_tokens() == n


def test_metering_without_upstream_usage_prefers_the_count() -> None:
    ctx = _ctx("x" * 400, target=_Target())
    ctx.attempts = 1
    assert final_usage(ctx) == (Usage(prompt_tokens=101), True)  # the 4-characters guess
    ctx.prompt_tokens = 7
    assert final_usage(ctx) == (Usage(prompt_tokens=7), True)


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    return [(ev.event or "", orjson.loads(ev.data)) for ev in SSEDecoder().feed(raw)]


def test_anthropic_stream_states_the_count_first_and_the_upstream_figures_last() -> None:
    d = AnthropicDialect()
    req = ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])])
    st = d.new_render_state(req)
    out = d.render_stream_event(StreamStart("c1", "gpt-4o", 0, prompt_tokens=42), st)
    out += d.render_stream_event(TextDelta("Hello"), st)
    out += d.render_stream_event(Finish("stop"), st)
    out += d.render_stream_event(UsageReport(Usage(prompt_tokens=40, completion_tokens=3)), st)
    out += d.render_stream_end(st)
    evs = dict((name, obj) for name, obj in _events(out) if name in ("message_start", "message_delta"))
    assert evs["message_start"]["message"]["usage"]["input_tokens"] == 42
    assert evs["message_delta"]["usage"]["input_tokens"] == 40
    assert evs["message_delta"]["usage"]["output_tokens"] == 3
    # An upstream that reports nothing: the count stands, never replaced by a zero.
    st = d.new_render_state(req)
    out = d.render_stream_event(StreamStart("c2", "gpt-4o", 0, prompt_tokens=42), st) + d.render_stream_end(
        st
    )
    evs = dict((name, obj) for name, obj in _events(out) if name in ("message_start", "message_delta"))
    assert evs["message_delta"]["usage"]["input_tokens"] == 42
