"""The task API (/llm/...) through the real gateway: aiohttp as the client, FakeOpenAI upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = "task-secret-Zq81-äö"
M = {"model": "openai/gpt-4o"}
CLASSES = [
    {"id": "positive", "label": "Positive sentiment"},
    {"id": "negative", "label": "Negative sentiment"},
    {"id": "neutral", "label": "Neutral sentiment"},
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def odd() -> AsyncIterator[str]:
    """An upstream whose model ignores the schema and answers a class that was not offered."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        message = {"role": "assistant", "content": '{"class": "banana"}'}
        return web.json_response({
            "id": "chatcmpl-odd", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        })  # fmt: skip

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(
    upstream: FakeOpenAI, odd: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayProc]:
    cfg = {
        "usage": {"flush_interval": 0.05},
        "providers": {
            "openai": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY},
            "odd": {"type": "openai", "base_url": odd, "api_key": "sk-odd"},
        },
        "models": [{"name": "gpt4", "provider": "openai", "model": "gpt-4o"}],
    }
    g = await start_gateway(tmp_path_factory.mktemp("tasks"), cfg, env={"SECRET_TOKEN": SECRET})
    try:
        yield g
    finally:
        g.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gw: GatewayProc) -> tuple[str, str]:
    return await gw.create_key("tasks")


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    s: aiohttp.ClientSession, gw: GatewayProc, path: str, body: Any = None, key: str | None = None,
    method: str = "POST", headers: dict[str, str] | None = None,
) -> tuple[int, Any]:  # fmt: skip
    h = dict(headers or {})
    if key is not None:
        h["x-api-key"] = key
    async with s.request(method, gw.url + path, json=body, headers=h) as r:
        return r.status, await r.json(content_type=None)


def assert_task_error(status: int, body: Any, want: int, words: str) -> None:
    assert status == want, body
    assert set(body) == {"status", "error", "content", "usage"}, body
    assert body["status"] == "error"
    assert body["content"] is None
    assert body["usage"] is None
    assert words in body["error"], body


async def test_status_and_providers(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str]
) -> None:
    assert await call(http, gw, "/", key=key[1], method="GET") == (
        200, {"status": "success", "api_status": "up", "providers": ["OPENAI", "ODD"]},
    )  # fmt: skip
    assert await call(http, gw, "/llm/providers", key=key[1], method="GET") == (
        200, {"status": "success", "providers": ["openai", "odd"]},
    )  # fmt: skip
    status, body = await call(http, gw, "/llm/providers", method="GET")
    assert_task_error(status, body, 401, "X-API-Key")


async def test_generation(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str], upstream: FakeOpenAI
) -> None:
    body = {**M, "prompt": "You are helpful.", "user_prompt": "What is the capital of France?",
            "temperature": 0.7, "max_tokens": 150}  # fmt: skip
    status, out = await call(http, gw, "/llm/generation", body, key[1])
    assert status == 200, out
    assert out["status"] == "success"
    assert out["content"] == "echo: What is the capital of France?"
    u = out["usage"]
    assert set(u) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 0
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert (sent["temperature"], sent["max_tokens"]) == (0.7, 150)
    # Defaults, and a configured model name instead of provider/model.
    status, out = await call(http, gw, "/llm/generation", {"model": "gpt4", "user_prompt": "hi"}, key[1])
    assert status == 200, out
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 4096)
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


async def test_classification_is_constrained_to_the_classes(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str], upstream: FakeOpenAI
) -> None:
    body = {
        "model": "openai/gpt-4o",
        "user_prompt": "This movie was absolutely terrible.",
        "classes": CLASSES,
    }
    status, out = await call(http, gw, "/llm/classification", body, key[1])
    assert status == 200, out
    assert out["status"] == "success"
    assert out["content"] in CLASSES
    assert out["usage"]["total_tokens"] > 0
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    rf = sent["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"]["properties"]["class"]["enum"] == ["positive", "negative", "neutral"]
    assert "Negative sentiment" in sent["messages"][0]["content"]


