"""The gateway serving the Gemini API: the official google-genai SDK -> the real gateway ->
(i) the fake Gemini API (identity path) and (ii) the fake OpenAI API (translated)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types

from tests.fakes._gemini_sdk import SDK_WARNING, genai_client
from tests.fakes._images import tiny_png
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), SDK_WARNING]

GEM_KEY = "AIza-dialect-upstream-3c4d"
OAI_KEY = "sk-openai-gemini-dialect-5e6f"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}, required=["city"]
    ),
)
TIME = types.FunctionDeclaration(
    name="get_time",
    parameters_json_schema={"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)
# (i) the identity path and (ii) the translated path answer every test alike.
MODELS = ["gemini-2.0-flash", "gpt-4o"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gem() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=GEM_KEY, chunk_delay=0.001) as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def oai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=OAI_KEY, chunk_delay=0.001) as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    gem: FakeGemini, oai: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayProc]:
    config = {
        "usage": {"flush_interval": 0.05},
        "providers": {
            "gem": {"type": "gemini", "base_url": gem.base_url, "api_key": GEM_KEY},
            "gem-wrongkey": {"type": "gemini", "base_url": gem.base_url, "api_key": "AIza-wrong"},
            "oai": {"type": "openai", "base_url": oai.base_url, "api_key": OAI_KEY},
        },
        "models": [
            {
                "name": "gemini-2.0-flash",
                "provider": "gem",
                "context_window": 1048576,
                "max_output_tokens": 8192,
            },
            {"name": "gpt-4o", "provider": "oai", "context_window": 128000},
            {"name": "gem-badkey", "provider": "gem-wrongkey", "model": "gemini-2.0-flash"},
        ],
    }
    gw = await start_gateway(tmp_path_factory.mktemp("gemini-dialect"), config)
    try:
        yield gw
    finally:
        gw.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gateway: GatewayProc) -> str:
    return (await gateway.create_key("gemini-dialect"))[1]


@pytest_asyncio.fixture(loop_scope="session")
async def client(
    gateway: GatewayProc, key: str, gem: FakeGemini, oai: FakeOpenAI
) -> AsyncIterator[genai.Client]:
    gem.clear_fault()
    oai.clear_fault()
    c = genai_client(gateway.url, key)
    try:
        yield c
    finally:
        await c.aio.aclose()
        gem.clear_fault()
        oai.clear_fault()


async def post(
    gw: GatewayProc, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(gw.url + path, data=json.dumps(body).encode(), headers=headers) as r,
    ):
        return r.status, dict(r.headers), await r.json(content_type=None)


def assert_google_error(body: Any, code: int, status: str) -> None:
    assert set(body) == {"error"}, body
    e = body["error"]
    assert (e["code"], e["status"]) == (code, status), body
    assert isinstance(e["message"], str) and e["message"]


# -- both paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_plain_text(client: genai.Client, model: str, gem: FakeGemini, oai: FakeOpenAI) -> None:
    r = await client.aio.models.generate_content(
        model=model, contents="hello there", config=types.GenerateContentConfig(system_instruction="be brief")
    )
    assert r.text == "echo: hello there"
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.STOP
    u = r.usage_metadata
    assert u is not None and u.prompt_token_count and u.candidates_token_count == 3
    assert u.total_token_count == u.prompt_token_count + 3
    if model == "gpt-4o":
        sent = oai.requests_to("/v1/chat/completions")[-1].json
        assert sent["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ]
    else:
        body = gem.last_request.json
        assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
        assert gem.last_request.path == "/v1beta/models/gemini-2.0-flash:generateContent"


@pytest.mark.parametrize("model", MODELS)
async def test_streaming(client: genai.Client, model: str) -> None:
    chunks = [
        c
        async for c in await client.aio.models.generate_content_stream(
            model=model, contents="one two three four five"
        )
    ]
    assert "".join(c.text or "" for c in chunks) == "echo: one two three four five"
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata and last.usage_metadata.candidates_token_count == 6
    assert len(chunks) >= 3


@pytest.mark.parametrize("model", MODELS)
async def test_function_calling_round_trip(client: genai.Client, model: str) -> None:
    cfg = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, TIME])], automatic_function_calling=NO_AFC
    )
    ask = types.Content(role="user", parts=[types.Part(text="please call get_weather and get_time")])
    r = await client.aio.models.generate_content(model=model, contents=[ask], config=cfg)
    calls = r.function_calls or []
    assert [(c.name, c.args) for c in calls] == [
        ("get_weather", {"city": "sample"}),
        ("get_time", {"tz": "sample"}),
    ]
    assert (
        r.candidates and r.candidates[0].content and r.candidates[0].finish_reason == types.FinishReason.STOP
    )
    answers = [
        types.Part.from_function_response(name=c.name or "", response={"result": f"{c.name} ok"})
        for c in calls
    ]
    history = [ask, r.candidates[0].content, types.Content(role="user", parts=answers)]
    r2 = await client.aio.models.generate_content(model=model, contents=history, config=cfg)
    assert r2.text == "tool results: get_weather=get_weather ok; get_time=get_time ok"


@pytest.mark.parametrize("model", MODELS)
async def test_streamed_function_call_and_forced_choice(client: genai.Client, model: str) -> None:
    cfg = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, TIME])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_time"]
            )
        ),
        automatic_function_calling=NO_AFC,
    )
    calls = [
        fc
        async for ch in await client.aio.models.generate_content_stream(
            model=model, contents="anything", config=cfg
        )
        for fc in ch.function_calls or []
    ]
    assert [(c.name, c.args) for c in calls] == [("get_time", {"tz": "sample"})]


@pytest.mark.parametrize("model", MODELS)
async def test_automatic_function_calling(client: genai.Client, model: str) -> None:
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    chat = client.aio.chats.create(model=model, config=types.GenerateContentConfig(tools=[get_weather]))
    r = await chat.send_message("call get_weather")
    assert r.text == "tool results: get_weather=sunny in sample"


@pytest.mark.parametrize("model", MODELS)
async def test_json_schema_and_images(client: genai.Client, model: str) -> None:
    schema = types.Schema(
        type=types.Type.OBJECT,
        properties={
            "answer": types.Schema(type=types.Type.STRING),
            "n": types.Schema(type=types.Type.INTEGER),
        },
        required=["answer", "n"],
    )
    r = await client.aio.models.generate_content(
        model=model,
        contents="give json",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema),
    )
    obj = json.loads(r.text or "")
    assert isinstance(obj["answer"], str) and isinstance(obj["n"], int)
    png = types.Part.from_bytes(data=tiny_png("dialect"), mime_type="image/png")
    r = await client.aio.models.generate_content(model=model, contents=["what is it", png])
    assert r.text == "echo: what is it (saw 1 image)"


# -- addressing, auth, models ----------------------------------------------------------------


async def test_v1_api_prefix_slash_ids_and_key_query(gateway: GatewayProc, key: str, oai: FakeOpenAI) -> None:
    for base, version in [
        (gateway.url, "v1"),
        (gateway.url + "/api", "v1beta"),
        (gateway.url + "/api", "v1"),
    ]:
        c = genai_client(base, key, version)
        r = await c.aio.models.generate_content(model="oai/gpt-4o-mini", contents=f"via {version}")
        await c.aio.aclose()
        assert r.text == f"echo: via {version}"
        assert oai.requests_to("/v1/chat/completions")[-1].json["model"] == "gpt-4o-mini"
    body = {
        "contents": [{"parts": [{"text": "snake"}]}],
        "generation_config": {"max_output_tokens": 20},
        "system_instruction": {"parts": [{"text": "s"}]},
    }
    status, _, r = await post(gateway, f"/v1beta/models/gpt-4o:generateContent?key={key}", body, {})
    assert status == 200 and r["candidates"][0]["content"]["parts"] == [{"text": "echo: snake"}]


async def test_models_list_and_get(client: genai.Client) -> None:
    models = {m.name: m async for m in await client.aio.models.list()}
    assert {"models/gemini-2.0-flash", "models/gpt-4o"} <= set(models)
    flash = models["models/gemini-2.0-flash"]
    assert (flash.input_token_limit, flash.output_token_limit) == (1048576, 8192)
    assert flash.supported_actions and "generateContent" in flash.supported_actions
    got = await client.aio.models.get(model="gpt-4o")
    assert got.name == "models/gpt-4o" and got.input_token_limit == 128000
    with pytest.raises(errors.ClientError) as e:
        await client.aio.models.get(model="nope")
    assert (e.value.code, e.value.status) == (404, "NOT_FOUND")


async def test_usage_ledger_records_the_gemini_dialect(gateway: GatewayProc) -> None:
    kid, k = await gateway.create_key("gemini-dialect-ledger")
    c = genai_client(gateway.url, k)
    r = await c.aio.models.generate_content(model="gemini-2.0-flash", contents="count me")
    async for _ in await c.aio.models.generate_content_stream(model="gpt-4o", contents="and me"):
        pass
    await c.aio.aclose()

    async def records() -> list[dict[str, Any]]:
        _, body = await gateway.admin("GET", f"/admin/v1/usage?key_id={kid}")
        return body["data"] if len(body["data"]) >= 2 else []

    recs = {x["model"]: x for x in await wait_until(records, timeout=10)}
    assert {x["dialect"] for x in recs.values()} == {"gemini"}
    assert r.usage_metadata is not None
    assert recs["gemini-2.0-flash"]["prompt_tokens"] == r.usage_metadata.prompt_token_count
    assert recs["gpt-4o"]["streamed"] and recs["gpt-4o"]["completion_tokens"] == 3
    assert not recs["gpt-4o"]["usage_estimated"]


# -- errors ----------------------------------------------------------------------------------


async def test_400_invalid_requests(client: genai.Client, gateway: GatewayProc, key: str) -> None:
    with pytest.raises(errors.ClientError) as e:
        await client.aio.models.generate_content(
            model="gpt-4o", contents="x", config=types.GenerateContentConfig(temperature=5)
        )
    assert (e.value.code, e.value.status) == (400, "INVALID_ARGUMENT")
    assert "temperature" in (e.value.message or "")
    h = {"x-goog-api-key": key}
    cases: list[tuple[str, Any, str]] = [
        (
            "gpt-4o:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "bogus": 1},
            'Unknown name "bogus"',
        ),
        ("gpt-4o:generateContent", {"contents": []}, "contents is not specified"),
        (
            "gpt-4o:generateContent",
            {"contents": [{"role": "system", "parts": [{"text": "x"}]}]},
            "valid role",
        ),
        (
            "gpt-4o:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]},
            "googleSearch",
        ),
        ("gpt-4o:streamGenerateContent", {"contents": [{"parts": [{"text": "x"}]}]}, "alt=sse"),
    ]
    for path, body, needle in cases:
        status, _, err = await post(gateway, f"/v1beta/models/{path}", body, h)
        assert status == 400, (path, body, err)
        assert_google_error(err, 400, "INVALID_ARGUMENT")
        assert needle in err["error"]["message"], (needle, err)
    status, _, err = await post(gateway, "/v1beta/models/gpt-4o:generateContent", None, h)
    assert status == 400


async def test_401_and_403(gateway: GatewayProc, key: str) -> None:
    bad = genai_client(gateway.url, "sg-" + "x" * 40)
    with pytest.raises(errors.ClientError) as e:
        await bad.aio.models.generate_content(model="gpt-4o", contents="x")
    await bad.aio.aclose()
    assert (e.value.code, e.value.status) == (401, "UNAUTHENTICATED")
    status, _, body = await post(gateway, "/v1beta/models/gpt-4o:generateContent", {"contents": []}, {})
    assert status == 401
    assert_google_error(body, 401, "UNAUTHENTICATED")
    assert "x-goog-api-key" in body["error"]["message"]
    _, narrow = await gateway.create_key("gemini-only-flash", models=["gemini-2.0-flash"])
    c = genai_client(gateway.url, narrow)
    with pytest.raises(errors.ClientError) as e:
        await c.aio.models.generate_content(model="gpt-4o", contents="x")
    names = [m.name async for m in await c.aio.models.list()]
    await c.aio.aclose()
    assert (e.value.code, e.value.status) == (403, "PERMISSION_DENIED")
    assert names == ["models/gemini-2.0-flash"]


async def test_404_unknown_model_and_method(client: genai.Client, gateway: GatewayProc, key: str) -> None:
    with pytest.raises(errors.ClientError) as e:
        await client.aio.models.generate_content(model="no-such-model", contents="x")
    assert (e.value.code, e.value.status) == (404, "NOT_FOUND")
    status, _, body = await post(gateway, "/v1beta/models/gpt-4o:frobnicate", {}, {"x-goog-api-key": key})
    assert status == 404
    assert_google_error(body, 404, "NOT_FOUND")


async def test_429_carries_the_retry_delay(client: genai.Client, gem: FakeGemini) -> None:
    gem.set_fault("status=429;retry_after=5", times=1)
    with pytest.raises(errors.ClientError) as e:
        await client.aio.models.generate_content(model="gemini-2.0-flash", contents="x")
    assert (e.value.code, e.value.status) == (429, "RESOURCE_EXHAUSTED")
    details = e.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"} in details
    assert e.value.response is not None and e.value.response.headers["retry-after"] == "5"


async def test_5xx(client: genai.Client, gem: FakeGemini, oai: FakeOpenAI) -> None:
    gem.set_fault("status=503", times=1)
    with pytest.raises(errors.ServerError) as e:
        await client.aio.models.generate_content(model="gemini-2.0-flash", contents="x")
    assert (e.value.code, e.value.status) == (503, "UNAVAILABLE")
    oai.set_fault("status=500", times=1)
    with pytest.raises(errors.ServerError) as e:
        await client.aio.models.generate_content(model="gpt-4o", contents="x")
    assert (e.value.code, e.value.status) == (502, "INTERNAL")
    with pytest.raises(errors.ServerError) as e:
        await client.aio.models.generate_content(model="gem-badkey", contents="x")
    assert (e.value.code, e.value.status) == (502, "INTERNAL")
    assert "AIza" not in (e.value.message or "") and "API key not valid" not in (e.value.message or "")


@pytest.mark.parametrize("model", MODELS)
async def test_mid_stream_failure_raises(
    client: genai.Client, model: str, gem: FakeGemini, oai: FakeOpenAI
) -> None:
    (gem if model.startswith("gemini") else oai).set_fault("drop_after=2", times=1)
    stream = await client.aio.models.generate_content_stream(model=model, contents=" ".join(["w"] * 30))
    with pytest.raises(errors.APIError) as e:
        async for _ in stream:
            pass
    assert e.value.code == 502
