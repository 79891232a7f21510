"""Every error path of the gateway: the right status, the OpenAI error shape, no leak, never a 500."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc

pytestmark = pytest.mark.asyncio(loop_scope="session")
MSG = [{"role": "user", "content": "hello"}]


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(autouse=True)
def _clean_upstream(upstream: FakeOpenAI) -> Any:
    upstream.clear_fault()
    yield
    upstream.clear_fault()


async def post(
    s: aiohttp.ClientSession,
    gw: GatewayProc,
    key: str | None,
    body: Any,
    raw: bytes | None = None,
    path: str = "/chat/completions",
) -> tuple[int, dict[str, Any], Any]:
    h = {"content-type": "application/json"}
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    data = io.BytesIO(raw if raw is not None else json.dumps(body).encode())
    async with s.post(gw.v1 + path, data=data, headers=h) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.json(content_type=None)


def assert_openai_error(body: Any, code: str | None = None, type_: str | None = None) -> None:
    assert set(body) == {"error", "request_id"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if type_ is not None:
        assert body["error"]["type"] == type_, body


async def test_invalid_json_is_400(http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str) -> None:
    status, headers, body = await post(http, gateway, api_key, None, raw=b'{"model": "gpt-4o", "messages": [')
    assert status == 400
    assert_openai_error(body, "invalid_json", "invalid_request_error")
    assert headers["x-request-id"] == body["request_id"]


async def test_missing_field_is_422_and_bad_value_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as e:
        await client.chat.completions.create(model="gpt-4o", messages=None)  # type: ignore[arg-type]
    assert e.value.status_code == 422
    assert e.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as e2:
        await client.chat.completions.create(model="gpt-4o", messages=MSG, temperature=5)  # type: ignore[arg-type]
    assert e2.value.body["param"] == "temperature"  # type: ignore[index]


@pytest.mark.parametrize(
    ("key", "code"),
    [(None, "missing_api_key"), ("sg-short", "invalid_api_key"), ("sk-" + "a" * 46, "invalid_api_key")],
)
async def test_bad_keys_are_401(
    http: aiohttp.ClientSession, gateway: GatewayProc, key: str | None, code: str
) -> None:
    status, _, body = await post(http, gateway, key, {"model": "gpt-4o", "messages": MSG})
    assert status == 401
    assert_openai_error(body, code, "authentication_error")


async def test_well_formed_unknown_key_is_401(gateway: GatewayProc) -> None:
    from stellargate import apikeys

    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=apikeys.generate(), max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    await c.close()
    assert e.value.code == "invalid_api_key"


async def test_revoked_and_expired_keys_are_refused_on_their_next_request(gateway: GatewayProc) -> None:
    kid, key = await gateway.create_key("to-revoke")
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    status, _ = await gateway.admin("POST", f"/admin/v1/keys/{kid}/revoke")
    assert status == 200
    with pytest.raises(openai.AuthenticationError) as e:
        await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert e.value.code == "key_revoked"
    await c.close()

    _, short = await gateway.create_key("short-lived", expires_in="1s")
    c2 = openai.AsyncOpenAI(base_url=gateway.v1, api_key=short, max_retries=0)
    await c2.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    await asyncio.sleep(1.1)
    with pytest.raises(openai.AuthenticationError) as e:
        await c2.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert e.value.code == "key_expired"
    await c2.close()


async def test_model_not_allowed_and_scope_missing_are_403(gateway: GatewayProc) -> None:
    _, key = await gateway.create_key("mini-only", models=["mini", "fake/*"])
    c = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    await c.chat.completions.create(model="mini", messages=MSG)  # type: ignore[arg-type]
    await c.chat.completions.create(model="fake/gpt-4o", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError) as e:
        await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert e.value.code == "model_not_allowed"
    assert [m.id for m in (await c.models.list()).data] == ["mini"]
    await c.close()

    _, key2 = await gateway.create_key("models-only", scopes=["models"])
    c2 = openai.AsyncOpenAI(base_url=gateway.v1, api_key=key2, max_retries=0)
    assert (await c2.models.list()).data
    with pytest.raises(openai.PermissionDeniedError) as e:
        await c2.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    assert e.value.code == "scope_not_allowed"
    await c2.close()


async def test_unknown_model_route_and_method(
    client: openai.AsyncOpenAI, http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str
) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        await client.chat.completions.create(model="no-such-model", messages=MSG)  # type: ignore[arg-type]
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="nosuchprovider/x", messages=MSG)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")
    status, _, body = await post(http, gateway, api_key, {}, path="/nothing/here")
    assert status == 404
    assert_openai_error(body, "unknown_route")
    async with http.get(gateway.v1 + "/chat/completions") as r:
        assert r.status == 405
        assert_openai_error(await r.json(), "method_not_allowed")


async def test_body_too_large_is_413(http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str) -> None:
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    status, _, body = await post(http, gateway, api_key, big)
    assert status == 413
    assert_openai_error(body, "payload_too_large")


async def test_upstream_rate_limit_is_429_with_retry_after(
    http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    upstream.set_fault("status=429;retry_after=7", times=1)
    status, headers, body = await post(http, gateway, api_key, {"model": "gpt-4o", "messages": MSG})
    assert status == 429
    assert headers["retry-after"] == "7"
    assert_openai_error(body, type_="rate_limit_error")


async def test_upstream_auth_failure_is_502_and_never_leaks_the_provider_key(
    http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str
) -> None:
    status, _, body = await post(http, gateway, api_key, {"model": "badauth", "messages": MSG})
    assert status == 502
    assert_openai_error(body, "upstream_auth_error")
    text = str(body)
    assert "sk-wrong" not in text
    assert "provider-key" not in text
    assert "sk-wr" not in text
    assert "sk-wrong-provider-key-123" not in gateway.log()


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("status=500", 502, "upstream_error"),
        ("status=503", 503, "upstream_unavailable"),
        ("bad_json", 502, "upstream_error"),
    ],
)
async def test_upstream_failures_map_to_5xx(
    http: aiohttp.ClientSession,
    gateway: GatewayProc,
    api_key: str,
    upstream: FakeOpenAI,
    fault: str,
    status: int,
    code: str,
) -> None:
    upstream.set_fault(fault, times=1)
    got, _, body = await post(http, gateway, api_key, {"model": "gpt-4o", "messages": MSG})
    assert got == status
    assert_openai_error(body, code)


async def test_connection_refused_is_503(
    http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str
) -> None:
    status, _, body = await post(http, gateway, api_key, {"model": "down", "messages": MSG})
    assert status == 503
    assert_openai_error(body, "upstream_connect_failed")


async def test_slow_first_byte_is_504(
    http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    upstream.set_fault("slow_first_byte=3", times=1)
    t = time.monotonic()
    status, _, body = await post(http, gateway, api_key, {"model": "slow", "messages": MSG})
    assert status == 504
    assert_openai_error(body, "upstream_timeout_first_byte", "timeout_error")
    assert time.monotonic() - t < 2.0


@pytest.mark.parametrize(
    ("fault", "code"), [("stall_after=3", "upstream_timeout_idle"), ("drop_after=3", "upstream_disconnected")]
)
async def test_mid_stream_failure_ends_with_an_error_event(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI, fault: str, code: str
) -> None:
    upstream.set_fault(fault, times=1)
    stream = await client.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": " ".join(["w"] * 40)}], stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as e:
        async for c in stream:
            got.extend(ch.delta.content or "" for ch in c.choices)
    assert got, "some chunks arrive before the failure"
    assert e.value.code == code


async def test_client_disconnect_cancels_the_upstream_within_a_second(
    gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    before = len(upstream.stream_disconnects)
    upstream.set_fault("stall_after=2", times=1)
    body = {"model": "gpt-4o", "messages": MSG, "stream": True}
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            gateway.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {api_key}"}
        )
        await r.content.readany()
        closed_at = time.monotonic()
        r.close()  # the client goes away mid-stream
    seen = await upstream.wait_for_disconnect(before + 1, within=5)
    assert seen - closed_at < 1.0


async def test_strange_bodies_never_produce_a_500(
    http: aiohttp.ClientSession, gateway: GatewayProc, api_key: str
) -> None:
    bodies: list[Any] = [
        [],
        "x",
        1,
        None,
        {"model": None},
        {"model": ["a"]},
        {"model": "gpt-4o", "messages": "hi"},
        {"model": "gpt-4o", "messages": [1]},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]},
        {"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        {"model": "gpt-4o", "messages": MSG, "tools": "x"},
        {"model": "gpt-4o", "messages": MSG, "tools": [1]},
        {"model": "gpt-4o", "messages": MSG, "response_format": {"type": "json_schema"}},
        {"model": "gpt-4o", "messages": MSG, "stream_options": 3},
        {"model": "gpt-4o", "messages": MSG, "n": True},
        {"model": "gpt-4o", "messages": [{"role": "assistant", "tool_calls": [{"id": 1}]}]},
        {"model": "x" * 10000, "messages": MSG},
    ]
    for b in bodies:
        status, _, body = await post(http, gateway, api_key, b)
        assert 400 <= status < 500, (b, status, body)
        assert_openai_error(body)
    for raw in [b"", b"\xff\xfe", b"{" * 5000, b'{"model": "gpt-4o", "messages": [], }']:
        status, _, body = await post(http, gateway, api_key, None, raw=raw)
        assert status == 400, raw
        assert_openai_error(body)
    assert "Traceback" not in gateway.log()


async def test_upstream_key_is_sent_and_client_key_is_not(
    upstream: FakeOpenAI, client: openai.AsyncOpenAI
) -> None:
    await client.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    h = upstream.requests_to("/v1/chat/completions")[-1].headers
    assert h["authorization"] == f"Bearer {UPSTREAM_KEY}"
