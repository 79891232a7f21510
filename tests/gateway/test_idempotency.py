"""Idempotency-Key through the real gateway: replay byte for byte, 409 while running, 422 on
another body, failures not kept, one execution across two workers sharing Redis, and every POST
beyond the model routes (the admin API, count_tokens) honouring it, with no secret at rest."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from stellargate.admin.api import ADMIN_SCOPE
from stellargate.pipeline.idempotency import RecordKeys
from tests.fakes._faults import fault_marker
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import ADMIN_KEY, GatewayProc, free_port, start_gateway

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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def workers2(
    upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayProc]:
    """Two workers sharing Redis; webhooks may target this machine (nothing listens there)."""
    cfg = _config(upstream, redis=REDIS_URL, webhooks={"allow_private": True, "max_attempts": 1})
    gw = await start_gateway(tmp_path_factory.mktemp("idem-workers"), cfg, workers=2)
    try:
        yield gw
    finally:
        gw.stop()


async def test_one_execution_across_two_workers(workers2: GatewayProc, upstream: FakeOpenAI) -> None:
    """Concurrent repeats on fresh connections spread over both workers: exactly one executes,
    the rest are 409 while it runs, and every later repeat replays the same bytes."""
    gw = workers2
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


def admin_post(gw: GatewayProc, path: str, body: Any, idem: str) -> Any:
    return post(gw.url, ADMIN_KEY, orjson.dumps(body), idem, path=path)


async def audit_count(gw: GatewayProc, action: str, target: str | None = None) -> int:
    query = f"/v1/audit-log?action={action}&limit=1000" + (f"&target={target}" if target else "")
    status, page = await gw.admin("GET", query)
    assert status == 200, page
    return len(page["data"])


def idempotency_rows(gw: GatewayProc) -> list[bytes]:
    """Every stored record of the admin scope, all columns run together, read from the file."""
    with sqlite3.connect(gw.data_dir / "gw.db") as conn:
        rows = conn.execute("SELECT * FROM idempotency_records WHERE key_id = ?", (ADMIN_SCOPE,)).fetchall()
    return [b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row) for row in rows]


async def test_admin_key_creation_replays_byte_for_byte_and_keeps_no_secret(workers2: GatewayProc) -> None:
    gw, name, idem = workers2, f"idem-admin-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    # Concurrent first attempts over both workers: one runs, each other is a 409 or a replay.
    first = await asyncio.gather(*(admin_post(gw, "/admin/v1/keys", {"name": name}, idem) for _ in range(6)))
    created = [r for r in first if r[0] == 201]
    assert created and all(r[0] in (201, 409) for r in first), [r[0] for r in first]
    original = next(r for r in created if "idempotent-replayed" not in r[1])
    assert all(r[2] == original[2] for r in created)
    # Sequential repeats land on either worker: the same bytes, marked as replayed.
    for _ in range(4):
        status, headers, raw = await admin_post(gw, "/admin/v1/keys", {"name": name}, idem)
        assert (status, raw, headers["idempotent-replayed"]) == (201, original[2], "true")
        assert headers["content-type"] == original[1]["content-type"]
    key = orjson.loads(original[2])
    status, page = await gw.admin("GET", "/admin/v1/keys?limit=200")
    assert [k["id"] for k in page["data"] if k["name"] == name] == [key["id"]]
    assert await audit_count(gw, "key.created", key["id"]) == 1
    # Another body under the same key is refused, and creates nothing.
    status, _, raw = await admin_post(gw, "/admin/v1/keys", {"name": name + "-other"}, idem)
    assert status == 422 and orjson.loads(raw)["error"]["code"] == "idempotency_key_reused"
    # At rest: neither the database nor Redis holds the secret, the key value or the body.
    rows = idempotency_rows(gw)
    assert rows
    for clear in (key["key"], idem, key["id"], name):
        assert not any(clear.encode() in row for row in rows), clear
    lookup = RecordKeys.derive(ADMIN_KEY, ADMIN_SCOPE, idem).lookup
    redis = aioredis.from_url(REDIS_URL)
    try:
        cached = await redis.get(f"stellargate:idem:{ADMIN_SCOPE}:{lookup}")
    finally:
        await redis.aclose()
    assert cached is not None and key["key"].encode() not in cached and name.encode() not in cached


async def test_every_other_admin_post_replays(workers2: GatewayProc) -> None:
    # Fresh Idempotency-Keys each run: every test gateway has the same admin key and one Redis.
    gw, run = workers2, uuid.uuid4().hex
    key_id, _ = await gw.create_key("idem-rotate")
    rotate = [await admin_post(gw, f"/admin/v1/keys/{key_id}/rotate", None, "rot-1-" + run) for _ in range(2)]
    assert [r[0] for r in rotate] == [200, 200] and rotate[0][2] == rotate[1][2]
    assert rotate[1][1]["idempotent-replayed"] == "true"
    assert await audit_count(gw, "key.rotated", key_id) == 1  # one rotation: one secret works
    revoke = [await admin_post(gw, f"/admin/v1/keys/{key_id}/revoke", None, "rev-1-" + run) for _ in range(2)]
    assert revoke[0][2] == revoke[1][2] and revoke[1][1]["idempotent-replayed"] == "true"

    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: deliveries fail on this machine
    hooks = [await admin_post(gw, "/admin/v1/webhooks", {"url": url}, "wh-1-" + run) for _ in range(2)]
    assert [r[0] for r in hooks] == [201, 201] and hooks[0][2] == hooks[1][2]
    endpoint = orjson.loads(hooks[0][2])
    _, listed = await gw.admin("GET", "/admin/v1/webhooks")
    assert [e["id"] for e in listed["data"] if e["url"] == url] == [endpoint["id"]]
    base = f"/admin/v1/webhooks/{endpoint['id']}"
    secrets = [await admin_post(gw, base + "/rotate-secret", None, "wh-rot-" + run) for _ in range(2)]
    assert secrets[0][2] == secrets[1][2] and secrets[1][1]["idempotent-replayed"] == "true"
    assert await audit_count(gw, "webhook.secret_rotated", endpoint["id"]) == 1
    tests = [await admin_post(gw, base + "/test", None, "wh-test-" + run) for _ in range(2)]
    assert [r[0] for r in tests] == [202, 202] and tests[1][1]["idempotent-replayed"] == "true"
    _, deliveries = await gw.admin("GET", base + "/deliveries")
    assert len(deliveries["data"]) == 1  # one test event queued, though asked twice

    before = await audit_count(gw, "config.reloaded")
    reloads = [await admin_post(gw, "/admin/v1/reload", None, "reload-1-" + run) for _ in range(2)]
    assert [r[0] for r in reloads] == [200, 200] and reloads[0][2] == reloads[1][2]
    assert await audit_count(gw, "config.reloaded") == before + 1
    for secret in (
        orjson.loads(rotate[0][2])["key"],
        endpoint["secret"],
        orjson.loads(secrets[0][2])["secret"],
    ):
        assert not any(secret.encode() in row for row in idempotency_rows(gw))


async def test_count_tokens_replays(workers2: GatewayProc) -> None:
    _, key = await workers2.create_key("idem-count")
    idem = uuid.uuid4().hex
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "count me"}]})
    a = await post(workers2.url, key, body, idem, path="/v1/messages/count_tokens")
    b = await post(workers2.url, key, body, idem, path="/v1/messages/count_tokens")
    assert (a[0], b[0]) == (200, 200) and a[2] == b[2]
    assert b[1]["idempotent-replayed"] == "true"
    assert b[1]["request-id"] == b[1]["x-request-id"] != a[1]["request-id"]


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
