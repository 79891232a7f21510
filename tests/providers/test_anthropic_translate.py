"""Pure translation tests of the Anthropic adapter: canonical <-> Anthropic wire, no network."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stellargate.core.request import (
    ChatRequest,
    ImagePart,
    Message,
    OtherPart,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)
from stellargate.core.stream import (
    Finish,
    StreamFailed,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    UsageReport,
)
from stellargate.core.usage import Usage
from stellargate.dialects.sse import SSEDecoder, SSEEvent
from stellargate.errors import (
    InvalidRequest,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from stellargate.providers.anthropic import AnthropicAdapter
from stellargate.providers.anthropic_request import DEFAULT_MAX_TOKENS, JSON_TOOL
from stellargate.providers.base import PassthroughState, Target, UpstreamResponse
from stellargate.settings import ModelSettings, ProviderSettings

A = AnthropicAdapter()


def target(max_output: int | None = None, **provider: Any) -> Target:
    settings = ProviderSettings(type="anthropic", api_key="sk-ant-k", **provider)
    model = ModelSettings(name="m", provider="p", model="claude-x", max_output_tokens=max_output)
    return Target("p", settings, A, "https://api.anthropic.test", "claude-x", "m", model)


def req(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), **kw)


def body(r: ChatRequest, t: Target | None = None) -> dict[str, Any]:
    out = orjson.loads(A.translate_request(r, t or target()).body)
    assert isinstance(out, dict)
    return out


def u(text: str) -> Message:
    return Message("user", [TextPart(text)])


def events(raw: bytes) -> list[SSEEvent]:
    return SSEDecoder().feed(raw)


def sse(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


# -- requests ------------------------------------------------------------------------------------


def test_request_url_headers_and_max_tokens() -> None:
    up = A.translate_request(req(u("hi")), target())
    assert up.url == "https://api.anthropic.test/v1/messages"
    assert up.headers["x-api-key"] == "sk-ant-k"
    assert up.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in up.headers
    assert body(req(u("hi")))["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body(req(u("hi")), target(max_output=321))["max_tokens"] == 321
    assert body(req(u("hi"), max_tokens=5), target(max_output=321))["max_tokens"] == 5


def test_provider_headers_override_the_version() -> None:
    t = target(headers={"Anthropic-Version": "2026-10-21", "anthropic-beta": "a-1"})
    up = A.translate_request(req(u("hi")), t)
    assert up.headers["anthropic-version"] == "2026-10-21"
    assert up.headers["anthropic-beta"] == "a-1"


def test_system_developer_and_merged_turns() -> None:
    r = req(
        Message("system", [TextPart("sys one")]),
        u("a"),
        Message("developer", [TextPart("dev two")]),
        u("b"),
        Message("assistant", [TextPart("x")]),
        Message("assistant", [TextPart("")]),
        u(""),
    )
    b = body(r)
    assert b["system"] == [{"type": "text", "text": "sys one"}, {"type": "text", "text": "dev two"}]
    assert b["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "x"}]},
    ]
    assert body(req(Message("system", [TextPart("only")]), u("q")))["system"] == "only"


def test_tool_calls_and_results_become_blocks() -> None:
    r = req(
        u("go"),
        Message(
            "assistant",
            [TextPart("calling")],
            tool_calls=[ToolCall("c1", "f", '{"a": 1}'), ToolCall("c2", "g", "")],
        ),
        Message("tool", [TextPart("r1")], tool_call_id="c1"),
        Message("tool", [TextPart("r2")], tool_call_id="c2"),
        u("and then?"),
    )
    msgs = body(r)["messages"]
    assert msgs[1]["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
        {"type": "tool_use", "id": "c2", "name": "g", "input": {}},
    ]
    assert msgs[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "c1", "content": "r1"},
            {"type": "tool_result", "tool_use_id": "c2", "content": "r2"},
            {"type": "text", "text": "and then?"},
        ],
    }


def test_bad_tool_arguments_and_unsupported_parts_are_400() -> None:
    bad = req(u("go"), Message("assistant", tool_calls=[ToolCall("c1", "f", "{not json")]))
    with pytest.raises(InvalidRequest) as e:
        A.translate_request(bad, target())
    assert e.value.param == "messages[1].tool_calls[0].function.arguments"
    audio = req(Message("user", [OtherPart({"type": "input_audio", "input_audio": {}})]))
    with pytest.raises(InvalidRequest) as e:
        A.translate_request(audio, target())
    assert e.value.param == "messages[0].content[0].type"
    with pytest.raises(InvalidRequest):
        A.translate_request(req(Message("system", [TextPart("s")])), target())


def test_images() -> None:
    r = req(
        Message("user", [ImagePart(data="QUJD", media_type="image/webp"), ImagePart(url="https://x/y.png")])
    )
    assert body(r)["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
    ]


def test_tools_and_tool_choice() -> None:
    tools = [Tool("f", "does f", {"type": "object", "properties": {}}, strict=True), Tool("g")]
    b = body(req(u("x"), tools=tools, tool_choice=ToolChoice("function", "g"), parallel_tool_calls=False))
    assert b["tools"] == [
        {
            "name": "f",
            "description": "does f",
            "input_schema": {"type": "object", "properties": {}},
            "strict": True,
        },
        {"name": "g", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert b["tool_choice"] == {"type": "tool", "name": "g", "disable_parallel_tool_use": True}
    assert body(req(u("x"), tools=tools, parallel_tool_calls=False))["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }
    assert body(req(u("x"), tools=tools, tool_choice=ToolChoice("none"), parallel_tool_calls=False))[
        "tool_choice"
    ] == {"type": "none"}
    assert body(req(u("x"), tools=tools, tool_choice=ToolChoice("required")))["tool_choice"] == {
        "type": "any"
    }
    assert "tool_choice" not in body(req(u("x"), tool_choice=ToolChoice("auto")))  # no tools, no choice


def test_json_schema_closes_every_object() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "c": {"type": "array", "items": {"type": "object", "properties": {}}},
        },
        "additionalProperties": False,
    }
    fmt = body(req(u("x"), response_format=ResponseFormat("json_schema", schema, "s")))["output_config"][
        "format"
    ]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["properties"]["a"]["additionalProperties"] is False
    assert fmt["schema"]["properties"]["c"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["a"]  # the client's schema is not mutated


def test_json_object_forces_the_json_tool() -> None:
    b = body(req(u("x"), response_format=ResponseFormat("json_object")))
    assert b["tools"][0]["name"] == JSON_TOOL
    assert b["tool_choice"] == {"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": True}
    with pytest.raises(InvalidRequest):
        body(req(u("x"), response_format=ResponseFormat("json_object"), tools=[Tool("f")]))


def test_parameters() -> None:
    b = body(
        req(
            u("x"),
            temperature=0.5,
            top_p=0.5,
            stop=["S"],
            user="me",
            seed=1,
            stream=True,
            extra={"top_k": 5, "store": True, "thinking": {"type": "enabled", "budget_tokens": 2000}},
        )
    )
    assert {k: b[k] for k in ("temperature", "top_p", "stop_sequences", "metadata", "top_k", "stream")} == {
        "temperature": 0.5,
        "top_p": 0.5,
        "stop_sequences": ["S"],
        "metadata": {"user_id": "me"},
        "top_k": 5,
        "stream": True,
    }
    assert b["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert "store" not in b
    assert "seed" not in b
    for kw in ({"n": 3}, {"temperature": 1.2}, {"top_logprobs": 2}, {"frequency_penalty": 1.0}):
        with pytest.raises(InvalidRequest) as e:
            body(req(u("x"), **kw))
        assert e.value.param == next(iter(kw))
    body(req(u("x"), n=1, logprobs=False, presence_penalty=0.0))  # neutral values are fine


# -- responses -----------------------------------------------------------------------------------


def response(obj: dict[str, Any]) -> UpstreamResponse:
    return UpstreamResponse(200, {}, orjson.dumps(obj))


def test_response_with_text_tools_and_cache_usage() -> None:
    obj = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": [1]}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
            "output_tokens": 7,
            "output_tokens_details": {"thinking_tokens": 3},
        },
    }
    r = A.translate_response(response(obj), req(u("x")), target())
    c = r.choices[0]
    assert (r.id, r.model, c.content, c.finish_reason) == ("msg_1", "claude-x", "Hi", "tool_calls")
    assert c.tool_calls == [ToolCall("toolu_1", "f", '{"a":[1]}')]
    assert r.usage == Usage(
        prompt_tokens=130,
        completion_tokens=7,
        cached_tokens=100,
        cache_creation_tokens=20,
        reasoning_tokens=3,
    )


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
    ],
)
def test_stop_reasons(stop: str, finish: str) -> None:
    obj = {"id": "m", "content": [], "stop_reason": stop, "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert A.translate_response(response(obj), req(u("x")), target()).choices[0].finish_reason == finish


def test_json_tool_answer_becomes_text() -> None:
    obj = {
        "id": "m",
        "content": [{"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {"k": "v"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    r = A.translate_response(
        response(obj), req(u("x"), response_format=ResponseFormat("json_object")), target()
    )
    assert (r.choices[0].content, r.choices[0].finish_reason, r.choices[0].tool_calls) == (
        '{"k":"v"}',
        "stop",
        [],
    )


def test_response_that_is_not_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        A.translate_response(UpstreamResponse(200, {}, b"{nope"), req(u("x")), target())


# -- streams -------------------------------------------------------------------------------------


def test_stream_translation_counts_tool_blocks_only() -> None:
    raw = b"".join(
        [
            sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_s",
                        "model": "claude-x",
                        "content": [],
                        "usage": {"input_tokens": 5, "cache_read_input_tokens": 50, "output_tokens": 1},
                    },
                },
            ),
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "hm"},
                },
            ),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse("ping", {"type": "ping"}),
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
            ),
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
            ),
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 2,
                    "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": ""},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
                },
            ),
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 3,
                    "content_block": {"type": "tool_use", "id": "t2", "name": "g", "input": {}},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 3,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                },
            ),
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 9},
                },
            ),
            sse("message_stop", {"type": "message_stop"}),
        ]
    )
    st = A.new_stream_state(req(u("x")))
    out = [e for ev in events(raw) for e in A.translate_stream_event(ev, st)]
    assert isinstance(out[0], StreamStart)
    assert out[0].id == "msg_s"
    assert out[1:] == [
        TextDelta("Hi"),
        ToolCallStart(0, "t1", "f"),
        ToolCallDelta(0, '{"a":'),
        ToolCallStart(1, "t2", "g"),
        ToolCallDelta(1, "{}"),
        Finish("tool_calls"),
        UsageReport(Usage(prompt_tokens=55, completion_tokens=9, cached_tokens=50)),
    ]


def test_stream_json_tool_becomes_text_and_error_event_fails() -> None:
    st = A.new_stream_state(req(u("x"), response_format=ResponseFormat("json_object")))
    raw = b"".join(
        [
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL, "input": {}},
                },
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": "{}"},
                },
            ),
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 1},
                },
            ),
            sse("error", {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}),
        ]
    )
    out = [e for ev in events(raw) for e in A.translate_stream_event(ev, st)]
    assert out[:2] == [TextDelta("{}"), Finish("stop")]
    assert isinstance(out[-1], StreamFailed)
    assert isinstance(out[-1].error, RateLimited)


def test_passthrough_reads_usage_and_raises_on_error_events() -> None:
    ps = PassthroughState(strip_usage=False)
    start = sse(
        "message_start",
        {
            "type": "message_start",
            "message": {"usage": {"input_tokens": 3, "cache_creation_input_tokens": 40, "output_tokens": 1}},
        },
    )
    delta = sse("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 8}})
    for ev in events(start + delta):
        assert A.passthrough_stream_event(ev, ps) == ev.raw
    assert ps.usage == Usage(prompt_tokens=43, completion_tokens=8, cache_creation_tokens=40)
    (error,) = events(sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "o"}}))
    with pytest.raises(UpstreamUnavailable):
        A.passthrough_stream_event(error, ps)


def test_passthrough_request_rewrites_only_the_model_and_forwards_version_and_betas() -> None:
    raw = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "top_k": 3}
    r = ChatRequest(
        model="m",
        messages=[],
        dialect="anthropic",
        raw=raw,
        headers={"anthropic-version": "2026-10-21", "anthropic-beta": "b-2"},
    )
    up, _ = A.passthrough_request(r, target(headers={"anthropic-beta": "b-1"}))
    assert orjson.loads(up.body) == {**raw, "model": "claude-x"}
    assert up.headers["anthropic-version"] == "2026-10-21"
    assert up.headers["anthropic-beta"] == "b-1,b-2"


# -- errors --------------------------------------------------------------------------------------


def err(status: int, type_: str, message: str = "msg", headers: dict[str, str] | None = None) -> Any:
    b = orjson.dumps({"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_1"})
    return A.map_error(UpstreamResponse(status, headers or {}, b))


def test_error_mapping() -> None:
    e = err(400, "invalid_request_error", "max_tokens: Field required")
    assert (type(e), e.http_status, e.message) == (InvalidRequest, 400, "max_tokens: Field required")
    for status, kind in ((401, "authentication_error"), (403, "permission_error")):
        e = err(status, kind, "invalid x-api-key sk-ant-secret")
        assert isinstance(e, UpstreamAuthError)
        assert e.http_status == 502
        assert "sk-ant" not in e.message
        assert e.upstream_body is not None
    assert isinstance(err(404, "not_found_error", "model: claude-9"), ModelNotFound)
    other = err(404, "not_found_error", "Not found")
    assert (type(other), other.http_status) == (UpstreamError, 502)
    assert isinstance(err(413, "request_too_large"), PayloadTooLarge)
    rl = err(429, "rate_limit_error", headers={"retry-after": "12"})
    assert (type(rl), rl.http_status, rl.retry_after) == (RateLimited, 429, 12.0)
    ov = err(529, "overloaded_error")
    assert (type(ov), ov.http_status) == (UpstreamUnavailable, 503)
    assert err(500, "api_error").http_status == 502
    assert isinstance(err(504, "timeout_error"), UpstreamTimeout)
    html = A.map_error(UpstreamResponse(502, {}, b"<html>bad gateway</html>"))
    assert html.http_status == 502