async def test_classification_answer_outside_the_classes_is_an_error(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str]
) -> None:
    body = {"model": "odd/any-model", "user_prompt": "meh", "classes": CLASSES}
    h = {"x-request-id": "task-odd-1"}
    status, out = await call(http, gw, "/llm/classification", body, key[1], headers=h)
    assert_task_error(status, out, 502, "not one of the given classes")
    assert "banana" in out["error"]

    async def rec() -> dict[str, Any] | None:
        _, b = await gw.admin("GET", f"/admin/v1/usage?key_id={key[0]}&limit=1000")
        return next((r for r in b["data"] if r["request_id"] == "task-odd-1"), None)

    r = await wait_until(rec)
    # The answer was refused, but the upstream's tokens were spent: they are metered.
    assert (r["status"], r["prompt_tokens"], r["completion_tokens"]) == (502, 7, 3)
    # The purpose-built upstream's model is in no price table: the record says so.
    assert (r["dialect"], r["endpoint"], r["meta"]) == (
        "tasks",
        "chat",
        {"task": "classification", "unpriced": True},
    )


async def test_summarization(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str], upstream: FakeOpenAI
) -> None:
    body = {"model": "openai/gpt-4o", "user_prompt": "Long article text here", "temperature": 0.3}
    status, out = await call(http, gw, "/llm/summarization", body, key[1])
    assert status == 200, out
    assert out["content"] == {"summary": "echo: Long article text here"}
    assert out["usage"]["total_tokens"] > 0
    sent = upstream.requests_to("/v1/chat/completions")[-1].json
    assert "Summarize" in sent["messages"][0]["content"]


async def test_streamed_generation(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str]
) -> None:
    body = {"model": "openai/gpt-4o", "user_prompt": "one two three four five six"}
    async with http.post(gw.url + "/llm/generation/stream", json=body, headers={"x-api-key": key[1]}) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = await r.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    chunks = [json.loads(e[6:]) for e in events]
    assert all(set(c) == {"id", "text", "is_final", "usage"} for c in chunks)
    *parts, final = chunks
    assert len(parts) >= 2
    assert all(c["is_final"] is False and c["usage"] is None for c in parts)
    assert final["is_final"] is True
    assert final["text"] == "".join(c["text"] for c in parts) == "echo: one two three four five six"
    assert (
        final["usage"]["total_tokens"]
        == final["usage"]["prompt_tokens"] + final["usage"]["completion_tokens"]
    )
    assert final["usage"]["completion_tokens"] > 0
    assert len({c["id"] for c in chunks}) == len(chunks)


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/llm/generation", {**M, "user_prompt": "x", "temperature": 2}, 400, "temperature"),
        ("/llm/generation", {**M, "user_prompt": "x", "temperature": "hot"}, 400, "temperature"),
        ("/llm/generation", {**M, "user_prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
        ("/llm/generation", {**M, "user_prompt": "x", "max_tokens": 40000}, 400, "max_tokens"),
        ("/llm/generation", {**M, "user_prompt": "x", "max_tokens": 1.5}, 400, "max_tokens"),
        ("/llm/generation", M, 400, "user_prompt"),
        ("/llm/generation", {**M, "user_prompt": "  "}, 400, "user_prompt"),
        ("/llm/generation", {**M, "user_prompt": "x", "prompt": ["a"]}, 400, "prompt"),
        ("/llm/generation", {"user_prompt": "x"}, 400, "model"),
        ("/llm/generation", ["not", "an", "object"], 400, "JSON object"),
        ("/llm/classification", {**M, "user_prompt": "x"}, 400, "classes"),
        ("/llm/classification", {**M, "user_prompt": "x", "classes": []}, 400, "classes"),
        ("/llm/classification", {**M, "user_prompt": "x", "classes": [{"id": "a"}]}, 400, "classes[0]"),
        ("/llm/classification", {**M, "user_prompt": "x", "classes": ["a"]}, 400, "classes[0]"),
        ("/llm/classification", {**M, "user_prompt": "x", "classes": [{"id": "a", "label": "A"}] * 2}, 400,
         "unique"),
        ("/llm/generation", {"model": "nowhere/x", "user_prompt": "x"}, 404, "nowhere/x"),
        ("/llm/generation/stream", {**M, "user_prompt": 5}, 400, "user_prompt"),
    ],
)  # fmt: skip
async def test_validation_errors(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str], path: str, body: Any, status: int,
    words: str,
) -> None:  # fmt: skip
    got, out = await call(http, gw, path, body, key[1])
    assert_task_error(got, out, status, words)


