"""Legacy completions, embeddings and image generation through the real gateway, the official
openai SDK as the client, FakeOpenAI as the upstream; and the ledger record each call leaves."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def config(upstream: FakeOpenAI) -> dict[str, Any]:
    return {
        "usage": {"flush_interval": 0.05},
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [
            {"name": "instruct", "provider": "fake", "model": "gpt-3.5-turbo-instruct",
             "price": {"input": 1.5, "output": 2.0}},
            {"name": "chatty", "provider": "fake", "model": "gpt-4o", "completions": "chat"},
            {"name": "embed", "provider": "fake", "model": "text-embedding-3-small",
             "price": {"input": 0.02}},
            {"name": "dalle", "provider": "fake", "model": "dall-e-2", "price": {"per_image": 0.02}},
        ],
    }  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    g = await start_gateway(tmp_path_factory.mktemp("openai_more"), config(upstream))
    try:
        yield g
    finally:
        g.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gw: GatewayProc) -> tuple[str, str]:
    return await gw.create_key("more")


@pytest_asyncio.fixture(loop_scope="session")
async def oai(gw: GatewayProc, key: tuple[str, str]) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=gw.v1, api_key=key[1], max_retries=0, timeout=20)
    try:
        yield c
    finally:
        await c.close()


def rid() -> dict[str, str]:
    return {"x-request-id": "t-" + uuid.uuid4().hex}


async def record(gw: GatewayProc, key_id: str, request_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        _, body = await gw.admin("GET", f"/admin/v1/usage?key_id={key_id}&limit=1000")
        return next((r for r in body["data"] if r["request_id"] == request_id), None)

    rec: dict[str, Any] = await wait_until(find, timeout=10)
    return rec


# -- legacy completions -----------------------------------------------------------------------


async def test_completion_native(
    oai: openai.AsyncOpenAI, upstream: FakeOpenAI, gw: GatewayProc, key: tuple[str, str]
) -> None:
    h = rid()
    r = await oai.completions.create(model="instruct", prompt="hello there", max_tokens=10, extra_headers=h)
    assert r.object == "text_completion"
    assert r.choices[0].text == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.total_tokens > 0
    sent = upstream.requests_to("/v1/completions")[-1].json
    assert sent == {"model": "gpt-3.5-turbo-instruct", "prompt": "hello there", "max_tokens": 10}
    rec = await record(gw, key[0], h["x-request-id"])
    assert (rec["endpoint"], rec["model"], rec["status"], rec["streamed"]) == (
        "completions",
        "instruct",
        200,
        False,
    )
    assert rec["prompt_tokens"] == r.usage.prompt_tokens
    assert rec["completion_tokens"] == r.usage.completion_tokens
    want = (r.usage.prompt_tokens * 1.5 + r.usage.completion_tokens * 2.0) / 1e6
    assert rec["cost_usd"] == pytest.approx(want)


async def test_completion_native_stream_is_metered_without_showing_usage(
    oai: openai.AsyncOpenAI, upstream: FakeOpenAI, gw: GatewayProc, key: tuple[str, str]
) -> None:
    h = rid()
    stream = await oai.completions.create(
        model="instruct", prompt="one two three four", stream=True, extra_headers=h
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: one two three four"
    assert all(c.object == "text_completion" and c.usage is None for c in chunks)
    assert upstream.requests_to("/v1/completions")[-1].json["stream_options"] == {"include_usage": True}
    rec = await record(gw, key[0], h["x-request-id"])
    assert rec["streamed"] is True
    assert rec["completion_tokens"] > 0
    assert rec["usage_estimated"] is False


async def test_completion_via_chat(
    oai: openai.AsyncOpenAI, upstream: FakeOpenAI, gw: GatewayProc, key: tuple[str, str]
) -> None:
    h = rid()
    r = await oai.completions.create(model="chatty", prompt="say it", temperature=0.5, extra_headers=h)
    assert r.object == "text_completion"
    assert r.id.startswith("cmpl-")
    assert r.choices[0].text == "echo: say it"
    assert r.choices[0].logprobs is None
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [{"role": "user", "content": "say it"}]
    assert sent["max_tokens"] == 16  # the legacy default, kept
    assert sent["temperature"] == 0.5
    rec = await record(gw, key[0], h["x-request-id"])
    assert rec["endpoint"] == "completions"
    assert rec["meta"] == {"completions_via": "chat"}
    assert rec["prompt_tokens"] == r.usage.prompt_tokens


async def test_completion_via_chat_stream(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.completions.create(
        model="chatty", prompt="a b c d e", stream=True, max_tokens=50, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "echo: a b c d e"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


async def test_completion_via_chat_ends_with_done(gw: GatewayProc, key: tuple[str, str]) -> None:
    body = {"model": "chatty", "prompt": "x y", "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.v1 + "/completions", json=body, headers={"authorization": f"Bearer {key[1]}"}) as r,
    ):
        raw = await r.read()
    assert raw.endswith(b"data: [DONE]\n\n")


async def test_completion_legacy_only_params_are_refused_for_a_chat_model(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        await oai.completions.create(model="chatty", prompt="x", echo=True)
    assert e.value.code == "unsupported_for_chat_model"
    with pytest.raises(openai.BadRequestError):
        await oai.completions.create(model="chatty", prompt=["a", "b"])


async def test_completion_validation(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError):
        await oai.completions.create(model="instruct", prompt={"x": 1})  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await oai.completions.create(model="instruct", prompt="x", temperature=3)


# -- embeddings -------------------------------------------------------------------------------


async def test_embeddings_float_and_base64_agree(
    oai: openai.AsyncOpenAI, upstream: FakeOpenAI, gw: GatewayProc, key: tuple[str, str]
) -> None:
    h = rid()
    f = await oai.embeddings.create(
        model="embed", input="the quick fox", encoding_format="float", extra_headers=h
    )
    b = await oai.embeddings.create(model="embed", input="the quick fox", encoding_format="base64")
    d = await oai.embeddings.create(model="embed", input="the quick fox")  # the SDK asks base64, decodes
    vec = f.data[0].embedding
    assert len(vec) == 1536
    raw = base64.b64decode(b.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vec
    assert d.data[0].embedding == vec
    assert upstream.requests_to("/v1/embeddings")[-3].json["model"] == "text-embedding-3-small"
    assert f.usage.prompt_tokens > 0
    rec = await record(gw, key[0], h["x-request-id"])
    assert (rec["endpoint"], rec["model"], rec["provider"]) == ("embeddings", "embed", "fake")
    assert rec["prompt_tokens"] == f.usage.prompt_tokens
    assert rec["completion_tokens"] == 0
    assert rec["cost_usd"] == pytest.approx(f.usage.prompt_tokens * 0.02 / 1e6)
    assert rec["meta"] == {"inputs": 1}


async def test_embeddings_dimensions_and_lists(oai: openai.AsyncOpenAI) -> None:
    r = await oai.embeddings.create(model="embed", input="abc", dimensions=256, encoding_format="float")
    assert len(r.data[0].embedding) == 256
    r = await oai.embeddings.create(model="embed", input=["a", "b b", "c c c"], encoding_format="float")
    assert [e.index for e in r.data] == [0, 1, 2]
    assert r.data[0].embedding != r.data[1].embedding
    r = await oai.embeddings.create(model="fake/text-embedding-3-small", input=[[1, 2, 3], [4, 5]])
    assert len(r.data) == 2
    assert r.usage.prompt_tokens == 5


async def test_embeddings_validation(oai: openai.AsyncOpenAI) -> None:
    for bad in ([], "", [""], [1, "a"], 7):
        with pytest.raises((openai.BadRequestError, openai.UnprocessableEntityError)):
            await oai.embeddings.create(model="embed", input=bad)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await oai.embeddings.create(model="embed", input="x", encoding_format="int8")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await oai.embeddings.create(model="embed", input="x", dimensions=0)


async def test_embeddings_on_a_model_that_cannot_embed_is_the_upstream_400(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await oai.embeddings.create(model="chatty", input="x")


# -- images -----------------------------------------------------------------------------------


async def test_images_url_and_b64(oai: openai.AsyncOpenAI, gw: GatewayProc, key: tuple[str, str]) -> None:
    h = rid()
    r = await oai.images.generate(model="dalle", prompt="a red fox", n=2, size="256x256", extra_headers=h)
    assert r.data is not None
    assert len(r.data) == 2
    async with aiohttp.ClientSession() as s, s.get(r.data[0].url or "") as img:
        assert (await img.read()).startswith(b"\x89PNG")
    r = await oai.images.generate(model="dalle", prompt="a blue fox", response_format="b64_json")
    assert r.data is not None
    assert base64.b64decode(r.data[0].b64_json or "").startswith(b"\x89PNG")
    rec = await record(gw, key[0], h["x-request-id"])
    assert (rec["endpoint"], rec["model"], rec["status"]) == ("images", "dalle", 200)
    assert rec["meta"] == {"images": 2, "size": "256x256"}
    assert rec["cost_usd"] == pytest.approx(0.04)


async def test_images_validation(oai: openai.AsyncOpenAI, gw: GatewayProc, key: tuple[str, str]) -> None:
    h = rid()
    with pytest.raises(openai.BadRequestError) as e:
        await oai.images.generate(model="dalle", prompt="x", size="100x100", extra_headers=h)
    assert e.value.param == "size"
    with pytest.raises(openai.BadRequestError) as e:
        await oai.images.generate(model="dalle", prompt="x" * 4001)
    assert e.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as e:
        await oai.images.generate(model="dalle", prompt="x", n=5)
    assert e.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        await oai.images.generate(model="dalle", prompt="x", quality="ultra")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await oai.images.generate(model="dalle", prompt="x", response_format="png")  # type: ignore[arg-type]
    # A refused call is recorded too, with its model, free.
    rec = await record(gw, key[0], h["x-request-id"])
    assert (rec["endpoint"], rec["model"], rec["status"], rec["cost_usd"]) == ("images", "dalle", 400, 0.0)


# -- every endpoint: scopes, and no 500 for any input ------------------------------------------


async def test_scopes_are_enforced(gw: GatewayProc) -> None:
    _, only_chat = await gw.create_key("chat-only", scopes=["chat"])
    c = openai.AsyncOpenAI(base_url=gw.v1, api_key=only_chat, max_retries=0)
    try:
        with pytest.raises(openai.PermissionDeniedError):
            await c.completions.create(model="instruct", prompt="x")
        with pytest.raises(openai.PermissionDeniedError):
            await c.embeddings.create(model="embed", input="x")
        with pytest.raises(openai.PermissionDeniedError):
            await c.images.generate(model="dalle", prompt="x")
    finally:
        await c.close()


ODD_BODIES: list[Any] = [
    None, [], "x", 1, {}, {"model": 1}, {"model": ""}, {"model": "nope/nope", "prompt": "x", "input": "x"},
    {"model": "embed", "input": {"a": 1}}, {"model": "dalle", "prompt": None},
    {"model": "dalle", "prompt": "x", "n": "2"}, {"model": "dalle", "prompt": "x", "n": True},
    {"model": "dalle", "prompt": "x", "size": 5}, {"model": "instruct", "prompt": [[1, "a"]]},
    {"model": "instruct", "prompt": "x", "stop": [1]},
    {"model": "instruct", "prompt": "x", "stream_options": 3},
    {"model": "embed", "input": "x", "dimensions": 1.5},
    {"model": "chatty", "prompt": [1, 2]}, {"model": "instruct", "prompt": "x", "logprobs": 9},
]  # fmt: skip


@pytest.mark.parametrize("path", ["/completions", "/embeddings", "/images/generations"])
async def test_no_500_for_odd_input(gw: GatewayProc, key: tuple[str, str], path: str) -> None:
    h = {"authorization": f"Bearer {key[1]}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as s:
        for body in [*ODD_BODIES, b"{not json"]:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            async with s.post(gw.v1 + path, data=data, headers=h) as r:
                out = await r.json(content_type=None)
                assert 400 <= r.status < 500, (path, body, r.status, out)
                assert set(out) == {"error", "request_id"}, out
                assert out["error"]["message"]
