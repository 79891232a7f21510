"""FakeGemini against the official google-genai SDK: what the fake answers, how it validates, its faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors, types

from tests.fakes._gemini_sdk import SDK_WARNING, genai_client
from tests.fakes._images import tiny_png
from tests.fakes.gemini_upstream import FakeGemini

pytestmark = SDK_WARNING

KEY = "AIza-fake-test-key-0123"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "city": types.Schema(type=types.Type.STRING),
            "unit": types.Schema(type=types.Type.STRING),
        },
        required=["city"],
    ),
)
TIME = types.FunctionDeclaration(
    name="get_time",
    parameters=types.Schema(
        type=types.Type.OBJECT, properties={"tz": types.Schema(type=types.Type.STRING)}, required=["tz"]
    ),
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


@pytest.fixture
async def gem() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=KEY) as server:
        yield server


def sdk(up: FakeGemini, key: str = KEY, version: str = "v1beta") -> genai.Client:
    return genai_client(up.base_url, key, version)


@pytest.fixture
async def gc(gem: FakeGemini) -> AsyncIterator[genai.Client]:
    c = sdk(gem)
    yield c
    await c.aio.aclose()


async def raw(up: FakeGemini, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    h = {"x-goog-api-key": KEY, **(headers or {})}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.post(up.url + path, data=json.dumps(body).encode(), headers=h) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_plain_text_and_usage(gc: genai.Client, gem: FakeGemini) -> None:
    r = await gc.aio.models.generate_content(
        model="gemini-2.0-flash",
        contents="hello there",
        config=types.GenerateContentConfig(system_instruction="be brief"),
    )
    assert r.text == "echo: hello there"
    assert r.candidates and r.candidates[0].finish_reason == types.FinishReason.STOP
    u = r.usage_metadata
    assert u is not None
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (4, 3, 7)
    assert r.model_version == "gemini-2.0-flash"
    assert r.response_id
    assert gem.last_request.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert gem.last_request.headers["x-goog-api-key"] == KEY


async def test_thinking_models_report_thoughts(gc: genai.Client) -> None:
    r = await gc.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    u = r.usage_metadata
    assert u is not None and u.thoughts_token_count == 5
    assert u.total_token_count == (u.prompt_token_count or 0) + (u.candidates_token_count or 0) + 5


async def test_v1_and_key_query_parameter(gem: FakeGemini) -> None:
    c = sdk(gem, version="v1")
    assert (
        await c.aio.models.generate_content(model="gemini-2.0-flash", contents="v one")
    ).text == "echo: v one"
    await c.aio.aclose()
    assert gem.last_request.path == "/v1/models/gemini-2.0-flash:generateContent"
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gem.url}/v1beta/models/gemini-2.0-flash:generateContent?key={KEY}",
            json={"contents": [{"parts": [{"text": "q"}]}]},
        ) as r,
    ):
        assert r.status == 200


async def test_stream_is_sse_with_whole_usage_last(gc: genai.Client, gem: FakeGemini) -> None:
    chunks = [
        c
        async for c in await gc.aio.models.generate_content_stream(
            model="gemini-2.0-flash", contents="one two three four five"
        )
    ]
    assert "".join(c.text or "" for c in chunks) == "echo: one two three four five"
    assert len(chunks) == 3
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[0].usage_metadata and chunks[0].usage_metadata.candidates_token_count is None
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count == 6
    assert gem.last_request.query == {"alt": "sse"}


async def test_raw_stream_framing(gem: FakeGemini) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{gem.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
            json={"contents": [{"parts": [{"text": "a b c"}]}]},
            headers={"x-goog-api-key": KEY},
        ) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        body = await r.read()
    frames = [f for f in body.split(b"\r\n\r\n") if f]
    assert all(f.startswith(b"data: {") for f in frames)
    status, arr = await raw(
        gem,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        {"contents": [{"parts": [{"text": "a b c"}]}]},
    )
    assert status == 200 and isinstance(arr, list) and len(arr) == len(frames)


async def test_function_calls_parallel_and_round_trip(gc: genai.Client, gem: FakeGemini) -> None:
    tools = [types.Tool(function_declarations=[WEATHER, TIME])]
    cfg = types.GenerateContentConfig(tools=tools, automatic_function_calling=NO_AFC)
    ask = types.Content(role="user", parts=[types.Part(text="please call get_weather and get_time")])
    r = await gc.aio.models.generate_content(model="gemini-2.0-flash", contents=[ask], config=cfg)
    calls = r.function_calls or []
    assert [(c.name, c.args, c.id) for c in calls] == [
        ("get_weather", {"city": "sample"}, None),
        ("get_time", {"tz": "sample"}, None),
    ]
    assert r.candidates and r.candidates[0].content
    answers = [
        types.Part.from_function_response(name=c.name or "", response={"result": f"{c.name} ok"})
        for c in calls
    ]
    history = [ask, r.candidates[0].content, types.Content(role="user", parts=answers)]
    r2 = await gc.aio.models.generate_content(model="gemini-2.0-flash", contents=history, config=cfg)
    assert r2.text == "tool results: get_weather=get_weather ok; get_time=get_time ok"


async def test_forced_function_and_ids(gem: FakeGemini) -> None:
    gem.function_call_ids = True
    c = sdk(gem)
    cfg = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER, TIME])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=["get_time"]
            )
        ),
        automatic_function_calling=NO_AFC,
    )
    r = await c.aio.models.generate_content(model="gemini-2.0-flash", contents="anything", config=cfg)
    await c.aio.aclose()
    calls = r.function_calls or []
    assert [x.name for x in calls] == ["get_time"]
    assert calls[0].id


async def test_json_schema_and_images(gc: genai.Client) -> None:
    schema = types.Schema(
        type=types.Type.OBJECT,
        properties={
            "answer": types.Schema(type=types.Type.STRING),
            "n": types.Schema(type=types.Type.INTEGER),
        },
        required=["answer", "n"],
    )
    r = await gc.aio.models.generate_content(
        model="gemini-2.0-flash",
        contents="give json",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema),
    )
    assert set(json.loads(r.text or "")) == {"answer", "n"}
    png = types.Part.from_bytes(data=tiny_png("x"), mime_type="image/png")
    r = await gc.aio.models.generate_content(model="gemini-2.0-flash", contents=["what is it", png, png])
    assert r.text == "echo: what is it (saw 2 images)"


async def test_validation_errors_read_like_google(gem: FakeGemini) -> None:
    path = "/v1beta/models/gemini-2.0-flash:generateContent"
    hello = [{"role": "user", "parts": [{"text": "hi"}]}]
    cases: list[tuple[Any, str]] = [
        ({"contents": hello, "bogus": 1}, 'Unknown name "bogus": Cannot find field.'),
        ({"contents": []}, "contents is not specified"),
        (
            {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
            "Please use a valid role: user, model.",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
            "function response turn comes immediately after a function call turn",
        ),
        (
            {"contents": hello, "generationConfig": {"temperature": "hot"}},
            "Invalid value at 'generation_config.temperature' (TYPE_FLOAT)",
        ),
        (
            {
                "contents": hello,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"a": {"type": "string"}},
                                    "additionalProperties": False,
                                },
                            }
                        ]
                    }
                ],
            },
            "Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters'",
        ),
        (
            {
                "contents": hello,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": {
                                    "type": "OBJECT",
                                    "properties": {"u": {"type": "STRING", "format": "uri"}},
                                },
                            }
                        ]
                    }
                ],
            },
            "only 'date-time' and 'enum' are supported for STRING type",
        ),
    ]
    for body, needle in cases:
        status, err = await raw(gem, path, body)
        assert status == 400, body
        assert err["error"]["status"] == "INVALID_ARGUMENT"
        assert needle in err["error"]["message"], (needle, err)
    # snake_case field names are accepted, as Google's JSON parser accepts them
    status, _ = await raw(
        gem,
        path,
        {
            "contents": hello,
            "system_instruction": {"parts": [{"text": "s"}]},
            "generation_config": {"max_output_tokens": 5},
        },
    )
    assert status == 200


async def test_gemini_3_requires_thought_signatures(gem: FakeGemini) -> None:
    path = "/v1beta/models/gemini-3-pro-preview:generateContent"
    tools = [
        {
            "functionDeclarations": [
                {
                    "name": "get_time",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"tz": {"type": "STRING"}},
                        "required": ["tz"],
                    },
                }
            ]
        }
    ]
    ask = {"role": "user", "parts": [{"text": "call get_time"}]}
    status, r = await raw(gem, path, {"contents": [ask], "tools": tools})
    part = r["candidates"][0]["content"]["parts"][0]
    assert status == 200 and part["thoughtSignature"]
    answer = {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_time", "response": {"result": "noon"}}}],
    }
    status, _ = await raw(
        gem, path, {"contents": [ask, {"role": "model", "parts": [part]}, answer], "tools": tools}
    )
    assert status == 200
    unsigned = {"functionCall": part["functionCall"]}
    status, err = await raw(
        gem, path, {"contents": [ask, {"role": "model", "parts": [unsigned]}, answer], "tools": tools}
    )
    assert status == 400
    assert "missing a thought_signature" in err["error"]["message"]


async def test_keys_models_and_unknown_model(gem: FakeGemini) -> None:
    for key, code, status in [("wrong", 400, "INVALID_ARGUMENT")]:
        c = sdk(gem, key=key)
        with pytest.raises(errors.ClientError) as e:
            await c.aio.models.generate_content(model="gemini-2.0-flash", contents="x")
        await c.aio.aclose()
        assert (e.value.code, e.value.status) == (code, status)
        assert e.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    url = f"{gem.url}/v1beta/models/gemini-2.0-flash:generateContent"
    async with aiohttp.ClientSession() as s, s.post(url, json={"contents": []}) as r:
        assert r.status == 403
        assert (await r.json())["error"]["status"] == "PERMISSION_DENIED"
    c = sdk(gem)
    names = [m.name async for m in await c.aio.models.list()]
    assert "models/gemini-2.0-flash" in names
    with pytest.raises(errors.ClientError) as e:
        await c.aio.models.generate_content(model="gemini-9", contents="x")
    await c.aio.aclose()
    assert (e.value.code, e.value.status) == (404, "NOT_FOUND")


async def test_faults(gc: genai.Client, gem: FakeGemini) -> None:
    gem.set_fault("status=429;retry_after=7", times=1)
    with pytest.raises(errors.ClientError) as e:
        await gc.aio.models.generate_content(model="gemini-2.0-flash", contents="x")
    assert (e.value.code, e.value.status) == (429, "RESOURCE_EXHAUSTED")
    retry = [d for d in e.value.details["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
    for status, name in [(500, "INTERNAL"), (503, "UNAVAILABLE"), (400, "INVALID_ARGUMENT")]:
        gem.set_fault(f"status={status}", times=1)
        with pytest.raises(errors.APIError) as e2:
            await gc.aio.models.generate_content(model="gemini-2.0-flash", contents="x")
        assert (e2.value.code, e2.value.status) == (status, name)
    assert (await gc.aio.models.generate_content(model="gemini-2.0-flash", contents="ok")).text == "echo: ok"
    gem.set_fault("bad_json", times=1)
    with pytest.raises(Exception):  # noqa: B017 - the SDK raises json's error for a truncated body
        await gc.aio.models.generate_content(model="gemini-2.0-flash", contents="x")


async def test_stream_faults_and_disconnects(gem: FakeGemini) -> None:
    body = {"contents": [{"parts": [{"text": " ".join(["w"] * 40)}]}]}
    url = f"{gem.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    h = {"x-goog-api-key": KEY, "x-fake-fault": "drop_after=2"}
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body, headers=h) as r:
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        h["x-fake-fault"] = "chunk_delay=0.05"
        async with s.post(url, json=body, headers=h) as r:
            await r.content.readuntil(b"\r\n\r\n")
        await gem.wait_for_disconnect(1, within=2)
    assert len(gem.stream_disconnects) == 1


async def test_embeddings(gc: genai.Client, gem: FakeGemini) -> None:
    r = await gc.aio.models.embed_content(
        model="text-embedding-004",
        contents=["a b", "c"],
        config=types.EmbedContentConfig(output_dimensionality=8),
    )
    assert r.embeddings and [len(e.values or []) for e in r.embeddings] == [8, 8]
    again = await gc.aio.models.embed_content(model="text-embedding-004", contents=["a b"])
    assert again.embeddings and len(again.embeddings[0].values or []) == 768
    assert gem.last_request.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    with pytest.raises(errors.ClientError):
        await gc.aio.models.embed_content(model="gemini-2.0-flash", contents=["a"])


async def test_blocked_prompt(gem: FakeGemini) -> None:
    status, r = await raw(
        gem,
        "/v1beta/models/gemini-2.0-flash:generateContent",
        {"contents": [{"parts": [{"text": "bad [[block]]"}]}]},
    )
    assert status == 200
    assert r["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in r
