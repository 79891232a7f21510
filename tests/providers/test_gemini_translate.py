"""The Gemini adapter's pure translation: schema conversion, request bodies, answers, streams, errors."""

from __future__ import annotations

import json
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
from stellargate.dialects.sse import SSEEvent
from stellargate.errors import (
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from stellargate.providers.base import Target, UpstreamResponse
from stellargate.providers.gemini import GeminiAdapter
from stellargate.providers.gemini_request import request_body
from stellargate.providers.gemini_response import StreamState, chat_response, stream_events
from stellargate.providers.gemini_schema import KEPT, to_gemini_schema
from stellargate.settings import ProviderSettings

A = GeminiAdapter()


def target(
    model: str = "gemini-2.0-flash", base: str = "https://generativelanguage.googleapis.com"
) -> Target:
    s = ProviderSettings(type="gemini", api_key="AIza-secret")  # type: ignore[arg-type]
    return Target("g", s, A, base, model, "m")


def req(*messages: Message, **kw: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages), **kw)


def user(text: str) -> Message:
    return Message("user", [TextPart(text)])


# -- schema ----------------------------------------------------------------------------------


def test_schema_keeps_the_allow_list_and_drops_the_rest() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "title": "Args",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "City", "minLength": 1, "pattern": "^[A-Z]"},
            "when": {"type": "string", "format": "date-time"},
            "site": {"type": "string", "format": "uri"},
            "unit": {"enum": ["C", "F"], "default": "C"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7, "exclusiveMaximum": 8, "format": "int32"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": True},
            "note": {"type": ["string", "null"]},
            "maybe": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "fixed": {"const": "yes"},
        },
        "required": ["city", "ghost"],
        "strict": True,
    }
    out = to_gemini_schema(schema)
    assert out == {
        "type": "OBJECT",
        "title": "Args",
        "properties": {
            "city": {"type": "STRING", "description": "City", "minLength": 1, "pattern": "^[A-Z]"},
            "when": {"type": "STRING", "format": "date-time"},
            "site": {"type": "STRING"},
            "unit": {"type": "STRING", "enum": ["C", "F"], "default": "C"},
            "days": {"type": "INTEGER", "minimum": 1, "maximum": 7, "format": "int32"},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": 1},
            "note": {"type": "STRING", "nullable": True},
            "maybe": {"type": "NUMBER", "nullable": True},
            "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
            "fixed": {"type": "STRING", "enum": ["yes"]},
        },
        "required": ["city"],
    }

    def keys(s: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(s, dict):
            for k, v in s.items():
                found.add(k)
                found |= keys(v) if k != "properties" else set().union(*(keys(p) for p in v.values()))
        elif isinstance(s, list):
            found = set().union(*(keys(x) for x in s))
        return found

    assert keys(out) <= KEPT
    assert schema["additionalProperties"] is False  # the input is not modified


def test_schema_inlines_references_and_stops_recursion() -> None:
    schema = {
        "type": "object",
        "properties": {"pet": {"$ref": "#/$defs/Pet"}, "tree": {"$ref": "#/definitions/Node"}},
        "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "definitions": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/Node"}}}},
    }
    out = to_gemini_schema(schema)
    assert out["properties"]["pet"] == {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}}
    depth, node = 0, out["properties"]["tree"]
    while "properties" in node:
        node, depth = node["properties"]["child"], depth + 1
    assert 5 < depth < 40
    assert "$defs" not in json.dumps(out)


# -- requests --------------------------------------------------------------------------------


def test_url_headers_and_model_path() -> None:
    up = A.translate_request(req(user("hi"), stream=True), target())
    assert up.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    )
    assert up.headers["x-goog-api-key"] == "AIza-secret"
    assert "authorization" not in up.headers
    assert A.translate_request(req(user("x")), target("tunedModels/mine", base="http://h/v1")).url == (
        "http://h/v1/tunedModels/mine:generateContent"
    )


def test_messages_roles_system_and_merging() -> None:
    body = request_body(
        req(
            Message("system", [TextPart("be brief")]),
            Message("developer", [TextPart("and kind")]),
            user("one"),
            user("two"),
            Message("assistant", [TextPart("ok")]),
            Message("assistant", [TextPart("")]),
            user("three"),
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}, {"text": "and kind"}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "ok"}]},
        {"role": "user", "parts": [{"text": "three"}]},
    ]


