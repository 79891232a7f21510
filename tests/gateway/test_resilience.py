"""Routing and resilience end to end: model groups, fallbacks, retries within a budget, circuit
breakers, per-model timeouts and cancellation, against fault-injecting fake upstreams.

Three FakeOpenAI servers act as deployments; each scenario names its own providers (deployment ids
are ``provider/model``), so that breaker and budget state never leaks between tests. Timing tests
use cooldowns of about a second; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import GatewayProc, free_port, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
MSG = [{"role": "user", "content": "hello"}]
CHAT = "/v1/chat/completions"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ups() -> AsyncIterator[list[FakeOpenAI]]:
    fakes = [FakeOpenAI(api_key=None, chunk_delay=0.001) for _ in range(3)]
    for f in fakes:
        await f.start()
    try:
        yield fakes
    finally:
        for f in fakes:
            await f.stop()


@pytest.fixture(autouse=True)
def _clean(ups: list[FakeOpenAI]) -> Any:
    for f in ups:
        f.clear_fault()
    yield
    for f in ups:
        f.clear_fault()


def _prov(up: FakeOpenAI | str, **extra: Any) -> dict[str, Any]:
    url = up if isinstance(up, str) else up.base_url
    return {"type": "openai", "base_url": url, "api_key": "sk-x", **extra}


def _config(ups: list[FakeOpenAI]) -> dict[str, Any]:
    a, b, c = ups
    closed = f"http://127.0.0.1:{free_port()}/v1"  # connection refused
    scenarios = ("fo", "nr", "ra", "cr", "to", "st", "sd", "cw", "ej", "lb", "cx")
    providers = {f"{s}_{n}": _prov(u) for s in scenarios for n, u in (("a", a), ("b", b), ("c", c))}
    providers["cr_down"] = _prov(closed)
    m = "gpt-4o"
    return {
        "usage": {"flush_interval": 0.05},
        "limits": {"rps": "unlimited"},  # thousands of requests from one key
        "routing": {
            "retries": 1,
            "backoff": {"base": 0.01, "max": 0.05},
            "retry_budget": {"ratio": 0.2, "min": 50},
            "breaker": {"failures": 3, "cooldown": 1.0, "max_cooldown": 4, "min_requests": 1000},
        },
        "providers": providers,
        "models": [
            {"name": "fo", "provider": "fo_a", "model": m, "fallbacks": ["fo2", "fo3"]},
            {"name": "fo2", "provider": "fo_b", "model": m},
            {"name": "fo3", "provider": "fo_c", "model": m},
            {"name": "nr", "provider": "nr_a", "model": m, "fallbacks": ["nr2"]},
            {"name": "nr2", "provider": "nr_b", "model": m},
            {"name": "ra", "provider": "ra_a", "model": m},
            {"name": "cr", "provider": "cr_down", "model": m, "fallbacks": ["cr2"]},
            {"name": "cr2", "provider": "cr_b", "model": m},
            {"name": "to", "provider": "to_a", "model": m, "fallbacks": ["to2"],
             "timeouts": {"first_byte": 0.3}},
            {"name": "to2", "provider": "to_b", "model": m},
            {"name": "st", "provider": "st_a", "model": m, "fallbacks": ["st2"], "timeouts": {"idle": 0.3}},
            {"name": "st2", "provider": "st_b", "model": m},
            {"name": "sd", "provider": "sd_a", "model": m, "fallbacks": ["sd2"]},
            {"name": "sd2", "provider": "sd_b", "model": m},
            {"name": "cw", "provider": "cw_a", "model": m, "context_window": 50, "fallbacks": ["cw-big"]},
            {"name": "cw-big", "provider": "cw_b", "model": m, "context_window": 100000},
            {"name": "ej", "provider": "ej_a", "model": m},
            {
                "name": "lb",
                "strategy": "weighted",
                "deployments": [{"provider": "lb_a", "model": m, "weight": 3},
                                {"provider": "lb_b", "weight": 1}],
                "model": m,
            },
            {"name": "cx", "provider": "cx_a", "model": m},
        ],
    }  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gw(ups: list[FakeOpenAI], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProc]:
    g = await start_gateway(tmp_path_factory.mktemp("resilience"), _config(ups))
    try:
        yield g
    finally:
        g.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def key(gw: GatewayProc) -> str:
    return (await gw.create_key("resilience"))[1]


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def chat(
    s: aiohttp.ClientSession, gw: GatewayProc, key: str, model: str, **body: Any
) -> tuple[int, dict[str, str], bytes]:
    payload = {"model": model, "messages": MSG, **body}
    async with s.post(
        gw.v1 + "/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}
    ) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()


async def record(gw: GatewayProc, request_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        _, b = await gw.admin("GET", "/admin/v1/usage?limit=1000")
        return next((r for r in b["data"] if r["request_id"] == request_id), None)

    rec: dict[str, Any] = await wait_until(find, timeout=5)
    return rec


async def deployment(gw: GatewayProc, did: str) -> dict[str, Any]:
    status, body = await gw.admin("GET", "/admin/v1/deployments")
    assert status == 200, body
    return next(d for d in body["data"] if d["id"] == did)


def chats(up: FakeOpenAI) -> int:
    return len(up.requests_to(CHAT))


# ------------------------------------------------------------------------------------- fallbacks


async def test_fallback_order_and_metadata(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a, b, c = ups
    a.set_fault("status=503")
    b.set_fault("status=500")
    n = [chats(u) for u in ups]
    status, h, _ = await chat(http, gw, key, "fo")
    assert status == 200
    # retries: 1 → two attempts on each failing model, then the second fallback serves.
    assert [chats(u) - k for u, k in zip(ups, n, strict=True)] == [2, 2, 1]
    assert (h["x-stellargate-model"], h["x-stellargate-provider"], h["x-stellargate-attempts"]) == (
        "fo3",
        "fo_c",
        "5",
    )
    last_a, first_b = a.requests_to(CHAT)[-1].received_at, b.requests_to(CHAT)[-2].received_at
    assert last_a <= first_b <= c.requests_to(CHAT)[-1].received_at
    rec = await record(gw, h["x-request-id"])
    assert rec["attempts"] == 5 and rec["provider"] == "fo_c" and rec["status"] == 200
    steps = [(x["model"], x["deployment"], x["status"]) for x in rec["meta"]["attempts"]]
    assert steps == [("fo", "fo_a/gpt-4o", 503)] * 2 + [("fo2", "fo_b/gpt-4o", 502)] * 2 + [
        ("fo3", "fo_c/gpt-4o", 200)
    ]
    assert rec["meta"]["model_served"] == "fo3"


async def test_no_retry_or_fallback_on_a_client_error(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a, b, _ = ups
    a.set_fault("error=invalid")  # an ordinary 400 (status=400 is an overflow, which may fall back)
    na, nb = chats(a), chats(b)
    status, h, _ = await chat(http, gw, key, "nr")
    assert status == 400
    assert (chats(a) - na, chats(b) - nb) == (1, 0)
    assert h["x-stellargate-attempts"] == "1"


async def test_retry_after_is_honoured(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a = ups[0]
    a.set_fault("status=429;retry_after=1", times=1)
    t0 = time.monotonic()
    status, h, _ = await chat(http, gw, key, "ra")
    assert status == 200
    assert h["x-stellargate-attempts"] == "2"
    gap = a.requests_to(CHAT)[-1].received_at - a.requests_to(CHAT)[-2].received_at
    assert 1.0 <= gap < 1.5 and time.monotonic() - t0 < 3


async def test_connection_refused_falls_back(http: aiohttp.ClientSession, gw: GatewayProc, key: str) -> None:
    status, h, _ = await chat(http, gw, key, "cr")
    assert status == 200
    assert (h["x-stellargate-model"], h["x-stellargate-provider"]) == ("cr2", "cr_b")
    rec = await record(gw, h["x-request-id"])
    assert [x["error"] for x in rec["meta"]["attempts"][:2]] == ["upstream_connect_failed"] * 2


async def test_model_first_byte_timeout_falls_back_and_is_counted(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    ups[0].set_fault("slow_first_byte=2", times=2)
    t0 = time.monotonic()
    status, h, _ = await chat(http, gw, key, "to")
    assert status == 200 and h["x-stellargate-provider"] == "to_b"
    assert time.monotonic() - t0 < 1.5  # two 0.3 s expiries (the model's override), not 120 s
    rec = await record(gw, h["x-request-id"])
    assert [x.get("error") for x in rec["meta"]["attempts"]] == ["upstream_timeout_first_byte"] * 2 + [None]
    assert (await deployment(gw, "to_a/gpt-4o"))["timeouts"] == {"first_byte": 2}


async def test_context_window_overflow_goes_to_a_larger_model_before_sending(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a = ups[0]
    na = chats(a)
    status, h, _ = await chat(http, gw, key, "cw", messages=[{"role": "user", "content": "word " * 200}])
    assert status == 200 and h["x-stellargate-model"] == "cw-big" and h["x-stellargate-attempts"] == "1"
    assert chats(a) == na  # decided before sending
    status, h, _ = await chat(http, gw, key, "cw")
    assert status == 200 and h["x-stellargate-model"] == "cw"


# ------------------------------------------------------------------------------------- streams


async def _stream(
    s: aiohttp.ClientSession, gw: GatewayProc, key: str, model: str
) -> tuple[int, dict[str, str], bytes]:
    return await chat(s, gw, key, model, stream=True)


async def test_stream_falls_back_before_its_first_byte(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    ups[0].set_fault("status=503")
    status, h, body = await _stream(http, gw, key, "st")
    assert status == 200 and h["x-stellargate-provider"] == "st_b"
    assert body.rstrip().endswith(b"data: [DONE]") and b'"error"' not in body


async def test_stream_whose_upstream_drops_before_the_first_chunk_falls_back(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a = ups[0]
    a.set_fault("drop_after=0")
    na = chats(a)
    status, h, body = await _stream(http, gw, key, "sd")
    assert status == 200 and h["x-stellargate-provider"] == "sd_b"
    assert chats(a) - na == 2  # the headers came, then nothing: retried once, then the fallback
    assert body.rstrip().endswith(b"data: [DONE]") and b'"error"' not in body


async def test_no_fallback_after_the_first_streamed_byte(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a, b, _ = ups
    a.set_fault("stall_after=2")
    nb = chats(b)
    status, h, body = await _stream(http, gw, key, "st")
    assert status == 200 and h["x-stellargate-provider"] == "st_a"
    assert b"data: {" in body and b'"upstream_timeout_idle"' in body  # an error event ends it
    assert chats(b) == nb
    rec = await record(gw, h["x-request-id"])
    assert rec["error_code"] == "upstream_timeout_idle" and rec["attempts"] == 1


async def test_client_disconnect_cancels_upstream_and_releases(
    gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a = ups[0]
    a.set_fault("chunk_delay=0.2")
    gone = len(a.stream_disconnects)
    body = {"model": "cx", "messages": MSG, "stream": True}
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.v1 + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
        await r.content.readany()
        assert (await deployment(gw, "cx_a/gpt-4o"))["in_flight"] == 1
        r.close()
        left = time.monotonic()
    at = await a.wait_for_disconnect(gone + 1, within=3)
    assert at - left < 1.0

    async def released() -> bool:
        return (await deployment(gw, "cx_a/gpt-4o"))["in_flight"] == 0

    await wait_until(released, timeout=2)


# ------------------------------------------------------------------------------------- breakers


async def test_ejection_and_recovery_timings(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str, ups: list[FakeOpenAI]
) -> None:
    a = ups[0]
    a.set_fault("status=500")
    base = chats(a)

    async def until_ejected() -> bool:
        status, _, body = await chat(http, gw, key, "ej")
        return status == 503 and b"no_healthy_deployment" in body

    await wait_until(until_ejected, timeout=5, interval=0.0)
    assert chats(a) - base == 3  # breaker.failures
    ejected_at = a.requests_to(CHAT)[-1].received_at
    d = await deployment(gw, "ej_a/gpt-4o")
    assert d["state"] == "open" and d["ejections"] == 1

    async def probe(after: int) -> float:
        deadline = time.monotonic() + 6
        while chats(a) <= after and time.monotonic() < deadline:
            await chat(http, gw, key, "ej")
            await asyncio.sleep(0.01)
        assert chats(a) == after + 1, "exactly one probe"
        return a.requests_to(CHAT)[-1].received_at

    n = chats(a)
    first = await probe(n)
    assert abs((first - ejected_at) - 1.0) <= 0.1  # cooldown 1 s
    second = await probe(n + 1)  # the probe failed: ejected again, twice as long
    assert abs((second - first) - 2.0) <= 0.2
    a.clear_fault()
    t = time.monotonic()
    while time.monotonic() - t < 6:
        status, _, _ = await chat(http, gw, key, "ej")
        if status == 200:
            break
        await asyncio.sleep(0.01)
    assert status == 200
    assert abs((a.requests_to(CHAT)[-1].received_at - second) - 4.0) <= 0.4  # capped at max_cooldown
    d = await deployment(gw, "ej_a/gpt-4o")
    assert d["state"] == "closed" and d["ejections"] == 0


# ------------------------------------------------------------------------------------- balancing


async def test_weighted_load_balancing_proportions(
    http: aiohttp.ClientSession, gw: GatewayProc, key: str
) -> None:
    counts: dict[str, int] = {}
    sem = asyncio.Semaphore(32)

    async def one() -> None:
        async with sem:
            status, h, _ = await chat(http, gw, key, "lb")
            assert status == 200
            counts[h["x-stellargate-provider"]] = counts.get(h["x-stellargate-provider"], 0) + 1

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(2000))), 60)
    share = counts["lb_a"] / 2000
    assert abs(share - 0.75) <= 0.05 * 0.75, counts


async def test_admin_deployments_shows_state(gw: GatewayProc) -> None:
    status, body = await gw.admin("GET", "/admin/v1/deployments")
    assert status == 200
    d = next(x for x in body["data"] if x["id"] == "lb_a/gpt-4o")
    assert d["models"] == ["lb"] and d["state"] == "closed" and d["in_flight"] == 0
    assert d["latency_ewma_ms"] > 0 and d["error_rate"] == 0 and d["requests"] > 1000
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/admin/v1/deployments") as r:
        assert r.status == 401


# ------------------------------------------------------------------------------------- budget


async def test_retry_budget_bounds_a_full_outage(ups: list[FakeOpenAI], tmp_path: Path) -> None:
    c = ups[2]
    cfg = {
        "limits": {"rps": "unlimited"},
        "routing": {"retries": 2, "backoff": {"base": 0.001, "max": 0.005},
                    "breaker": {"failures": 100000, "min_requests": 100000}},
        "providers": {"bud_a": _prov(c), "bud_b": _prov(c)},
        "models": [{"name": "bud", "provider": "bud_a", "model": "gpt-4o", "fallbacks": ["bud2"]},
                   {"name": "bud2", "provider": "bud_b", "model": "gpt-4o"}],
    }  # fmt: skip
    g = await start_gateway(tmp_path, cfg)
    try:
        k = (await g.create_key("budget"))[1]
        c.set_fault("status=503")
        before = chats(c)
        sem = asyncio.Semaphore(10)
        async with aiohttp.ClientSession() as s:

            async def one() -> int:
                async with sem:
                    return (await chat(s, g, k, "bud"))[0]

            statuses = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(200))), 30)
        assert set(statuses) == {503}
        attempts = chats(c) - before
        # Unbounded, each request would make 6 attempts (3 per model); the budget keeps the total
        # within 1.2 x the client's requests.
        assert 200 < attempts <= 240, attempts
    finally:
        g.stop()


# ------------------------------------------------------------------------------------- replicas


async def test_ejections_are_shared_over_redis(ups: list[FakeOpenAI], tmp_path: Path) -> None:
    b = ups[1]
    cfg = {
        "redis": "redis://127.0.0.1:6379/0",
        "routing": {"retries": 0, "redis_prefix": f"sgtest-{uuid.uuid4().hex[:10]}",
                    "breaker": {"failures": 2, "cooldown": 10}},
        "providers": {"sh": _prov(b)},
        "models": [{"name": "sh", "provider": "sh", "model": "gpt-4o"}],
    }  # fmt: skip
    g1 = await start_gateway(tmp_path / "one", cfg)
    g2 = await start_gateway(tmp_path / "two", cfg)
    try:
        k1, k2 = (await g1.create_key())[1], (await g2.create_key())[1]
        b.set_fault("status=500")
        async with aiohttp.ClientSession() as s:
            for _ in range(2):
                assert (await chat(s, g1, k1, "sh"))[0] == 502

            async def open_on_two() -> bool:
                return bool((await deployment(g2, "sh/gpt-4o"))["state"] == "open")

            await wait_until(open_on_two, timeout=3, interval=0.02)
            n = chats(b)
            status, _, body = await chat(s, g2, k2, "sh")
            assert status == 503 and b"no_healthy_deployment" in body and chats(b) == n
            # A replica that starts mid-incident learns of the ejection from its key.
            g3 = await start_gateway(tmp_path / "three", cfg)
            try:
                assert (await deployment(g3, "sh/gpt-4o"))["state"] == "open"
            finally:
                g3.stop()
    finally:
        g1.stop()
        g2.stop()
