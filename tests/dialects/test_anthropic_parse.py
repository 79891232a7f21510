"""Pure tests of the Anthropic dialect: parsing into the canonical request, rendering out of it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stellargate.core.request import (
    ImagePart,
    Message,
    OtherPart,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolChoice,
)
from stellargate.core.response import ChatResponse, Choice
from stellargate.core.stream import Finish, StreamStart, TextDelta, ToolCallDelta, ToolCallStart, UsageReport
from stellargate.core.usage import Usage
from stellargate.dialects.anthropic import AnthropicDialect
from stellargate.dialects.anthropic_parse import parse_messages_request, untranslatable
from stellargate.dialects.sse import SSEDecoder
from stellargate.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

D = AnthropicDialect()


def parse(**kw: Any) -> Any:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **kw}
    return parse_messages_request(body, {"anthropic-version": "2026-10-21", "x-api-key": "sg-secret"})


def test_mapping_to_the_canonical_request() -> None:
    r = parse(
        system=[
            {"type": "text", "text": "s1"},
            {"type": "text", "text": "s2", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "q"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "QQ=="},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "tu1", "name": "f", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and"},
                    {"type": "tool_result", "tool_use_id": "tu1", "content": "r1", "is_error": True},
                    {"type": "document", "source": {"type": "text", "data": "d"}},
                ],
            },
        ],
        tools=[
            {"name": "f", "input_schema": {"type": "object"}, "strict": True},
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["X"],
        temperature=0.5,
        top_p=0.9,
        top_k=7,
        metadata={"user_id": "u"},
        stream=True,
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        cache_control={"type": "ephemeral"},
        mcp_servers=[],
    )
    assert r.messages[0] == Message("system", [TextPart("s1"), TextPart("s2")])
    assert r.messages[1] == Message("user", [TextPart("q"), ImagePart(data="QQ==", media_type="image/png")])
    assert r.messages[2] == Message(
        "assistant", [TextPart("calling")], tool_calls=[ToolCall("tu1", "f", '{"a":1}')]
    )
    assert r.messages[3] == Message("tool", [TextPart("Error: "), TextPart("r1")], tool_call_id="tu1")
    assert r.messages[4].role == "user"
    assert r.messages[4].content[0] == TextPart("and")
    assert isinstance(r.messages[4].content[1], OtherPart)
    assert [t.name for t in r.tools] == ["f"]  # the server tool stays in raw only
    assert (r.tool_choice, r.parallel_tool_calls) == (ToolChoice("required"), False)
    assert r.response_format == ResponseFormat("json_schema", {"type": "object"}, "response")
    assert (r.stop, r.temperature, r.top_p, r.user, r.stream, r.max_tokens) == (
        ["X"],
        0.5,
        0.9,
        "u",
        True,
        10,
    )
    assert r.extra == {"top_k": 7, "mcp_servers": []}  # hints dropped, the rest kept to be refused by name
    assert (r.dialect, r.headers) == ("anthropic", {"anthropic-version": "2026-10-21"})
    assert r.raw["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    err = untranslatable(r)
    assert err is not None
    assert err.param == "tools.1"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_tokens": None}, "max_tokens: Input should be a valid integer"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        ({"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        (
            {"messages": [{"role": "user", "content": ""}]},
            "messages.0: all messages must have non-empty content",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "messages: text content blocks must be non-empty",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages.0.content.0.type: Input tag",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]},
            "messages.0.content.0: 'tool_result' blocks are not allowed in 'assistant' messages",
        ),
        ({"temperature": 2}, "temperature: Input should be less than or equal to 1"),
        ({"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.type: Input tag 'function'"),
        ({"tools": [{"name": "f"}]}, "tools.0.custom.input_schema: Field required"),
        ({"system": [{"type": "image"}]}, "system.0.type: Input should be 'text'"),
        ({"stream": "yes"}, "stream: Input should be a valid boolean"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
    ],
)
def test_validation(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse(**kw)
    assert e.value.message.startswith(message), e.value.message
    assert e.value.http_status == 400
    assert e.value.param == message.split(":")[0]


def test_required_fields_and_final_assistant_prefill() -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_messages_request({"model": "m", "messages": []}, {})
    assert e.value.message == "max_tokens: Field required"
    r = parse_messages_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}]}, {}, count_only=True
    )
    assert r.max_tokens is None
    r = parse(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}])
    assert [m.role for m in r.messages] == ["user"]


def test_api_key_from_either_header() -> None:
    class Req:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    assert D.api_key(Req({"x-api-key": "sg-a", "authorization": "Bearer sg-b"})) == "sg-a"  # type: ignore[arg-type]
    assert D.api_key(Req({"authorization": "Bearer sg-b"})) == "sg-b"  # type: ignore[arg-type]
    assert D.api_key(Req({})) is None  # type: ignore[arg-type]


def test_render_response() -> None:
    resp = ChatResponse(
        "chatcmpl-1",
        "gpt-4o",
        0,
        [Choice(0, "hi", [ToolCall("c1", "f", '{"a": 1}'), ToolCall("c2", "g", "oops")], "tool_calls")],
        Usage(prompt_tokens=100, completion_tokens=5, cached_tokens=60, cache_creation_tokens=10),
    )
    out = orjson.loads(D.render_response(resp, parse()))
    assert out == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "c2", "name": "g", "input": {"_raw_arguments": "oops"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 10,
            "cache_read_input_tokens": 60,
            "output_tokens": 5,
        },
    }


def test_render_stream() -> None:
    st = D.new_render_state(parse())
    evs = [
        StreamStart("x1", "gpt-4o", 0),
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallStart(0, "c1", "f"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ":1}"),
        ToolCallStart(1, "c2", "g"),
        Finish("tool_calls"),
        UsageReport(Usage(prompt_tokens=9, completion_tokens=4)),
    ]
    raw = b"".join(D.render_stream_event(e, st) for e in evs) + D.render_stream_end(st)
    decoded = SSEDecoder().feed(raw)
    objs = [orjson.loads(e.data) for e in decoded]
    assert [e.event for e in decoded] == [o["type"] for o in objs]
    assert [(o["type"], o.get("index")) for o in objs] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert objs[0]["message"]["id"] == "msg_x1"
    assert objs[5]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert objs[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert objs[-2]["usage"]["input_tokens"] == 9
    assert objs[-2]["usage"]["output_tokens"] == 4


@pytest.mark.parametrize(
    ("err", "status", "type_"),
    [
        (InvalidRequest("x"), 400, "invalid_request_error"),
        (ModelNotFound("x"), 404, "not_found_error"),
        (PayloadTooLarge("x"), 413, "request_too_large"),
        (RateLimited("x", retry_after=2.2), 429, "rate_limit_error"),
        (GatewayError("x"), 500, "api_error"),
        (UpstreamError("x"), 502, "api_error"),
        (UpstreamUnavailable("x"), 503, "overloaded_error"),
        (UpstreamTimeout("x"), 504, "timeout_error"),
    ],
)
def test_render_error(err: GatewayError, status: int, type_: str) -> None:
    got, headers, body = D.render_error(err, "req_9")
    assert got == status
    assert headers["request-id"] == "req_9"
    assert orjson.loads(body) == {
        "type": "error",
        "error": {"type": type_, "message": "x"},
        "request_id": "req_9",
    }
    if status == 429:
        assert headers["retry-after"] == "2"
    (ev,) = SSEDecoder().feed(D.render_stream_error(err, "req_9"))
    assert ev.event == "error"
    assert orjson.loads(ev.data)["error"]["type"] == type_