def test_images_audio_and_unsupported_parts() -> None:
    m = Message(
        "user",
        [
            TextPart("look"),
            ImagePart(data="iVBOR", media_type="image/png"),
            ImagePart(url="data:image/jpeg;base64,/9j/"),
            ImagePart(url="gs://bucket/cat.png", media_type="image/png"),
            OtherPart({"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}),
        ],
    )
    parts = request_body(req(m))["contents"][0]["parts"]
    assert parts[1:] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
    ]
    with pytest.raises(InvalidRequest) as e:
        request_body(req(Message("user", [OtherPart({"type": "refusal"})])))
    assert e.value.param == "messages[0].content[0]"


def test_tool_calls_results_and_signatures() -> None:
    sig = "c2lnbmF0dXJl"
    body = request_body(
        req(
            user("call both"),
            Message(
                "assistant",
                tool_calls=[
                    ToolCall(f"call_a~ts~{sig}", "get_weather", '{"city":"Paris"}'),
                    ToolCall("call_b", "get_time", ""),
                ],
            ),
            Message("tool", [TextPart("sunny")], tool_call_id=f"call_a~ts~{sig}"),
            Message("tool", [TextPart('{"time": "noon"}')], tool_call_id="call_b"),
        )
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"},
                "thoughtSignature": sig,
            },
            {"functionCall": {"name": "get_time", "args": {}, "id": "call_b"}},
        ],
    }
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}, "id": "call_a"}},
            {"functionResponse": {"name": "get_time", "response": {"time": "noon"}, "id": "call_b"}},
        ],
    }
    with pytest.raises(InvalidRequest) as e:
        request_body(req(user("x"), Message("tool", [TextPart("r")], tool_call_id="nope")))
    assert e.value.param == "messages[1].tool_call_id"


def test_tools_choice_format_and_generation_config() -> None:
    weather = Tool(
        "get_weather",
        "Weather",
        {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": False},
    )
    noargs = Tool("ping", None, {"type": "object", "properties": {}})
    body = request_body(
        req(
            user("x"),
            tools=[weather, noargs],
            tool_choice=ToolChoice("function", "get_weather"),
            response_format=ResponseFormat(
                "json_schema",
                {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
            ),
            temperature=0.2,
            top_p=0.9,
            max_tokens=50,
            stop=["END"],
            seed=7,
            n=2,
            presence_penalty=0.1,
            frequency_penalty=0.3,
            logprobs=True,
            top_logprobs=3,
            logit_bias={"1": 1.0},
            user="u",
            parallel_tool_calls=False,
            extra={"top_k": 40, "reasoning_effort": "low", "metadata": {"x": 1}},
        )
    )
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}},
                },
                {"name": "ping"},
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
        "seed": 7,
        "candidateCount": 2,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.3,
        "responseLogprobs": True,
        "logprobs": 3,
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}}},
        "topK": 40,
        "thinkingConfig": {"thinkingBudget": 1024},
    }
    assert set(body) == {"contents", "tools", "toolConfig", "generationConfig"}
    modes = {
        m: request_body(req(user("x"), tools=[weather], tool_choice=ToolChoice(m)))["toolConfig"]  # type: ignore[arg-type]
        for m in ("auto", "none", "required")
    }
    assert modes == {
        "auto": {"functionCallingConfig": {"mode": "AUTO"}},
        "none": {"functionCallingConfig": {"mode": "NONE"}},
        "required": {"functionCallingConfig": {"mode": "ANY"}},
    }
    js = request_body(req(user("x"), response_format=ResponseFormat("json_object")))["generationConfig"]
    assert js == {"responseMimeType": "application/json"}


def test_identity_path_forwards_the_body_unchanged() -> None:
    raw = {"contents": [{"parts": [{"text": "hi"}]}], "safety_settings": [], "generationConfig": {"topK": 3}}
    r = ChatRequest(model="m", messages=[user("hi")], dialect="gemini", raw={**raw, "model": "models/alias"})
    up, state = A.passthrough_request(r, target())
    assert orjson.loads(up.body) == raw  # all but `model`: the path names the upstream model
    assert up.url.endswith("/v1beta/models/gemini-2.0-flash:generateContent")
    assert not state.strip_usage
    usage = A.passthrough_usage(orjson.dumps({"candidates": [], "usageMetadata": {"promptTokenCount": 3}}))
    assert usage is not None and usage.prompt_tokens == 3


# -- responses -------------------------------------------------------------------------------

USAGE = {
    "promptTokenCount": 10,
    "candidatesTokenCount": 4,
    "thoughtsTokenCount": 6,
    "cachedContentTokenCount": 2,
    "totalTokenCount": 20,
}


def test_response_text_calls_usage_and_finish() -> None:
    obj = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "thinking", "thought": True}, {"text": "hi"}],
                },
                "finishReason": "STOP",
                "index": 0,
            },
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "U0lH"},
                        {"functionCall": {"name": "g", "args": {}, "id": "given"}},
                    ],
                },
                "finishReason": "STOP",
                "index": 1,
            },
            {"finishReason": "SAFETY", "index": 2},
            {"content": {"parts": [{"text": "cut"}]}, "finishReason": "MAX_TOKENS", "index": 3},
        ],
        "usageMetadata": USAGE,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "rid",
    }
    r = chat_response(obj, "fallback")
    assert (r.id, r.model) == ("rid", "gemini-2.5-flash")
    c0, c1, c2, c3 = r.choices
    assert (c0.content, c0.finish_reason) == ("hi", "stop")
    assert (c1.content, c1.finish_reason) == (None, "tool_calls")
    f, g = c1.tool_calls
    assert f.id.startswith("call_") and f.id.endswith("~ts~U0lH") and f.arguments == '{"a":1}'
    assert g.id == "given"
    assert (c2.content, c2.finish_reason) == (None, "content_filter")
    assert (c3.content, c3.finish_reason) == ("cut", "length")
    u = r.usage
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.reasoning_tokens, u.cached_tokens) == (10, 10, 6, 2)
    blocked = chat_response({"promptFeedback": {"blockReason": "SAFETY"}}, "m")
    assert [(c.index, c.finish_reason) for c in blocked.choices] == [(0, "content_filter")]


