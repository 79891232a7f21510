"""Idempotency-Key through the real gateway: replay byte for byte, 409 while running, 422 on
another body, failures not kept, and one execution across two workers sharing Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes._faults import fault_marker
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc, start_gateway

pytestmark = pytest.mark.asyncio(loop_scope="session")
REDIS_URL = "redis://127.0.0.1:6379/0"


def chat_body(text: str, stream: bool = False) -> bytes:
    return orjson.dumps(
        {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": text}]}
    )


async def post(
    url: str, key: str, body: bytes, idem: str | None, path: str = "/v1/chat/completions"
) -> tuple[int, dict[str, str], bytes]:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    if idem is not None:
        headers["idempotency-key"] = idem
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + path, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=20)) as r,
    ):
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


def calls(upstream: FakeOpenAI, marker: str) -> int:
    return sum(1 for r in upstream.requests if marker.encode() in r.body)


async def test_a_repeat_replays_the_first_response_byte_for_byte(
    gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
    body = chat_body(f"say hi {marker}")
    s1, h1, b1 = await post(gateway.url, api_key, body, idem)
    s2, h2, b2 = await post(gateway.url, api_key, body, idem)
    assert (s1, s2) == (200, 200)
    assert b2 == b1
    assert h2["content-type"] == h1["content-type"]
    assert "idempotent-replayed" not in h1
    assert h2["idempotent-replayed"] == "true"
    assert h2["x-request-id"] != h1["x-request-id"]  # a new request, answered from the record
    assert calls(upstream, marker) == 1


async def test_a_streamed_response_replays_as_the_same_sse_stream(
    gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
    body = chat_body(f"count to five {marker}", stream=True)
    s1, _, b1 = await post(gateway.url, api_key, body, idem)
    s2, h2, b2 = await post(gateway.url, api_key, body, idem)
    assert (s1, s2) == (200, 200)
    assert b1.endswith(b"data: [DONE]\n\n")
    assert b2 == b1
    assert h2["content-type"].startswith("text/event-stream")
    assert h2["idempotent-replayed"] == "true"
    assert calls(upstream, marker) == 1


async def test_the_same_key_with_another_body_is_a_422(gateway: GatewayProc, api_key: str) -> None:
    idem = uuid.uuid4().hex
    assert (await post(gateway.url, api_key, chat_body("one"), idem))[0] == 200
    status, _, raw = await post(gateway.url, api_key, chat_body("two"), idem)
    assert status == 422
    assert orjson.loads(raw)["error"]["code"] == "idempotency_key_reused"


async def test_a_repeat_while_the_first_runs_is_a_409(
    gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
    body = chat_body(f"slowly {marker} {fault_marker('slow_first_byte=0.4')}")
    first = asyncio.create_task(post(gateway.url, api_key, body, idem))
    await asyncio.sleep(0.15)
    status, _, raw = await post(gateway.url, api_key, body, idem)
    assert status == 409
    assert orjson.loads(raw)["error"]["code"] == "idempotency_request_in_progress"
    assert (await first)[0] == 200
    replay = await post(gateway.url, api_key, body, idem)
    assert replay[0] == 200 and replay[1]["idempotent-replayed"] == "true"
    assert calls(upstream, marker) == 1


async def test_a_failed_first_request_is_not_kept(
    gateway: GatewayProc, api_key: str, upstream: FakeOpenAI
) -> None:
    marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
    body = chat_body(f"{marker} {fault_marker('status=500')}")
    assert (await post(gateway.url, api_key, body, idem))[0] == 502
    for _ in range(50):  # the release is written just after the answer
        status, headers, _ = await post(gateway.url, api_key, body, idem)
        if status != 409:
            break
        await asyncio.sleep(0.02)
    assert status == 502 and "idempotent-replayed" not in headers
    assert calls(upstream, marker) == 2


async def test_keys_are_scoped_to_the_api_key(gateway: GatewayProc, upstream: FakeOpenAI) -> None:
    _, k1 = await gateway.create_key("idem-a")
    _, k2 = await gateway.create_key("idem-b")
    marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
    body = chat_body(f"scoped {marker}")
    r1 = await post(gateway.url, k1, body, idem)
    r2 = await post(gateway.url, k2, body, idem)
    assert (r1[0], r2[0]) == (200, 200)
    assert "idempotent-replayed" not in r2[1]
    assert calls(upstream, marker) == 2


async def test_an_overlong_key_is_refused(gateway: GatewayProc, api_key: str) -> None:
    status, _, raw = await post(gateway.url, api_key, chat_body("x"), "k" * 256)
    assert status == 400
    assert orjson.loads(raw)["error"]["code"] == "invalid_idempotency_key"


async def test_other_dialects_replay_too(gateway: GatewayProc, api_key: str, upstream: FakeOpenAI) -> None:
    marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
    body = orjson.dumps(
        {"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": f"hi {marker}"}]}
    )
    a = await post(gateway.url, api_key, body, idem, path="/v1/messages")
    b = await post(gateway.url, api_key, body, idem, path="/v1/messages")
    assert (a[0], b[0]) == (200, 200)
    assert a[2] == b[2] and b[1]["idempotent-replayed"] == "true"
    assert calls(upstream, marker) == 1


def _config(upstream: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [{"name": "gpt-4o", "provider": "fake"}],
        **extra,
    }


async def test_one_execution_across_two_workers(upstream: FakeOpenAI, tmp_path: Path) -> None:
    """Concurrent repeats on fresh connections spread over both workers: exactly one executes,
    the rest are 409 while it runs, and every later repeat replays the same bytes."""
    gw = await start_gateway(tmp_path, _config(upstream, redis=REDIS_URL), workers=2)
    try:
        _, key = await gw.create_key("idem-workers")
        marker, idem = uuid.uuid4().hex, uuid.uuid4().hex
        body = chat_body(f"workers {marker} {fault_marker('slow_first_byte=0.5')}")
        first = await asyncio.gather(*(post(gw.url, key, body, idem) for _ in range(8)))
        statuses = sorted(r[0] for r in first)
        assert statuses.count(200) == 1 and statuses.count(409) == 7, statuses
        original = next(r[2] for r in first if r[0] == 200)
        later = await asyncio.gather(*(post(gw.url, key, body, idem) for _ in range(8)))
        assert all(r[0] == 200 and r[2] == original for r in later)
        assert all(r[1]["idempotent-replayed"] == "true" for r in later)
        assert calls(upstream, marker) == 1
    finally:
        gw.stop()


async def test_a_replayed_anthropic_stream_has_its_own_request_id(gateway: GatewayProc, api_key: str) -> None:
    idem = uuid.uuid4().hex
    body = orjson.dumps(
        {"model": "gpt-4o", "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    headers = {"x-api-key": api_key, "idempotency-key": idem, "content-type": "application/json"}
    seen = []
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.post(gateway.v1 + "/messages", data=body, headers=headers) as r:
                assert r.status == 200
                seen.append((r.headers.getall("request-id"), r.headers.get("x-request-id"), await r.read()))
    (ids1, rid1, b1), (ids2, rid2, b2) = seen
    assert b1 == b2
    assert ids1 == [rid1] and ids2 == [rid2]  # one request-id each: the replay's own
