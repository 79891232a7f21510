"""The fake Anthropic API driven by the official anthropic SDK: answers, streams, validation, faults."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic

KEY = "sk-ant-fake-test-key"
MODEL = "claude-sonnet-4-6"
WEATHER: Any = {
    "name": "get_weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
}
TIME: Any = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def user(content: Any) -> Any:
    return [{"role": "user", "content": content}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=KEY, cache_min_tokens=50) as server:
        yield server


@pytest.fixture
async def sdk(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=10)
    yield c
    await c.close()


async def raw(
    fake: FakeAnthropic, body: Any, headers: dict[str, str] | None = None, path: str = "/v1/messages"
) -> tuple[int, dict[str, str], bytes]:
    h = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    h.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession() as s, s.post(fake.url + path, data=data, headers=h) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def error_of(fake: FakeAnthropic, body: Any, **kw: Any) -> tuple[int, str, str]:
    status, _, data = await raw(fake, body, **kw)
    obj = json.loads(data)
    assert obj["type"] == "error"
    assert obj["request_id"].startswith("req_")
    return status, obj["error"]["type"], obj["error"]["message"]


def body(**kw: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 100, "messages": user("hi"), **kw}


async def test_message_shape_and_headers(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    r = await sdk.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=user("hello there"))
    m = await r.parse()
    assert r.headers["request-id"].startswith("req_")
    assert r.headers["anthropic-organization-id"]
    assert m.id.startswith("msg_")
    assert m.content[0].type == "text"
    assert m.content[0].text == "echo: hello there"
    assert (m.stop_reason, m.stop_sequence, m.model) == ("end_turn", None, MODEL)
    assert m.usage.input_tokens == 6
    assert m.usage.output_tokens == 3
    assert m.usage.cache_read_input_tokens == 0
    assert fake.last_request.headers["authorization"] == f"Bearer {KEY}"  # what SDK 2.x sends


async def test_authentication_and_version(fake: FakeAnthropic) -> None:
    assert await error_of(fake, body(), headers={"x-api-key": ""}) == (
        401,
        "authentication_error",
        "x-api-key header is required",
    )
    assert (await error_of(fake, body(), headers={"x-api-key": "nope"}))[:2] == (401, "authentication_error")
    # x-api-key wins over a bearer token when both are sent
    status, _, _ = await raw(fake, body(), headers={"authorization": "Bearer nope"})
    assert status == 200
    status, err, msg = await error_of(fake, body(), headers={"anthropic-version": ""})
    assert (status, err, msg) == (400, "invalid_request_error", "anthropic-version: header is required")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"model": MODEL, "messages": user("x")}, "max_tokens: Field required"),
        (body(messages=[]), "messages: at least one message is required"),
        (
            body(messages=[{"role": "system", "content": "x"}]),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (body(temperature=1.5), "temperature: Input should be less than or equal to 1"),
        (body(messages=user([{"type": "video"}])), "messages.0.content.0.type: Input tag 'video' found"),
        (body(messages=user("")), "messages.0: all messages must have non-empty content"),
        (
            body(messages=user([{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}])),
            "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x",
        ),
        (
            body(
                messages=[
                    *user("a"),
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}],
                    },
                    *user("b"),
                ]
            ),
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        (
            body(messages=[*user("a"), {"role": "assistant", "content": "trailing "}]),
            "messages: final assistant content cannot end with trailing whitespace",
        ),
        (body(tool_choice={"type": "any"}), "tool_choice may only be specified while providing tools."),
        (body(unknown=1), "unknown: Extra inputs are not permitted"),
        (
            body(
                output_config={
                    "format": {"type": "json_schema", "schema": {"type": "object", "properties": {}}}
                }
            ),
            "output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set",
        ),
        (body(tools=[{"name": "bad name", "input_schema": {"type": "object"}}]), "tools.0.custom.name"),
    ],
)
async def test_validation_errors(fake: FakeAnthropic, payload: Any, message: str) -> None:
    status, kind, got = await error_of(fake, payload)
    assert (status, kind) == (400, "invalid_request_error")
    assert got.startswith(message), got


async def test_version_2026_refuses_sampling_parameters(fake: FakeAnthropic) -> None:
    status, _, msg = await error_of(fake, body(temperature=0.5), headers={"anthropic-version": "2026-10-21"})
    assert (status, msg) == (400, "temperature: Extra inputs are not permitted")
    status, _, _ = await raw(fake, body(temperature=0.5, top_k=3))
    assert status == 200


async def test_unknown_model_and_route_are_404(fake: FakeAnthropic) -> None:
    assert await error_of(fake, body(model="claude-9")) == (404, "not_found_error", "model: claude-9")
    assert (await error_of(fake, body(), path="/v1/nothing"))[:2] == (404, "not_found_error")


async def test_merged_turns_and_leading_assistant_are_accepted(sdk: anthropic.AsyncAnthropic) -> None:
    msgs: Any = [{"role": "assistant", "content": "hello"}, *user("one"), *user("two")]
    m = await sdk.messages.create(model=MODEL, max_tokens=100, messages=msgs)
    assert m.content[0].text == "echo: one two"  # type: ignore[union-attr]


async def test_tools(sdk: anthropic.AsyncAnthropic) -> None:
    m = await sdk.messages.create(
        model=MODEL, max_tokens=100, messages=user("call get_time then get_weather"), tools=[WEATHER, TIME]
    )
    assert m.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in m.content if b.type == "tool_use"] == [
        ("get_time", {"tz": "sample"}),
        ("get_weather", {"city": "sample", "unit": "c"}),
    ]
    one = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("call get_time and get_weather"),
        tools=[WEATHER, TIME],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert [b.name for b in one.content if b.type == "tool_use"] == ["get_time"]
    forced = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("x"),
        tools=[WEATHER, TIME],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert [b.name for b in forced.content if b.type == "tool_use"] == ["get_weather"]
    anyt = await sdk.messages.create(
        model=MODEL, max_tokens=100, messages=user("x"), tools=[WEATHER, TIME], tool_choice={"type": "any"}
    )
    assert [b.name for b in anyt.content if b.type == "tool_use"] == ["get_weather"]
    none = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("call get_time"),
        tools=[TIME],
        tool_choice={"type": "none"},
    )
    assert none.stop_reason == "end_turn"


async def test_tool_results_are_answered(sdk: anthropic.AsyncAnthropic) -> None:
    first = await sdk.messages.create(
        model=MODEL, max_tokens=100, messages=user("call get_time"), tools=[TIME]
    )
    use = first.content[0]
    assert use.type == "tool_use"
    msgs: Any = [
        *user("call get_time"),
        {"role": "assistant", "content": [use.model_dump(exclude_none=True)]},
        *user(
            [{"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "noon"}]}]
        ),
    ]
    m = await sdk.messages.create(model=MODEL, max_tokens=100, messages=msgs, tools=[TIME])
    assert m.content[0].text == "tool results: get_time=noon"  # type: ignore[union-attr]


async def test_images_stops_and_limits(sdk: anthropic.AsyncAnthropic) -> None:
    img: Any = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    m = await sdk.messages.create(
        model=MODEL, max_tokens=100, messages=user([{"type": "text", "text": "look"}, img])
    )
    assert m.content[0].text == "echo: look (saw 1 image)"  # type: ignore[union-attr]
    assert m.usage.input_tokens == 4 + 1 + 85
    s = await sdk.messages.create(
        model=MODEL, max_tokens=100, messages=user("a STOP b"), stop_sequences=["STOP"]
    )
    assert (s.content[0].text, s.stop_reason, s.stop_sequence) == ("echo: a ", "stop_sequence", "STOP")  # type: ignore[union-attr]
    t = await sdk.messages.create(model=MODEL, max_tokens=2, messages=user("a b c"))
    assert (t.content[0].text, t.stop_reason) == ("echo: a", "max_tokens")  # type: ignore[union-attr]


async def test_structured_output(sdk: anthropic.AsyncAnthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "s": {"type": "string"}},
        "required": ["n", "s"],
        "additionalProperties": False,
    }
    m = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=user("json"),
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert json.loads(m.content[0].text) == {"n": 1, "s": "echo: json"}  # type: ignore[union-attr]


async def test_stream_event_order(fake: FakeAnthropic) -> None:
    status, headers, data = await raw(fake, body(stream=True, messages=user("one two three")))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = [e for e in data.decode().split("\n\n") if e]
    names = [e.split("\n")[0].removeprefix("event: ") for e in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for e in events:
        name, data_line = e.split("\n")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name.removeprefix("event: ")
    start = json.loads(events[0].split("\n")[1][6:])["message"]
    assert start["usage"]["output_tokens"] == 1
    assert start["stop_reason"] is None
    delta = json.loads(events[-2].split("\n")[1][6:])
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 4


async def test_streamed_tool_use_with_the_sdk_helper(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(
        model=MODEL, max_tokens=100, messages=user("call get_weather and get_time"), tools=[WEATHER, TIME]
    ) as stream:
        kinds = [ev.type async for ev in stream]
        final = await stream.get_final_message()
    assert "input_json" in kinds
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == [
        ("get_weather", {"city": "sample", "unit": "c"}),
        ("get_time", {"tz": "sample"}),
    ]


async def test_prompt_cache(sdk: anthropic.AsyncAnthropic) -> None:
    system: Any = [{"type": "text", "text": "word " * 60, "cache_control": {"type": "ephemeral"}}]
    a = await sdk.messages.create(model=MODEL, max_tokens=10, system=system, messages=user("q1"))
    b = await sdk.messages.create(model=MODEL, max_tokens=10, system=system, messages=user("q2"))
    assert (a.usage.cache_creation_input_tokens, a.usage.cache_read_input_tokens) == (60, 0)
    assert (b.usage.cache_creation_input_tokens, b.usage.cache_read_input_tokens) == (0, 60)
    assert a.usage.input_tokens == b.usage.input_tokens == 5
    short: Any = [{"type": "text", "text": "too short", "cache_control": {"type": "ephemeral"}}]
    c = await sdk.messages.create(model=MODEL, max_tokens=10, system=short, messages=user("q"))
    assert (c.usage.cache_creation_input_tokens, c.usage.cache_read_input_tokens) == (0, 0)
    auto = await sdk.messages.create(
        model=MODEL,
        max_tokens=10,
        system="word " * 60,
        messages=user("q1"),
        cache_control={"type": "ephemeral"},
    )
    assert auto.usage.cache_read_input_tokens == 0
    assert auto.usage.cache_creation_input_tokens == 60 + 4 + 1


async def test_count_tokens(sdk: anthropic.AsyncAnthropic) -> None:
    n = await sdk.messages.count_tokens(model=MODEL, messages=user("one two three"))
    assert n.input_tokens == 7


async def test_status_faults(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.set_fault("status=429;retry_after=3", times=1)
    with pytest.raises(anthropic.RateLimitError) as e:
        await sdk.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert e.value.response.headers["retry-after"] == "3"
    fake.set_fault("status=529", times=1)
    with pytest.raises(anthropic.OverloadedError) as e2:
        await sdk.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert e2.value.type == "overloaded_error"
    fake.set_fault("status=500", times=1)
    with pytest.raises(anthropic.InternalServerError):
        await sdk.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    await sdk.messages.create(model=MODEL, max_tokens=5, messages=user("x"))  # the fault expired


async def test_stream_faults(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.set_fault("stream_error_after=3", times=1)
    with pytest.raises(anthropic.APIStatusError) as e:
        async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=user("a b c")) as s:
            await s.get_final_message()
    assert e.value.type == "overloaded_error"
    fake.set_fault("drop_after=2", times=1)
    with pytest.raises(
        (anthropic.APIConnectionError, httpx2.RemoteProtocolError)
    ):  # the SDK does not wrap it
        async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=user("a b c")) as s:
            await s.get_final_message()
    fake.set_fault("bad_json", times=1)
    status, _, data = await raw(fake, body())
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(data)
    t0 = time.monotonic()
    await raw(fake, body(messages=user("[[fault:slow_first_byte=0.3]] x")))
    assert time.monotonic() - t0 >= 0.3


async def test_disconnects_are_recorded(fake: FakeAnthropic) -> None:
    fake.set_fault("stall_after=2", times=1)
    h = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession() as s:
        r = await s.post(fake.url + "/v1/messages", json=body(stream=True), headers=h)
        await r.content.readany()
        r.close()
    assert await fake.wait_for_disconnect(1, within=2) > 0