async def test_invalid_json_is_a_task_error(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str]
) -> None:
    async with http.post(gw.url + "/llm/generation", data=b"{oops", headers={"x-api-key": key[1]}) as r:
        assert_task_error(r.status, await r.json(content_type=None), 400, "JSON")


async def test_auth(http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str]) -> None:
    body = {"model": "openai/gpt-4o", "user_prompt": "hi"}
    status, out = await call(http, gw, "/llm/generation", body)
    assert_task_error(status, out, 401, "X-API-Key")
    status, out = await call(http, gw, "/llm/generation", body, "sg-wrong")
    assert_task_error(status, out, 401, "Incorrect API key")
    status, out = await call(http, gw, "/llm/generation", body, SECRET + "x")
    assert_task_error(status, out, 401, "Incorrect API key")
    status, out = await call(http, gw, "/llm/generation", body, headers={"authorization": f"Bearer {key[1]}"})
    assert status == 200, out
    _, chat_less = await gw.create_key("no-chat", scopes=["embeddings"])
    status, out = await call(http, gw, "/llm/generation", body, chat_less)
    assert_task_error(status, out, 403, "scope")


async def test_secret_token_is_accepted_and_metered_as_its_own_principal(
    http: aiohttp.ClientSession, gw: GatewayProc
) -> None:
    body = {"model": "openai/gpt-4o", "user_prompt": "hi"}
    async with http.post(gw.url + "/llm/generation", json=body,
                         headers={"x-api-key": SECRET, "x-request-id": "task-secret-1"}) as r:  # fmt: skip
        assert r.status == 200, await r.text()
    status, _ = await call(http, gw, "/", key=SECRET, method="GET")
    assert status == 200

    async def rec() -> dict[str, Any] | None:
        _, b = await gw.admin("GET", "/admin/v1/usage?key_id=env:SECRET_TOKEN")
        return next((r for r in b["data"] if r["request_id"] == "task-secret-1"), None)

    r = await wait_until(rec)
    assert (r["status"], r["dialect"], r["model"]) == (200, "tasks", "openai/gpt-4o")
    assert r["prompt_tokens"] > 0


async def test_secret_token_is_refused_where_it_is_not_configured(
    http: aiohttp.ClientSession, gateway: GatewayProc
) -> None:
    status, out = await call(
        http, gateway, "/llm/generation", {"model": "gpt-4o", "user_prompt": "x"}, SECRET
    )
    assert_task_error(status, out, 401, "Incorrect API key")


ODD: list[Any] = [
    None, 1, "x", [], {}, {"model": 5, "user_prompt": "x"}, {**M, "user_prompt": {"a": 1}},
    {**M, "user_prompt": "x", "temperature": None, "max_tokens": None, "prompt": None},
    {**M, "user_prompt": "x", "temperature": True}, {**M, "user_prompt": "x", "classes": {"id": "a"}},
    {**M, "user_prompt": "x", "classes": [{"id": "", "label": "e"}]},
    {**M, "user_prompt": "x", "classes": [None]},
    {"model": "openai", "user_prompt": "x"}, {"model": "/x", "user_prompt": "x"},
]  # fmt: skip


@pytest.mark.parametrize(
    "path", ["/llm/generation", "/llm/classification", "/llm/summarization", "/llm/generation/stream"]
)
async def test_no_500_for_odd_input(
    http: aiohttp.ClientSession, gw: GatewayProc, key: tuple[str, str], path: str
) -> None:
    for body in ODD:
        async with http.post(gw.url + path, data=orjson.dumps(body), headers={"x-api-key": key[1]}) as r:
            raw = await r.read()
            if r.status == 200:  # the all-defaults body is valid, but for classification (no classes)
                assert path != "/llm/classification"
                continue
            out = orjson.loads(raw)
            assert 400 <= r.status < 500, (path, body, r.status, out)
            assert out["status"] == "error" and out["error"], out
