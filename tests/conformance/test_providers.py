"""The conformance suite: every provider adapter through the same capability matrix.

One gateway serves three models, one per adapter, each backed by a fake upstream that speaks that
provider's wire format faithfully (and validates like it). The client is the official openai SDK,
so every case exercises translation both ways except the OpenAI one (the identity path). The fakes
share one deterministic convention (echo of the last user text, tool calls on "call NAME", words as
tokens), so the expected answers are the same for every provider.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import openai
import pytest

from tests.conformance.conftest import CASES, PNG, TIME, WEATHER, World

pytestmark = pytest.mark.asyncio(loop_scope="session")

providers = pytest.mark.parametrize("name", list(CASES))


async def text_of(stream: Any) -> tuple[str, list[Any]]:
    chunks = [c async for c in stream]
    return "".join(ch.delta.content or "" for c in chunks for ch in c.choices), chunks


@providers
async def test_plain_text(client: openai.AsyncOpenAI, name: str) -> None:
    r = await client.chat.completions.create(
        model=CASES[name].model, messages=[{"role": "user", "content": "hello world"}]
    )
    assert r.choices[0].message.content == "echo: hello world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens == 3


@providers
async def test_multi_turn_and_system(client: openai.AsyncOpenAI, world: World, name: str) -> None:
    r = await client.chat.completions.create(
        model=CASES[name].model,
        messages=[
            {"role": "system", "content": "be terse always"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    )
    assert r.choices[0].message.content == "echo: second question"
    sent = json.dumps(world.fakes[name].requests[-1].json)
    assert "be terse always" in sent
    assert "first answer" in sent


@providers
async def test_streaming(client: openai.AsyncOpenAI, name: str) -> None:
    stream = await client.chat.completions.create(
        model=CASES[name].model,
        stream=True,
        messages=[{"role": "user", "content": "one two three four five six"}],
    )
    text, chunks = await text_of(stream)
    assert text == "echo: one two three four five six"
    assert len(chunks) >= 3
    assert [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)


@providers
async def test_usage_in_streams(client: openai.AsyncOpenAI, name: str) -> None:
    stream = await client.chat.completions.create(
        model=CASES[name].model,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "alpha beta gamma"}],
    )
    _, chunks = await text_of(stream)
    assert chunks[-1].choices == []
    u = chunks[-1].usage
    assert u is not None
    assert u.prompt_tokens > 0
    assert u.completion_tokens == 4
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


@providers
async def test_tools(client: openai.AsyncOpenAI, name: str) -> None:
    r = await client.chat.completions.create(
        model=CASES[name].model,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "please call get_weather"}],
    )
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    calls = c.message.tool_calls or []
    assert [t.function.name for t in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert "city" in json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    assert calls[0].id


@providers
async def test_parallel_tools_and_results_round_trip(client: openai.AsyncOpenAI, name: str) -> None:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "call get_weather and get_time"}]
    r = await client.chat.completions.create(model=CASES[name].model, messages=msgs, tools=[WEATHER, TIME])  # type: ignore[arg-type,list-item]
    calls = r.choices[0].message.tool_calls or []
    assert [t.function.name for t in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert len({t.id for t in calls}) == 2
    msgs.append(r.choices[0].message.model_dump(exclude_none=True))
    msgs += [{"role": "tool", "tool_call_id": t.id, "content": f"{t.function.name} is fine"} for t in calls]  # type: ignore[union-attr]
    r2 = await client.chat.completions.create(model=CASES[name].model, messages=msgs, tools=[WEATHER, TIME])  # type: ignore[arg-type,list-item]
    answer = r2.choices[0].message.content or ""
    assert answer.startswith("tool results:")
    assert "get_weather is fine" in answer
    assert "get_time is fine" in answer


@providers
async def test_streamed_tool_calls(client: openai.AsyncOpenAI, name: str) -> None:
    stream = await client.chat.completions.create(
        model=CASES[name].model,
        tools=[WEATHER, TIME],
        stream=True,  # type: ignore[list-item]
        messages=[{"role": "user", "content": "call get_weather and get_time"}],
    )
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    ids: dict[int, str] = {}
    finish = []
    async for c in stream:
        for ch in c.choices:
            for t in ch.delta.tool_calls or []:
                if t.id:
                    ids[t.index] = t.id
                if t.function and t.function.name:
                    names[t.index] = t.function.name
                if t.function and t.function.arguments:
                    args[t.index] = args.get(t.index, "") + t.function.arguments
            if ch.finish_reason:
                finish.append(ch.finish_reason)
    assert names == {0: "get_weather", 1: "get_time"}
    assert set(ids) == {0, 1}
    assert "city" in json.loads(args[0])
    assert "tz" in json.loads(args[1])
    assert finish == ["tool_calls"]


@providers
async def test_vision(client: openai.AsyncOpenAI, name: str) -> None:
    r = await client.chat.completions.create(
        model=CASES[name].model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    assert r.choices[0].message.content == "echo: what is this (saw 1 image)"


@providers
async def test_json_schema_output(client: openai.AsyncOpenAI, name: str) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["answer", "score"],
        "additionalProperties": False,
    }
    r = await client.chat.completions.create(
        model=CASES[name].model,
        messages=[{"role": "user", "content": "rate it"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "rating", "schema": schema, "strict": True},
        },
    )
    obj = json.loads(r.choices[0].message.content or "")
    assert isinstance(obj["answer"], str)
    assert isinstance(obj["score"], int)
    assert r.choices[0].finish_reason == "stop"


@providers
@pytest.mark.parametrize(
    ("fault", "status"),
    [("status=400", 400), ("status=429;retry_after=3", 429), ("status=500", 502), ("overloaded", 503)],
)
async def test_error_classes(world: World, name: str, fault: str, status: int) -> None:
    if fault == "overloaded":
        fault = f"status={CASES[name].overloaded_status}"
    world.fakes[name].set_fault(fault, times=1)
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            world.gateway.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {world.key}"},
            json={"model": CASES[name].model, "messages": [{"role": "user", "content": "x"}]},
        ) as r,
    ):
        body = await r.json()
        assert r.status == status, body
        assert set(body["error"]) == {"message", "type", "param", "code"}
        if status == 429:
            assert r.headers["retry-after"] == "3"


@providers
async def test_upstream_auth_failure_never_leaks_the_key(world: World, name: str) -> None:
    world.fakes[name].set_fault("status=401", times=1)
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            world.gateway.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {world.key}"},
            json={"model": CASES[name].model, "messages": [{"role": "user", "content": "x"}]},
        ) as r,
    ):
        body = await r.text()
        assert r.status == 502
        assert "upstream_auth_error" in body
        for secret in ("sk-oa", "sk-ant", "AIza-ge"):
            assert secret not in body


@providers
async def test_mid_stream_failure_is_an_error_event(
    client: openai.AsyncOpenAI, world: World, name: str
) -> None:
    world.fakes[name].set_fault("drop_after=3", times=1)
    stream = await client.chat.completions.create(
        model=CASES[name].model, stream=True, messages=[{"role": "user", "content": " ".join(["w"] * 30)}]
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


@providers
async def test_cancellation_mid_stream_reaches_the_upstream(world: World, name: str) -> None:
    fake = world.fakes[name]
    before = len(fake.stream_disconnects)
    fake.set_fault("stall_after=2", times=1)
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            world.gateway.v1 + "/chat/completions",
            headers={"authorization": f"Bearer {world.key}"},
            json={
                "model": CASES[name].model,
                "stream": True,
                "messages": [{"role": "user", "content": "w " * 30}],
            },
        )
        assert r.status == 200
        await r.content.readany()
        gone = time.monotonic()
        r.close()
    seen = await fake.wait_for_disconnect(before + 1, within=5)
    assert seen - gone < 1.0


@providers
async def test_usage_is_recorded_and_priced(world: World, client: openai.AsyncOpenAI, name: str) -> None:
    kid, key = await world.gateway.create_key(f"ledger-{name}")
    c = openai.AsyncOpenAI(base_url=world.gateway.v1, api_key=key, max_retries=0)
    r = await c.chat.completions.create(
        model=CASES[name].model, messages=[{"role": "user", "content": "a b c"}]
    )
    stream = await c.chat.completions.create(
        model=CASES[name].model, stream=True, messages=[{"role": "user", "content": "a b c"}]
    )
    await text_of(stream)
    await c.close()
    assert r.usage is not None
    for _ in range(100):
        _, body = await world.gateway.admin("GET", f"/admin/v1/usage?key_id={kid}")
        if len(body["data"]) == 2:
            break
        await asyncio.sleep(0.05)
    recs = body["data"]
    assert len(recs) == 2
    for rec in recs:
        assert rec["provider"] == name
        assert rec["upstream_model"] == CASES[name].upstream_model
        assert rec["prompt_tokens"] == r.usage.prompt_tokens
        assert rec["completion_tokens"] == r.usage.completion_tokens
        assert rec["cost_usd"] == pytest.approx(
            (rec["prompt_tokens"] * 1.0 + rec["completion_tokens"] * 2.0) / 1e6
        )
        assert not rec["usage_estimated"]


async def test_every_adapter_is_in_the_matrix() -> None:
    from stellargate.providers.registry import NATIVE

    assert set(NATIVE) | {"openai"} == {c.provider_type for c in CASES.values()}
