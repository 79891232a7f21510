"""Every client dialect against every provider: text, streaming and tools, through each dialect's
official SDK; and each dialect's own error shape for 400, 401, 403, 404, 429 and 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
import pytest_asyncio
from google import genai
from google.genai import types as gtypes

from tests.conformance.conftest import CASES, World

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    # google-genai's async client subclasses aiohttp's ClientSession; not ours to fix.
    pytest.mark.filterwarnings(
        "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged:DeprecationWarning"
    ),
]
providers = pytest.mark.parametrize("name", list(CASES))
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest_asyncio.fixture(loop_scope="session")
async def claude(world: World) -> AsyncIterator[anthropic.AsyncAnthropic]:
    c = anthropic.AsyncAnthropic(base_url=world.gateway.url, api_key=world.key, max_retries=0, timeout=15)
    yield c
    await c.close()


@pytest.fixture
def gemini(world: World) -> genai.Client:
    return genai.Client(
        api_key=world.key,
        http_options=gtypes.HttpOptions(base_url=world.gateway.url, api_version="v1beta", timeout=15_000),
    )


# -- the Anthropic Messages dialect -------------------------------------------------------------


@providers
async def test_anthropic_client_text(claude: anthropic.AsyncAnthropic, name: str) -> None:
    r = await claude.messages.create(
        model=CASES[name].model, max_tokens=200, messages=[{"role": "user", "content": "hello world"}]
    )
    assert r.type == "message"
    assert r.content[0].type == "text"
    assert r.content[0].text == "echo: hello world"
    assert r.stop_reason == "end_turn"
    assert r.usage.output_tokens == 3


@providers
async def test_anthropic_client_stream(claude: anthropic.AsyncAnthropic, name: str) -> None:
    async with claude.messages.stream(
        model=CASES[name].model,
        max_tokens=200,
        system="be terse",
        messages=[{"role": "user", "content": "one two three four"}],
    ) as s:
        text = "".join([t async for t in s.text_stream])
        final = await s.get_final_message()
    assert text == "echo: one two three four"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5


@providers
async def test_anthropic_client_tools(claude: anthropic.AsyncAnthropic, name: str) -> None:
    tools: Any = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}]
    msgs: list[Any] = [{"role": "user", "content": "call get_weather"}]
    r = await claude.messages.create(model=CASES[name].model, max_tokens=200, tools=tools, messages=msgs)
    assert r.stop_reason == "tool_use"
    use = [b for b in r.content if b.type == "tool_use"]
    assert [u.name for u in use] == ["get_weather"]
    assert "city" in use[0].input  # type: ignore[operator]
    msgs += [
        {"role": "assistant", "content": [b.model_dump() for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use[0].id, "content": "sunny"}]},
    ]
    r2 = await claude.messages.create(model=CASES[name].model, max_tokens=200, tools=tools, messages=msgs)
    assert r2.content[0].type == "text"
    assert "get_weather=sunny" in r2.content[0].text


# -- the Gemini dialect -------------------------------------------------------------------------


@providers
async def test_gemini_client_text(gemini: genai.Client, name: str) -> None:
    r = await gemini.aio.models.generate_content(model=CASES[name].model, contents="hello world")
    assert r.text == "echo: hello world"
    assert r.candidates is not None
    assert r.candidates[0].finish_reason == gtypes.FinishReason.STOP
    assert r.usage_metadata is not None
    assert r.usage_metadata.candidates_token_count == 3


@providers
async def test_gemini_client_stream(gemini: genai.Client, name: str) -> None:
    text = ""
    async for chunk in await gemini.aio.models.generate_content_stream(
        model=CASES[name].model,
        contents="one two three four",
        config=gtypes.GenerateContentConfig(system_instruction="be terse"),
    ):
        text += chunk.text or ""
    assert text == "echo: one two three four"


@providers
async def test_gemini_client_tools(gemini: genai.Client, name: str) -> None:
    decl = gtypes.FunctionDeclaration(
        name="get_weather", description="Weather", parameters=gtypes.Schema.model_validate(WEATHER_SCHEMA)
    )
    config = gtypes.GenerateContentConfig(
        tools=[gtypes.Tool(function_declarations=[decl])],
        automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
    )
    r = await gemini.aio.models.generate_content(
        model=CASES[name].model, contents="call get_weather", config=config
    )
    calls = r.function_calls or []
    assert [c.name for c in calls] == ["get_weather"]
    assert "city" in (calls[0].args or {})
    assert r.candidates is not None
    assert r.candidates[0].content is not None
    contents: list[Any] = [
        gtypes.Content(role="user", parts=[gtypes.Part(text="call get_weather")]),
        r.candidates[0].content,
        gtypes.Content(
            role="user",
            parts=[
                gtypes.Part(
                    function_response=gtypes.FunctionResponse(
                        id=calls[0].id, name="get_weather", response={"result": "sunny"}
                    )
                )
            ],
        ),
    ]
    r2 = await gemini.aio.models.generate_content(model=CASES[name].model, contents=contents, config=config)
    assert "get_weather=" in (r2.text or "")
    assert "sunny" in (r2.text or "")


# -- error shapes of every dialect ----------------------------------------------------------------

DIALECTS = {
    # dialect: (path for a model, how it sends the key, body for the model)
    "openai": (
        "/v1/chat/completions",
        "bearer",
        lambda m: {"model": m, "messages": [{"role": "user", "content": "x"}]},
    ),
    "anthropic": (
        "/v1/messages",
        "x-api-key",
        lambda m: {"model": m, "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]},
    ),
    "gemini": (
        "/v1beta/models/{model}:generateContent",
        "x-goog-api-key",
        lambda m: {"contents": [{"role": "user", "parts": [{"text": "x"}]}]},
    ),
}


def assert_shape(dialect: str, body: Any, status: int) -> None:
    if dialect == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    elif dialect == "anthropic":
        assert body["type"] == "error", body
        assert set(body["error"]) >= {"type", "message"}
    else:
        assert body["error"]["code"] == status, body
        assert isinstance(body["error"]["status"], str)
        assert body["error"]["message"]


async def call(world: World, dialect: str, model: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    path, how, make = DIALECTS[dialect]
    headers = {}
    if key is not None:
        headers = {"authorization": f"Bearer {key}"} if how == "bearer" else {how: key}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            world.gateway.url + path.format(model=model),
            headers=headers,
            data=json.dumps(make(model) if body is None else body),
        ) as r,
    ):
        return r.status, await r.json(content_type=None)


@pytest.mark.parametrize("dialect", list(DIALECTS))
async def test_error_shapes(world: World, dialect: str) -> None:
    model = CASES["openai"].model
    cases: list[tuple[int, tuple[int, Any]]] = [
        (401, await call(world, dialect, model, None)),
        (401, await call(world, dialect, model, "sg-wrong")),
        (404, await call(world, dialect, "no-such-model", world.key)),
        (400, await call(world, dialect, model, world.key, body={"messages": "nope", "contents": "nope"})),
    ]
    _, limited = await world.gateway.create_key(f"limited-{dialect}", models=["other-*"])
    cases.append((403, await call(world, dialect, model, limited)))
    world.fakes["openai"].set_fault("status=429", times=1)
    cases.append((429, await call(world, dialect, model, world.key)))
    world.fakes["openai"].set_fault("status=503", times=1)
    cases.append((503, await call(world, dialect, model, world.key)))
    world.fakes["openai"].set_fault("status=500", times=1)
    cases.append((502, await call(world, dialect, model, world.key)))
    for expected, (status, body) in cases:
        if dialect == "openai" and expected == 400:
            expected = 422  # a wrong type is a schema error in the OpenAI dialect
        assert status == expected, (dialect, expected, body)
        assert_shape(dialect, body, status)


# -- the models list, in the shape of whichever SDK asks ----------------------------------------


async def test_models_list_in_each_dialects_shape(
    world: World, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    ids = sorted(c.model for c in CASES.values())
    page = await claude.models.list()
    assert sorted(m.id for m in page.data) == ids
    assert page.data[0].type == "model"
    one = await claude.models.retrieve(CASES["anthropic"].model)
    assert one.id == CASES["anthropic"].model
    with pytest.raises(anthropic.NotFoundError):
        await claude.models.retrieve("no-such-model")

    gem_v1 = genai.Client(api_key=world.key, http_options=gtypes.HttpOptions(base_url=world.gateway.url))
    for client in (gemini, gem_v1):  # v1beta and the SDK's default API version
        names = sorted([m.name or "" async for m in await client.aio.models.list()])
        assert names == [f"models/{i}" for i in ids]
        got = await client.aio.models.get(model=CASES["gemini"].model)
        assert got.name == f"models/{CASES['gemini'].model}"

    async with aiohttp.ClientSession() as s:
        async with s.get(world.gateway.v1 + "/models", headers={"authorization": f"Bearer {world.key}"}) as r:
            body = await r.json()
            assert body["object"] == "list"
        async with s.get(
            world.gateway.v1 + "/models", headers={"anthropic-version": "2023-06-01", "x-api-key": "sg-wrong"}
        ) as r:
            body = await r.json()
            assert r.status == 401
            assert body["type"] == "error"
        async with s.get(world.gateway.v1 + "/models", headers={"x-goog-api-key": "sg-wrong"}) as r:
            body = await r.json()
            assert r.status == 401
            assert body["error"]["status"] == "UNAUTHENTICATED"
