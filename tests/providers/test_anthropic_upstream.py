"""Anthropic as an upstream: the official openai SDK -> the real gateway -> the fake Anthropic API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = "sk-ant-api03-upstream-secret-7c1d"
WRONG_KEY = "sk-ant-api03-wrong-provider-key-99"
SONNET = "claude-sonnet-4-6"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def up() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=KEY, chunk_delay=0.001, cache_min_tokens=1024) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(up: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    fast = {"connect": 1, "first_byte": 0.6, "idle": 0.6, "total": 5}
    config = {
        "usage": {"flush_interval": 0.05},
        "providers": {
            "claude": {"type": "anthropic", "base_url": up.base_url, "api_key": KEY},
            "claude-fast": {"type": "anthropic", "base_url": up.base_url, "api_key": KEY, "timeouts": fast},
            "claude-wrongkey": {"type": "anthropic", "base_url": up.base_url, "api_key": WRONG_KEY},
        },
        "models": [
            {
                "name": "sonnet",
                "provider": "claude",
                "model": SONNET,
                "max_output_tokens": 1000,
                "price": {"input": 3.0, "output": 15.0, "cached_input": 0.3, "cache_write": 3.75},
            },
            {"name": "sonnet-cache", "provider": "claude", "model": SONNET},
            {"name": "sonnet-fast", "provider": "claude-fast", "model": SONNET},
            {"name": "sonnet-badkey", "provider": "claude-wrongkey", "model": SONNET},
            {"name": "retired", "provider": "claude", "model": "claude-2.1"},
        ],
    }
    gw = await start_gateway(tmp_path_factory.mktemp("anthropic-upstream"), config)
    try:
        yield gw
    finally:
        gw.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api_key(gateway: GatewayProc) -> str:
    return (await gateway.create_key("anthropic-upstream"))[1]


@pytest_asyncio.fixture(loop_scope="session")
async def client(gateway: GatewayProc, api_key: str, up: FakeAnthropic) -> AsyncIterator[openai.AsyncOpenAI]:
    up.clear_fault()
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=api_key, max_retries=0, timeout=10)
    try:
        yield c
    finally:
        await c.close()
        up.clear_fault()


def sent(up: FakeAnthropic) -> dict[str, Any]:
    body = up.requests_to("/v1/messages")[-1].json
    assert isinstance(body, dict)
    return body


async def test_plain_text_and_the_upstream_request(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    r = await client.chat.completions.create(model="sonnet", messages=user("hello there"))
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens == 3
    req = up.requests_to("/v1/messages")[-1]
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    assert req.json == {
        "model": SONNET,
        "max_tokens": 1000,  # the model's configured max_output_tokens
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    }


async def test_max_tokens_request_wins_and_default_applies(
    client: openai.AsyncOpenAI, up: FakeAnthropic
) -> None:
    await client.chat.completions.create(model="sonnet", messages=user("a"), max_tokens=7)
    assert sent(up)["max_tokens"] == 7
    await client.chat.completions.create(model="sonnet-cache", messages=user("a"))
    assert sent(up)["max_tokens"] == 4096
    r = await client.chat.completions.create(
        model="sonnet", messages=user("one two three four"), max_tokens=2
    )
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "echo: one"


async def test_multi_turn_system_and_parameters(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    msgs: Any = [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": "and kind"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
        {"role": "user", "content": "third"},
    ]
    r = await client.chat.completions.create(
        model="sonnet", messages=msgs, temperature=0.2, top_p=0.9, stop=["END"], user="u-42", seed=3
    )
    assert r.choices[0].message.content == "echo: second third"
    body = sent(up)
    assert body["system"] == [{"type": "text", "text": "be brief"}, {"type": "text", "text": "and kind"}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert len(body["messages"][2]["content"]) == 2  # consecutive user turns merged
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-42"}
    assert "seed" not in body


async def test_stop_sequence_finishes_with_stop(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model="sonnet", messages=user("alpha STOP beta"), stop=["STOP"])
    assert r.choices[0].message.content == "echo: alpha "
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 2}, "n"),
        ({"temperature": 1.5}, "temperature"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
    ],
)
async def test_parameters_anthropic_lacks_are_a_400_naming_them(
    client: openai.AsyncOpenAI, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await client.chat.completions.create(model="sonnet", messages=user("x"), **kwargs)
    assert e.value.body["param"] == param  # type: ignore[index]


async def test_streaming_with_and_without_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sonnet",
        messages=user("one two three four five"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four five"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    plain = await client.chat.completions.create(model="sonnet", messages=user("six seven"), stream=True)
    chunks = [c async for c in plain]
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: six seven"


async def test_tools_and_forced_choice(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    r = await client.chat.completions.create(
        model="sonnet", messages=user("please call get_weather"), tools=[WEATHER, TIME]
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    calls = c.message.tool_calls or []
    assert [t.function.name for t in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "sample"}  # type: ignore[union-attr]
    assert sent(up)["tools"][0] == {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": WEATHER["function"]["parameters"],
    }
    r = await client.chat.completions.create(
        model="sonnet",
        messages=user("anything"),
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    assert [t.function.name for t in r.choices[0].message.tool_calls or []] == ["get_time"]  # type: ignore[union-attr]
    assert sent(up)["tool_choice"] == {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}
    await client.chat.completions.create(
        model="sonnet", messages=user("x"), tools=[WEATHER], tool_choice="required"
    )
    assert sent(up)["tool_choice"] == {"type": "any"}
    r = await client.chat.completions.create(
        model="sonnet", messages=user("call get_weather"), tools=[WEATHER], tool_choice="none"
    )
    assert r.choices[0].message.content == "echo: call get_weather"
    assert sent(up)["tool_choice"] == {"type": "none"}


async def test_parallel_tools_stream_with_tool_indexes(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sonnet", messages=user("call get_weather and get_time"), tools=[WEATHER, TIME], stream=True
    )
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    finish = None
    async for chunk in stream:
        for ch in chunk.choices:
            for t in ch.delta.tool_calls or []:
                if t.function and t.function.name:
                    names[t.index] = t.function.name
                if t.function and t.function.arguments:
                    args[t.index] = args.get(t.index, "") + t.function.arguments
            finish = ch.finish_reason or finish
    assert names == {0: "get_weather", 1: "get_time"}
    assert json.loads(args[0]) == {"city": "sample"}
    assert json.loads(args[1]) == {"tz": "sample"}
    assert finish == "tool_calls"


async def test_tool_result_round_trip(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    msgs: list[Any] = user("call get_weather and get_time")
    r = await client.chat.completions.create(model="sonnet", messages=msgs, tools=[WEATHER, TIME])
    msgs.append(r.choices[0].message.model_dump(exclude_none=True))
    for t in r.choices[0].message.tool_calls or []:
        msgs.append({"role": "tool", "tool_call_id": t.id, "content": f"result of {t.function.name}"})  # type: ignore[union-attr]
    r2 = await client.chat.completions.create(model="sonnet", messages=msgs, tools=[WEATHER, TIME])
    assert r2.choices[0].message.content == (
        "tool results: get_weather=result of get_weather; get_time=result of get_time"
    )
    turns = sent(up)["messages"]
    assert [m["role"] for m in turns] == ["user", "assistant", "user"]
    assert [b["type"] for b in turns[1]["content"]] == ["tool_use", "tool_use"]
    assert [b["type"] for b in turns[2]["content"]] == ["tool_result", "tool_result"]
    assert turns[2]["content"][0]["tool_use_id"] == turns[1]["content"][0]["id"]


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (f"data:image/png;base64,{PNG}", {"type": "base64", "media_type": "image/png", "data": PNG}),
        ("https://example.com/cat.jpg", {"type": "url", "url": "https://example.com/cat.jpg"}),
    ],
)
async def test_vision(
    client: openai.AsyncOpenAI, up: FakeAnthropic, url: str, source: dict[str, Any]
) -> None:
    content = [{"type": "text", "text": "what is it"}, {"type": "image_url", "image_url": {"url": url}}]
    r = await client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": content}])  # type: ignore[misc,list-item]
    assert r.choices[0].message.content == "echo: what is it (saw 1 image)"
    assert sent(up)["messages"][0]["content"][1] == {"type": "image", "source": source}


async def test_json_schema_uses_structured_outputs(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
    }
    r = await client.chat.completions.create(
        model="sonnet",
        messages=user("give json"),
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
    )
    assert json.loads(r.choices[0].message.content or "") == {"answer": "echo: give json", "n": 1}
    fmt = sent(up)["output_config"]["format"]
    assert fmt == {"type": "json_schema", "schema": {**schema, "additionalProperties": False}}
    stream = await client.chat.completions.create(
        model="sonnet",
        messages=user("give json"),
        stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert json.loads(text) == {"answer": "echo: give json", "n": 1}


async def test_json_object_uses_a_forced_tool(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    r = await client.chat.completions.create(
        model="sonnet", messages=user("json please"), response_format={"type": "json_object"}
    )
    assert r.choices[0].message.content == "{}"
    assert r.choices[0].finish_reason == "stop"
    assert not r.choices[0].message.tool_calls
    assert sent(up)["tool_choice"]["type"] == "tool"
    stream = await client.chat.completions.create(
        model="sonnet", messages=user("json please"), response_format={"type": "json_object"}, stream=True
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "{}"
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)


async def ledger(gateway: GatewayProc, model: str, count: int, min_prompt: int = 0) -> list[dict[str, Any]]:
    """The ledger rows of ``model`` (newest first) once ``count`` rows with ``min_prompt`` tokens exist."""

    async def rows() -> list[dict[str, Any]] | None:
        status, body = await gateway.admin("GET", f"/admin/v1/usage?model={model}")
        assert status == 200
        found = [r for r in body["data"] if r["prompt_tokens"] >= min_prompt]
        return found if len(found) >= count else None

    return await wait_until(rows, timeout=5, interval=0.1)  # type: ignore[no-any-return]


async def test_usage_with_cache_tokens_reaches_the_ledger(
    client: openai.AsyncOpenAI, gateway: GatewayProc
) -> None:
    system = " ".join(f"rule{i}" for i in range(1100))
    msgs: Any = [{"role": "system", "content": system}, {"role": "user", "content": "cached question"}]
    first = await client.chat.completions.create(
        model="sonnet-cache", messages=msgs, extra_body={"cache_control": {"type": "ephemeral"}}
    )
    second = await client.chat.completions.create(
        model="sonnet-cache",
        messages=msgs,
        extra_body={"cache_control": {"type": "ephemeral"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    (usage,) = [c.usage async for c in second if c.usage]
    assert first.usage is not None
    assert first.usage.prompt_tokens == usage.prompt_tokens > 1100
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens  # the whole prompt was cached
    rows = await ledger(gateway, "sonnet-cache", 2, min_prompt=1100)
    streamed, plain = rows[0], rows[1]  # newest first
    assert streamed["streamed"]
    assert not plain["streamed"]
    assert plain["cache_creation_tokens"] == plain["prompt_tokens"]
    assert plain["cached_tokens"] == 0
    assert streamed["cached_tokens"] == streamed["prompt_tokens"] == plain["prompt_tokens"]
    assert streamed["completion_tokens"] == 3
    assert streamed["provider"] == "claude"
    assert streamed["dialect"] == "openai"


async def test_usage_is_priced(client: openai.AsyncOpenAI, gateway: GatewayProc) -> None:
    await client.chat.completions.create(model="sonnet", messages=user("price me"))
    rows = await ledger(gateway, "sonnet", 1)
    assert rows[0]["cost_usd"] > 0
    assert rows[0]["upstream_model"] == SONNET


async def post_status(gateway: GatewayProc, api_key: str, body: Any) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            gateway.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
        ) as r,
    ):
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json(content_type=None)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("status=400", 400, "invalid_request"),
        ("status=500", 502, "upstream_error"),
        ("status=529", 503, "upstream_overloaded"),
        ("bad_json", 502, "upstream_error"),
        ("status=413", 413, "payload_too_large"),
        ("status=504", 504, "upstream_timeout"),
    ],
)
async def test_upstream_errors_map_to_statuses(
    gateway: GatewayProc, api_key: str, up: FakeAnthropic, fault: str, status: int, code: str
) -> None:
    up.set_fault(fault, times=1)
    got, _, body = await post_status(gateway, api_key, {"model": "sonnet", "messages": user("x")})
    assert got == status, body
    assert body["error"]["code"] == code


async def test_rate_limit_is_429_with_retry_after(
    gateway: GatewayProc, api_key: str, up: FakeAnthropic
) -> None:
    up.set_fault("status=429;retry_after=7", times=1)
    status, headers, body = await post_status(gateway, api_key, {"model": "sonnet", "messages": user("x")})
    assert status == 429
    assert headers["retry-after"] == "7"
    assert body["error"]["type"] == "rate_limit_error"


async def test_upstream_auth_failure_is_502_without_the_key(
    gateway: GatewayProc, api_key: str, client: openai.AsyncOpenAI
) -> None:
    status, _, body = await post_status(gateway, api_key, {"model": "sonnet-badkey", "messages": user("x")})
    assert status == 502
    assert body["error"]["code"] == "upstream_auth_error"
    assert "x-api-key" not in json.dumps(body)
    assert WRONG_KEY not in json.dumps(body)
    assert WRONG_KEY not in gateway.log()


async def test_upstream_validation_errors_pass_through(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        await client.chat.completions.create(model="retired", messages=user("x"))
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e2:
        await client.chat.completions.create(model="sonnet", messages=user("x"), extra_body={"bogus": 1})
    assert "bogus: Extra inputs are not permitted" in e2.value.message


async def collect_text(stream: Any, got: list[str]) -> None:
    async for c in stream:
        got.extend(ch.delta.content or "" for ch in c.choices)


async def test_error_event_mid_stream_raises(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    up.set_fault("stream_error_after=4", times=1)
    stream = await client.chat.completions.create(model="sonnet", messages=user("w " * 30), stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError) as e:
        await collect_text(stream, got)
    assert "".join(got).startswith("echo:")
    assert e.value.code == "upstream_overloaded"


async def test_stall_mid_stream_is_an_idle_timeout(client: openai.AsyncOpenAI, up: FakeAnthropic) -> None:
    up.set_fault("stall_after=3", times=1)
    stream = await client.chat.completions.create(model="sonnet-fast", messages=user("w " * 30), stream=True)
    with pytest.raises(openai.APIError) as e:
        _ = [c async for c in stream]
    assert e.value.code == "upstream_timeout_idle"


async def test_client_disconnect_cancels_the_upstream_within_a_second(
    gateway: GatewayProc, api_key: str, up: FakeAnthropic
) -> None:
    before = len(up.stream_disconnects)
    up.set_fault("stall_after=3", times=1)
    body = {"model": "sonnet", "messages": user("hi"), "stream": True}
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            gateway.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
        )
        await r.content.readany()
        closed_at = time.monotonic()
        r.close()
    seen = await up.wait_for_disconnect(before + 1, within=5)
    assert seen - closed_at < 1.0
    await asyncio.sleep(0)
