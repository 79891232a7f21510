"""Gemini as an upstream: the official openai SDK -> the real gateway -> the fake Gemini API."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import pytest_asyncio
from aiohttp import web

from tests.fakes._images import tiny_png
from tests.fakes.gemini_upstream import FakeGemini
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")

KEY = "AIza-upstream-secret-5d2e"
WRONG_KEY = "AIza-wrong-provider-key-77"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}
PNG = tiny_png("gemini")


def user(text: str) -> Any:
    return [{"role": "user", "content": text}]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def up() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=KEY, chunk_delay=0.001) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def images() -> AsyncIterator[str]:
    """A local image server: what the private-address guard must refuse by default."""

    async def png(_: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", png)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(up: FakeGemini, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    fast = {"connect": 1, "first_byte": 0.6, "idle": 0.6, "total": 5}
    base = {"type": "gemini", "base_url": up.base_url, "api_key": KEY}
    config = {
        "usage": {"flush_interval": 0.05},
        "providers": {
            "gem": base,
            "gem-local": {**base, "allow_private_media": True},
            "gem-fast": {**base, "timeouts": fast},
            "gem-wrongkey": {**base, "api_key": WRONG_KEY},
        },
        "models": [
            {
                "name": "flash",
                "provider": "gem",
                "model": "gemini-2.0-flash",
                "price": {"input": 0.1, "output": 0.4},
            },
            {"name": "thinking", "provider": "gem", "model": "gemini-2.5-flash"},
            {"name": "g3", "provider": "gem", "model": "gemini-3-pro-preview"},
            {"name": "flash-local", "provider": "gem-local", "model": "gemini-2.0-flash"},
            {"name": "flash-fast", "provider": "gem-fast", "model": "gemini-2.0-flash"},
            {"name": "badkey", "provider": "gem-wrongkey", "model": "gemini-2.0-flash"},
            {"name": "retired", "provider": "gem", "model": "gemini-1.0-pro"},
        ],
    }
    gw = await start_gateway(tmp_path_factory.mktemp("gemini-upstream"), config)
    try:
        yield gw
    finally:
        gw.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gateway: GatewayProc) -> str:
    return (await gateway.create_key("gemini-upstream"))[1]


@pytest_asyncio.fixture(loop_scope="session")
async def client(gateway: GatewayProc, key: str, up: FakeGemini) -> AsyncIterator[openai.AsyncOpenAI]:
    up.clear_fault()
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0, timeout=15)
    try:
        yield c
    finally:
        await c.close()
        up.clear_fault()
        up.function_call_ids = False


def sent(up: FakeGemini) -> dict[str, Any]:
    body = up.requests[-1].json
    assert isinstance(body, dict)
    return body


async def test_plain_text_and_usage(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    r = await client.chat.completions.create(model="flash", messages=user("hello there"))
    c = r.choices[0]
    assert (c.message.content, c.finish_reason, c.message.role) == ("echo: hello there", "stop", "assistant")
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (2, 3, 5)
    assert r.model == "gemini-2.0-flash"
    last = up.requests[-1]
    assert last.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert last.headers["x-goog-api-key"] == KEY
    assert "authorization" not in {k.lower() for k in last.headers}


async def test_thinking_tokens_count_as_completion(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model="thinking", messages=user("hi"))
    assert r.usage is not None and r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == 5
    assert r.usage.completion_tokens == 2 + 5  # "echo: hi" plus the thoughts


async def test_multi_turn_system_prompt_and_parameters(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    r = await client.chat.completions.create(
        model="flash",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "echo: first"},
            {"role": "user", "content": "second"},
        ],
        temperature=0.5,
        top_p=0.8,
        max_tokens=40,
        stop=["zzz"],
        seed=3,
        n=2,
    )
    assert [c.message.content for c in r.choices] == ["echo: second", "echo1: second"]
    body = sent(up)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"] == {
        "temperature": 0.5,
        "topP": 0.8,
        "maxOutputTokens": 40,
        "stopSequences": ["zzz"],
        "seed": 3,
        "candidateCount": 2,
    }


async def test_max_tokens_is_length(client: openai.AsyncOpenAI) -> None:
    r = await client.chat.completions.create(model="flash", messages=user("a b c d e f"), max_tokens=3)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("echo: a b", "length")


async def test_stream_with_and_without_usage(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    stream = await client.chat.completions.create(
        model="flash",
        messages=user("one two three four five"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "echo: one two three four five"
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 6)
    assert up.requests[-1].query == {"alt": "sse"}
    plain = [
        c async for c in await client.chat.completions.create(model="flash", messages=user("x"), stream=True)
    ]
    assert all(c.usage is None for c in plain) and all(c.choices for c in plain)


async def test_tools_parallel_and_round_trip(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    msgs: list[Any] = user("please call get_weather and get_time")
    r = await client.chat.completions.create(model="flash", messages=msgs, tools=[WEATHER, TIME])
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    calls = c.message.tool_calls or []
    assert [t.function.name for t in calls] == ["get_weather", "get_time"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "sample"}  # type: ignore[union-attr]
    assert len({t.id for t in calls}) == 2 and all(t.id.startswith("call_") for t in calls)
    decl = sent(up)["tools"][0]["functionDeclarations"][0]
    assert decl["parameters"] == {
        "type": "OBJECT",
        "required": ["city"],
        "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "nullable": True}},
    }
    msgs.append(c.message.model_dump(exclude_none=True))
    for t in calls:
        msgs.append({"role": "tool", "tool_call_id": t.id, "content": f"{t.function.name} done"})  # type: ignore[union-attr]
    r2 = await client.chat.completions.create(model="flash", messages=msgs, tools=[WEATHER, TIME])
    assert (
        r2.choices[0].message.content == "tool results: get_weather=get_weather done; get_time=get_time done"
    )
    turn = sent(up)["contents"][2]["parts"]
    assert [p["functionResponse"]["name"] for p in turn] == ["get_weather", "get_time"]


async def test_upstream_call_ids_are_preserved(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    up.function_call_ids = True
    msgs: list[Any] = user("call get_time")
    r = await client.chat.completions.create(model="flash", messages=msgs, tools=[TIME])
    call = (r.choices[0].message.tool_calls or [])[0]
    msgs += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "noon"},
    ]
    await client.chat.completions.create(model="flash", messages=msgs, tools=[TIME])
    parts = sent(up)["contents"]
    assert parts[1]["parts"][0]["functionCall"]["id"] == call.id
    assert parts[2]["parts"][0]["functionResponse"] == {
        "name": "get_time",
        "response": {"result": "noon"},
        "id": call.id,
    }
    assert not call.id.startswith("call_")  # the fake's own id, not one the gateway made up


async def test_gemini_3_thought_signatures_survive_the_round_trip(client: openai.AsyncOpenAI) -> None:
    msgs: list[Any] = user("call get_time")
    stream = await client.chat.completions.create(model="g3", messages=msgs, tools=[TIME], stream=True)
    tool: dict[str, str] = {}
    async for ch in stream:
        for d in ch.choices[0].delta.tool_calls or [] if ch.choices else []:
            tool["id"] = d.id or tool.get("id", "")
            tool["args"] = tool.get("args", "") + ((d.function.arguments or "") if d.function else "")
    assert json.loads(tool["args"]) == {"tz": "sample"}
    msgs += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": tool["id"],
                    "type": "function",
                    "function": {"name": "get_time", "arguments": tool["args"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": tool["id"], "content": "noon"},
    ]
    r = await client.chat.completions.create(model="g3", messages=msgs, tools=[TIME])
    assert r.choices[0].message.content == "tool results: get_time=noon"


async def test_vision_base64(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    r = await client.chat.completions.create(
        model="flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    assert r.choices[0].message.content == "echo: what is it (saw 1 image)"
    assert sent(up)["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
    }


async def test_vision_url_is_fetched_only_where_private_media_is_allowed(
    client: openai.AsyncOpenAI, up: FakeGemini, images: str
) -> None:
    content: Any = [
        {"type": "text", "text": "and this"},
        {"type": "image_url", "image_url": {"url": images + "/cat.png"}},
    ]
    r = await client.chat.completions.create(
        model="flash-local", messages=[{"role": "user", "content": content}]
    )
    assert r.choices[0].message.content == "echo: and this (saw 1 image)"
    assert sent(up)["contents"][0]["parts"][1]["inlineData"]["data"] == base64.b64encode(PNG).decode()
    before = len(up.requests)
    with pytest.raises(openai.BadRequestError) as e:
        await client.chat.completions.create(model="flash", messages=[{"role": "user", "content": content}])
    assert e.value.code == "invalid_image_url"
    assert "non-public address" in e.value.message
    assert len(up.requests) == before, "a refused image must not reach the upstream"


async def test_json_schema_output(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["answer", "n"],
        "additionalProperties": False,
    }
    r = await client.chat.completions.create(
        model="flash",
        messages=user("give json"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": schema, "strict": True},
        },
    )
    obj = json.loads(r.choices[0].message.content or "")
    assert isinstance(obj["answer"], str) and isinstance(obj["n"], int)
    g = sent(up)["generationConfig"]
    assert g["responseMimeType"] == "application/json" and "additionalProperties" not in json.dumps(g)


async def test_usage_lands_in_the_ledger(gateway: GatewayProc) -> None:
    kid, k = await gateway.create_key("gemini-ledger")
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=k, max_retries=0)
    r = await c.chat.completions.create(model="flash", messages=user("count these words"))
    s = await c.chat.completions.create(model="thinking", messages=user("stream me"), stream=True)
    async for _ in s:
        pass
    await c.close()

    async def records() -> list[dict[str, Any]]:
        _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}")
        return body["data"] if len(body["data"]) >= 2 else []

    recs = {x["model"]: x for x in await wait_until(records, timeout=10)}
    assert r.usage is not None
    plain, streamed = recs["flash"], recs["thinking"]
    assert (plain["prompt_tokens"], plain["completion_tokens"]) == (
        r.usage.prompt_tokens,
        r.usage.completion_tokens,
    )
    assert (plain["provider"], plain["upstream_model"], plain["status"]) == ("gem", "gemini-2.0-flash", 200)
    assert plain["cost_usd"] == pytest.approx(
        (r.usage.prompt_tokens * 0.1 + r.usage.completion_tokens * 0.4) / 1e6
    )
    assert streamed["streamed"] and not streamed["usage_estimated"]
    assert (streamed["reasoning_tokens"], streamed["completion_tokens"]) == (
        5,
        3 + 5,
    )  # "echo: stream me" and the thoughts


async def test_error_classes(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    up.set_fault("status=400", times=1)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="flash", messages=user("x"))
    with pytest.raises(openai.InternalServerError) as auth:
        await client.chat.completions.create(model="badkey", messages=user("x"))
    assert auth.value.status_code == 502 and auth.value.code == "upstream_auth_error"
    assert WRONG_KEY not in auth.value.response.text and "API key not valid" not in auth.value.response.text
    up.set_fault("status=429;retry_after=7", times=1)
    with pytest.raises(openai.RateLimitError) as rl:
        await client.chat.completions.create(model="flash", messages=user("x"))
    assert rl.value.response.headers["retry-after"] == "7"
    up.set_fault("status=503", times=1)
    with pytest.raises(openai.InternalServerError) as busy:
        await client.chat.completions.create(model="flash", messages=user("x"))
    assert busy.value.status_code == 503
    up.set_fault("status=500", times=1)
    with pytest.raises(openai.InternalServerError) as internal:
        await client.chat.completions.create(model="flash", messages=user("x"))
    assert internal.value.status_code == 502
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="retired", messages=user("x"))
    up.set_fault("bad_json", times=1)
    with pytest.raises(openai.InternalServerError) as bad:
        await client.chat.completions.create(model="flash", messages=user("x"))
    assert bad.value.status_code == 502


async def test_mid_stream_failure_raises(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    up.set_fault("drop_after=2", times=1)
    stream = await client.chat.completions.create(
        model="flash", messages=user(" ".join(["w"] * 30)), stream=True
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    up.set_fault("stall_after=1", times=1)
    stream = await client.chat.completions.create(model="flash-fast", messages=user("a b c d"), stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_cancellation_reaches_the_upstream(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    before = len(up.stream_disconnects)
    text = "[[fault:chunk_delay=0.05]] " + " ".join(["w"] * 100)
    stream = await client.chat.completions.create(model="flash", messages=user(text), stream=True)
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    t0 = time.monotonic()
    await stream.close()
    await up.wait_for_disconnect(before + 1, within=1.0)
    assert time.monotonic() - t0 < 1.0


async def test_embeddings_use_batch_embed_contents(client: openai.AsyncOpenAI, up: FakeGemini) -> None:
    r = await client.embeddings.create(model="gem/text-embedding-004", input=["a b", "c"], dimensions=8)
    assert [len(d.embedding) for d in r.data] == [8, 8]
    assert [d.index for d in r.data] == [0, 1]
    assert up.requests[-1].path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent(up)["requests"][0] == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "a b"}]},
        "outputDimensionality": 8,
    }
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="gem/text-embedding-004", input=[[1, 2, 3]])
