"""Chat completions through the real gateway, the official openai SDK as the client."""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc

pytestmark = pytest.mark.asyncio(loop_scope="session")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


async def test_plain_chat_matches_the_upstream_answer(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    r = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello there"}]
    )
    direct = openai.AsyncOpenAI(base_url=upstream.base_url, api_key=UPSTREAM_KEY, max_retries=0)
    d = await direct.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello there"}]
    )
    await direct.close()
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert d.usage is not None
    assert r.usage.model_dump() == d.usage.model_dump()
    assert r.model == d.model == "gpt-4o"
    assert r.object == "chat.completion"


async def test_model_alias_is_rewritten_upstream(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    await client.chat.completions.create(model="mini", messages=[{"role": "user", "content": "x"}])
    assert upstream.requests_to("/v1/chat/completions")[-1].json["model"] == "gpt-4o-mini"


async def test_provider_slash_model_addressing(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    r = await client.chat.completions.create(
        model="fake/gpt-4o-mini", messages=[{"role": "user", "content": "y"}]
    )
    assert r.choices[0].message.content == "echo: y"
    assert upstream.requests_to("/v1/chat/completions")[-1].json["model"] == "gpt-4o-mini"


async def test_parameters_pass_through_unchanged(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        n=2,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=0.1,
        logit_bias={"50256": -100},
        user="u-1",
        logprobs=True,
        top_logprobs=2,
    )
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    for k, v in {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["END"],
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.1,
        "logit_bias": {"50256": -100},
        "user": "u-1",
        "logprobs": True,
        "top_logprobs": 2,
    }.items():
        assert sent[k] == v, k
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}


async def test_n_choices(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(
        model="gpt-4o", n=3, messages=[{"role": "user", "content": "hey"}]
    )
    assert [c.index for c in r.choices] == [0, 1, 2]


async def test_image_content_passes_through(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
                    },
                ],
            }
        ],
    )
    assert r.choices[0].message.content == "echo: what is it (saw 1 image)"


async def test_json_schema_response_format(client: openai.AsyncOpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    r = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "give json"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": schema, "strict": True},
        },
    )
    obj = json.loads(r.choices[0].message.content or "")
    assert isinstance(obj["answer"], str)
    assert isinstance(obj["n"], int)


async def test_tool_calls_and_results_round_trip(client: openai.AsyncOpenAI) -> None:
    msgs: list[dict[str, object]] = [{"role": "user", "content": "please call get_weather and get_time"}]
    r = await client.chat.completions.create(model="gpt-4o", messages=msgs, tools=[WEATHER, TIME])  # type: ignore[arg-type]
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    calls = c.message.tool_calls or []
    assert [t.function.name for t in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert "city" in json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    msgs.append(c.message.model_dump(exclude_none=True))
    for t in calls:
        msgs.append({"role": "tool", "tool_call_id": t.id, "content": f"result of {t.function.name}"})  # type: ignore[union-attr]
    r2 = await client.chat.completions.create(model="gpt-4o", messages=msgs, tools=[WEATHER, TIME])  # type: ignore[arg-type]
    assert "result of get_weather" in (r2.choices[0].message.content or "")


async def test_forced_tool_choice(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    r = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "anything"}],
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
    )
    assert [t.function.name for t in r.choices[0].message.tool_calls or []] == ["get_time"]  # type: ignore[union-attr]
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert sent["parallel_tool_calls"] is False


async def test_stream_without_usage_is_metered_but_shows_no_usage(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "one two three four five"}], stream=True
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four five"
    assert all(c.choices for c in chunks), "the usage-only chunk must be stripped"
    assert all(c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert upstream.requests_to("/v1/chat/completions")[-1].json["stream_options"] == {"include_usage": True}


async def test_stream_with_usage_is_forwarded_byte_for_byte(
    gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    import aiohttp

    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "alpha beta"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with aiohttp.ClientSession() as s:
        async with s.post(
            gateway.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
        ) as r:
            assert r.status == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            via_gw = await r.read()
        async with s.post(
            upstream.base_url + "/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {UPSTREAM_KEY}"},
        ) as r:
            direct = await r.read()
    events_gw = [e for e in via_gw.split(b"\n\n") if e]
    events_direct = [e for e in direct.split(b"\n\n") if e]
    assert len(events_gw) == len(events_direct)
    assert events_gw[-1] == b"data: [DONE]"
    last = json.loads(events_gw[-2][6:])
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] > 0

    def normal(e: bytes) -> object:
        if e == b"data: [DONE]":
            return e
        o = json.loads(e[6:])
        for k in ("id", "created", "obfuscation"):
            o.pop(k, None)
        return o

    assert [normal(e) for e in events_gw] == [normal(e) for e in events_direct]


async def test_streamed_tool_calls(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "call get_weather and get_time"}],
        tools=[WEATHER, TIME],
        stream=True,  # type: ignore[list-item]
    )
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    finish = None
    async for c in stream:
        for ch in c.choices:
            for t in ch.delta.tool_calls or []:
                if t.function and t.function.name:
                    names[t.index] = t.function.name
                if t.function and t.function.arguments:
                    args[t.index] = args.get(t.index, "") + t.function.arguments
            finish = ch.finish_reason or finish
    assert names == {0: "get_weather", 1: "get_time"}
    assert "city" in json.loads(args[0])
    assert finish == "tool_calls"


async def test_request_id_is_generated_or_kept(gateway: GatewayProc, api_key: str) -> None:
    import aiohttp

    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    h = {"authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(gateway.v1 + "/chat/completions", json=body, headers=h) as r:
            rid = r.headers["x-request-id"]
            assert rid.startswith("req_")
        async with s.post(
            gateway.v1 + "/chat/completions", json=body, headers={**h, "x-request-id": "my-id-1"}
        ) as r:
            assert r.headers["x-request-id"] == "my-id-1"
        async with s.post(
            gateway.v1 + "/chat/completions", json={}, headers={**h, "x-request-id": "err-id"}
        ) as r:
            assert r.headers["x-request-id"] == "err-id"
            assert (await r.json())["request_id"] == "err-id"


async def test_api_v1_prefix_serves_the_same_api(gateway: GatewayProc, api_key: str) -> None:
    c = openai.AsyncOpenAI(base_url=gateway.url + "/api/v1", api_key=api_key, max_retries=0)
    r = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "via api"}])
    models = await c.models.list()
    await c.close()
    assert r.choices[0].message.content == "echo: via api"
    assert "gpt-4o" in [m.id for m in models.data]