def ev(obj: Any) -> SSEEvent:
    return SSEEvent(data=orjson.dumps(obj))


def test_stream_events() -> None:
    st = A.new_stream_state(req(user("x"), stream=True))
    assert isinstance(st, StreamState)
    first = A.translate_stream_event(
        ev(
            {
                "candidates": [{"content": {"parts": [{"text": "Hel"}]}, "index": 0}],
                "usageMetadata": {"promptTokenCount": 10},
                "responseId": "r1",
                "modelVersion": "gemini-x",
            }
        ),
        st,
    )
    assert isinstance(first[0], StreamStart) and (first[0].id, first[0].model) == ("r1", "gemini-x")
    assert first[1:] == [TextDelta("Hel", 0)]
    calls = A.translate_stream_event(
        ev(
            {
                "candidates": [
                    {
                        "content": {
                            "parts": [{"text": "lo"}, {"functionCall": {"name": "f", "args": {"x": "y"}}}]
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": USAGE,
            }
        ),
        st,
    )
    assert calls[0] == TextDelta("lo", 0)
    assert isinstance(calls[1], ToolCallStart) and (calls[1].tool_index, calls[1].name) == (0, "f")
    assert calls[2] == ToolCallDelta(0, '{"x":"y"}', 0)
    assert calls[3] == Finish("tool_calls", 0)
    assert isinstance(calls[4], UsageReport) and calls[4].usage.completion_tokens == 10
    # Usage is reported once, even though every later event repeats it.
    assert A.translate_stream_event(ev({"usageMetadata": USAGE}), st) == []
    bad = A.translate_stream_event(SSEEvent(data=b'{"candidates": [tru'), st)
    assert isinstance(bad[0], StreamFailed) and isinstance(bad[0].error, UpstreamError)
    err = A.translate_stream_event(
        ev({"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}), st
    )
    assert isinstance(err[0], StreamFailed) and isinstance(err[0].error, UpstreamUnavailable)


def test_stream_blocked_prompt_and_several_candidates() -> None:
    st = StreamState(model="m")
    out = stream_events({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": USAGE}, st)
    assert [type(e) for e in out] == [StreamStart, Finish, UsageReport]
    assert out[1] == Finish("content_filter", 0)
    st2 = StreamState(model="m", candidates=2)
    a = stream_events(
        {
            "candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}],
            "usageMetadata": USAGE,
        },
        st2,
    )
    assert not any(isinstance(e, UsageReport) for e in a), "usage waits for every candidate"
    b = stream_events(
        {
            "candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP", "index": 1}],
            "usageMetadata": USAGE,
        },
        st2,
    )
    assert [type(e) for e in b] == [TextDelta, Finish, UsageReport]


# -- errors ----------------------------------------------------------------------------------


def gerr(http: int, status: str, message: str = "m", details: Any = None, headers: Any = None) -> Any:
    e: dict[str, Any] = {"code": http, "message": message, "status": status}
    if details:
        e["details"] = details
    return A.map_error(UpstreamResponse(http, headers or {}, orjson.dumps({"error": e})))


def test_error_mapping() -> None:
    assert type(gerr(400, "INVALID_ARGUMENT")) is InvalidRequest
    assert gerr(400, "FAILED_PRECONDITION").http_status == 400
    key = gerr(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. AIza-secret",
        [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
    )
    assert isinstance(key, UpstreamAuthError) and key.http_status == 502 and "AIza" not in key.message
    assert key.upstream_body is not None and b"AIza-secret" in key.upstream_body
    for status in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        assert isinstance(gerr(403, status), UpstreamAuthError)
    nf = gerr(404, "NOT_FOUND")
    assert isinstance(nf, ModelNotFound) and nf.http_status == 404
    rl = gerr(
        429,
        "RESOURCE_EXHAUSTED",
        details=[{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37.5s"}],
    )
    assert isinstance(rl, RateLimited) and rl.retry_after == 37.5
    assert gerr(429, "RESOURCE_EXHAUSTED", headers={"retry-after": "3"}).retry_after == 3
    assert isinstance(gerr(503, "UNAVAILABLE"), UpstreamUnavailable)
    assert isinstance(gerr(504, "DEADLINE_EXCEEDED"), UpstreamTimeout)
    internal = gerr(500, "INTERNAL")
    assert type(internal) is UpstreamError and internal.http_status == 502
    wrapped = A.map_error(UpstreamResponse(503, {}, b'[{"error": {"code": 503, "status": "UNAVAILABLE"}}]'))
    assert isinstance(wrapped, UpstreamUnavailable)
    html = A.map_error(UpstreamResponse(401, {}, b"<html>nope</html>"))
    assert isinstance(html, UpstreamAuthError)
