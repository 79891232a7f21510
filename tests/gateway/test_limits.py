"""Limits and budgets hold exactly: the same suite on the in-process backend (one gateway) and on
Redis (two gateway replicas sharing PostgreSQL and the machine's Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from tests.fakes._catalog import DEFAULT_MODELS
from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.gateway.limits_helpers import (
    PRICE,
    assert_budget_held,
    burst,
    chat_body,
    config,
    limit_rows,
    post_chat,
    post_embeddings,
    set_limits,
    upstream_calls,
)
from tests.harness import GatewayProc, free_port, start_gateway, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="session")
REDIS_URL = "redis://127.0.0.1:6379/0"
TRAIL = 10_000  # budget_trail: far more changes than any test here makes, so none is trimmed


@pytest_asyncio.fixture(scope="module", params=["memory", "redis"], loop_scope="session")
async def replicas(
    request: pytest.FixtureRequest,
    upstream: FakeOpenAI,
    tmp_path_factory: pytest.TempPathFactory,
    make_pg_database: Callable[[], Awaitable[str]],
) -> AsyncIterator[list[GatewayProc]]:
    gws: list[GatewayProc] = []
    try:
        if request.param == "memory":
            cfg = config(upstream, budget_trail=TRAIL)
            gws.append(await start_gateway(tmp_path_factory.mktemp("limits-mem"), cfg))
        else:
            extra = {"database": await make_pg_database(), "redis": REDIS_URL, "budget_trail": TRAIL}
            for i in range(2):
                tmp = tmp_path_factory.mktemp(f"limits-redis{i}")
                gws.append(await start_gateway(tmp, config(upstream, **extra)))
        yield gws
    finally:
        for gw in gws:
            gw.stop()


async def new_key(gws: list[GatewayProc], **limits: object) -> tuple[str, str]:
    kid, key = await gws[0].create_key(f"limits-{uuid.uuid4().hex[:6]}")
    await set_limits(gws[0], kid, {"rps": "unlimited", "concurrency": "unlimited", **limits})
    return kid, key


async def test_a_burst_of_1000_against_a_limit_of_100_admits_exactly_100(
    replicas: list[GatewayProc], upstream: FakeOpenAI
) -> None:
    _, key = await new_key(replicas, rpd=100)
    marker = uuid.uuid4().hex
    answers = await burst([g.url for g in replicas], key, [chat_body(f"hi {marker}")] * 1000)
    statuses = [a[0] for a in answers]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 900
    for status, headers, body in answers:
        if status == 429:
            assert int(headers["retry-after"]) >= 1
            assert orjson.loads(body)["error"]["code"] == "rate_limit_exceeded"
            assert headers["x-ratelimit-remaining-requests"] == "0"
        else:
            assert headers["x-ratelimit-limit-requests"] == "100"
    assert upstream_calls(upstream, marker) == 100


async def test_a_spend_budget_is_never_exceeded_under_500_concurrent_requests(
    replicas: list[GatewayProc],
) -> None:
    """Checked from the budget trail: every state the counter went through, each recorded in the
    same atomic step as the change that made it (on Redis, by both replicas)."""
    budget = 0.01
    kid, key = await new_key(replicas, spend_per_day=budget)
    gw = replicas[0]
    marker = uuid.uuid4().hex
    bodies = [chat_body(f"tell me about item {i} {marker}", max_tokens=40) for i in range(500)]
    answers = await burst([g.url for g in replicas], key, bodies)
    statuses = [a[0] for a in answers]
    assert 0 < statuses.count(200) < 500
    assert statuses.count(200) + statuses.count(403) == 500
    refused = next(a for a in answers if a[0] == 403)
    assert orjson.loads(refused[2])["error"]["code"] == "budget_exceeded"
    admitted = [a[1]["x-request-id"] for a in answers if a[0] == 200]

    async def ledger() -> dict[str, Any] | None:
        _, body = await gw.admin("GET", f"/admin/v1/usage?key_id={kid}&group_by=key")
        rows = body["data"]
        return rows[0] if rows and rows[0]["requests"] == 500 else None

    async def settled() -> dict[str, Any] | None:
        status, body = await gw.admin(
            "GET", f"/admin/v1/keys/{kid}/limits/trail?budget=spend_per_day&limit={TRAIL}"
        )
        assert status == 200, body
        return body if body["data"] and body["data"][-1]["reserved"] == 0 else None

    total = await wait_until(ledger, timeout=10)
    trail = await wait_until(settled, timeout=10)
    entries = trail["data"]
    assert trail["trimmed"] == 0 and trail["kept"] == trail["added"] == len(entries) < TRAIL
    assert len(entries) == 2 * len(admitted)  # one reservation and one settlement each, nothing else
    assert_budget_held(entries, budget)
    assert Counter(e["request_id"] for e in entries if e["op"] == "reserve") == Counter(admitted)
    closed = Counter(e["request_id"] for e in entries if e["op"] in ("settle", "refund"))
    assert closed == Counter(admitted)  # each admitted request settled exactly once
    # The final spend is the upstream-reported usage priced (per request rounded to a nano-dollar).
    priced = (total["prompt_tokens"] * PRICE["input"] + total["completion_tokens"] * PRICE["output"]) / 1e6
    assert entries[-1]["used"] == pytest.approx(priced, abs=1e-6)
    assert entries[-1]["used"] == pytest.approx(total["cost_usd"], abs=1e-6)
    assert entries[-1]["used"] <= budget
    row = (await limit_rows(gw, kid))["spend_per_day"]
    assert (row["used"], row["reserved"]) == (entries[-1]["used"], 0)


async def test_the_budget_trail_lists_each_change_in_tokens_or_usd(replicas: list[GatewayProc]) -> None:
    gw = replicas[-1]
    kid, key = await new_key(replicas, tokens_per_month=100_000, spend_per_day=1.0)
    status, headers, _ = await post_chat(gw.url, key, chat_body("hello there", max_tokens=30))
    assert status == 200
    path = f"/admin/v1/keys/{kid}/limits/trail"

    async def both() -> dict[str, Any] | None:
        _, body = await replicas[0].admin("GET", f"{path}?budget=tokens_per_month")
        return body if len(body["data"]) == 2 else None

    body = await wait_until(both, timeout=5)
    assert (body["unit"], body["limit"], body["trail_length"], body["trimmed"]) == (
        "tokens",
        100_000,
        TRAIL,
        0,
    )
    reserve, settle = body["data"]
    assert (reserve["op"], settle["op"]) == ("reserve", "settle")
    assert reserve["request_id"] == settle["request_id"] == headers["x-request-id"]
    assert reserve["reserved_delta"] > 30 and settle["reserved_delta"] == -reserve["reserved_delta"]
    assert settle["used"] == settle["used_delta"] > 0 and settle["reserved"] == 0
    status, body = await gw.admin("GET", f"{path}?budget=spend_per_day&limit=1")
    assert status == 200 and body["unit"] == "usd" and [e["op"] for e in body["data"]] == ["settle"]
    assert 0 < body["data"][0]["used"] < 0.01 and body["kept"] == 2
    status, body = await gw.admin("GET", f"{path}?budget=spend_per_day&period=2001-01-01")
    assert status == 200 and (body["data"], body["added"]) == ([], 0)
    bad = {"": "budget", "?budget=rpm": "budget", "?budget=spend_per_day&limit=0": "limit",
           "?budget=spend_per_month&period=2001-01-01": "period"}  # fmt: skip
    for query, param in bad.items():
        status, body = await gw.admin("GET", path + query)
        assert status == 400 and body["error"]["param"] == param, (query, body)
    status, body = await gw.admin("GET", "/admin/v1/keys/nonexistent/limits/trail?budget=spend_per_day")
    assert status == 404


async def test_the_budget_trail_is_off_by_default(gateway: GatewayProc) -> None:
    kid, _ = await gateway.create_key("trail-off")
    status, body = await gateway.admin("GET", f"/admin/v1/keys/{kid}/limits/trail?budget=spend_per_day")
    assert status == 404 and body["error"]["code"] == "budget_trail_off"


async def _settled(gw: GatewayProc, kid: str, name: str) -> dict[str, float] | None:
    row = (await limit_rows(gw, kid))[name]
    return row if row["reserved"] == 0 else None


async def test_a_concurrency_slot_is_released_on_success_error_timeout_and_disconnect(
    replicas: list[GatewayProc],
) -> None:
    kid, key = await new_key(replicas, concurrency=1)
    url = replicas[-1].url
    marker = uuid.uuid4().hex

    async def released() -> None:
        await wait_until(lambda: _settled(replicas[0], kid, "concurrency"), timeout=3, interval=0.02)

    assert (await post_chat(url, key, chat_body(f"ok {marker}")))[0] == 200
    await released()
    assert (await post_chat(url, key, chat_body(f"[[fault:status=500]] {marker}")))[0] >= 500
    await released()

    slow = asyncio.create_task(
        post_chat(url, key, chat_body(f"[[fault:slow_first_byte=2]] {marker}", model="slow"))
    )
    await wait_until(lambda: _in_flight(replicas[0], kid), timeout=3, interval=0.02)
    status, headers, body = await post_chat(url, key, chat_body(f"meanwhile {marker}"))
    assert status == 429 and orjson.loads(body)["error"]["code"] == "concurrency_exceeded"
    assert "retry-after" in headers
    assert (await slow)[0] == 504
    await released()

    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as s:
        body = chat_body(f"[[fault:stall_after=1]] {marker}", stream=True, max_tokens=200)
        async with s.post(url + "/v1/chat/completions", data=body, headers=headers) as r:
            assert r.status == 200
            await r.content.readany()
    await released()  # the client left mid-stream


async def _in_flight(gw: GatewayProc, kid: str) -> bool:
    return bool((await limit_rows(gw, kid))["concurrency"]["reserved"] == 1)


async def test_every_refusal_says_which_limit_in_the_callers_dialect(
    replicas: list[GatewayProc], upstream: FakeOpenAI
) -> None:
    gw = replicas[-1]
    marker = uuid.uuid4().hex
    kid, key = await new_key(replicas, tpm=1000, rpm=100)
    status, headers, body = await post_chat(gw.url, key, chat_body(f"x {marker}", max_tokens=5000))
    assert status == 429 and orjson.loads(body)["error"]["code"] == "tokens_exceeded"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    status, headers, _ = await post_chat(gw.url, key, chat_body(f"x {marker}", max_tokens=50))
    assert status == 200
    assert int(headers["x-ratelimit-remaining-tokens"]) < 1000
    for name in ("x-ratelimit-limit-requests", "x-ratelimit-reset-requests", "x-ratelimit-reset"):
        assert name in headers

    await set_limits(gw, kid, {"tpm": None, "tokens_per_month": 10})  # effective on the next request
    status, _, body = await post_chat(gw.url, key, chat_body(f"x {marker}", max_tokens=50))
    assert status == 429 and orjson.loads(body)["error"]["code"] == "insufficient_quota"

    await set_limits(gw, kid, {"tokens_per_month": None, "spend_per_month": 0.000001})
    status, _, body = await post_chat(gw.url, key, chat_body(f"x {marker}", max_tokens=50))
    assert status == 403 and orjson.loads(body)["error"]["code"] == "budget_exceeded"

    await set_limits(gw, kid, {"spend_per_month": None, "rpm": 1})
    await asyncio.sleep(61 / 100)  # the rpm of 100 lets one more through only after 0.6 s: gone
    anthropic = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    msg = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": f"x {marker}"}]}
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(2):
            async with s.post(gw.url + "/v1/messages", json=msg, headers=anthropic) as r:
                statuses.append(r.status)
                last = (await r.json(), dict(r.headers))
    assert statuses == [200, 429]
    assert last[0]["error"]["type"] == "rate_limit_error"
    assert int(last[1].get("Retry-After") or last[1]["retry-after"]) >= 1, last
    assert upstream_calls(upstream, marker) == 2  # no refused request reached the upstream


async def test_plans_endpoint_classes_and_key_overrides_hold_across_replicas(
    replicas: list[GatewayProc], upstream: FakeOpenAI
) -> None:
    """The config's plan "metered": 5 requests a minute key-wide, embeddings 2 a minute of those.
    Requests alternate between the replicas, so the counters they share are what is checked."""
    gws, marker = replicas, uuid.uuid4().hex

    def at(i: int) -> str:
        return gws[i % len(gws)].url

    kid, key = await gws[0].create_key(f"plan-{marker[:6]}")
    status, headers, _ = await post_chat(at(1), key, chat_body(f"defaults {marker}"))
    assert status == 200  # out of the box: 50 a second (the tightest request rate) and 100 in flight
    assert headers["x-ratelimit-limit-requests"] == headers["x-ratelimit-limit"] == "50"
    assert int(headers["x-ratelimit-remaining"]) == int(headers["x-ratelimit-remaining-requests"]) == 49
    assert (await limit_rows(gws[0], kid))["concurrency"]["limit"] == 100

    await set_limits(gws[0], kid, {}, plan="metered")
    embeds = [await post_embeddings(at(i), key, f"e{i} {marker}") for i in range(3)]
    assert [a[0] for a in embeds] == [200, 200, 429]
    assert embeds[0][1]["x-ratelimit-limit-requests"] == "2"  # the tighter of rpm and embeddings.rpm
    refused = orjson.loads(embeds[2][2])["error"]
    assert refused["code"] == "rate_limit_exceeded" and "embeddings.rpm" in refused["message"]
    # Chat is not held by the embeddings' limit, only by the key-wide 5 a minute, which the two
    # admitted embeddings requests count towards (the refused one took nothing).
    chats = [(await post_chat(at(i), key, chat_body(f"c{i} {marker}")))[0] for i in range(4)]
    assert chats == [200, 200, 200, 429]

    # A key's own figure wins over its plan's, changed at run time on one replica and in force on
    # the next request on the other (which had the key's limits cached from a request before).
    kid2, key2 = await gws[0].create_key(f"plan2-{marker[:6]}")
    await set_limits(gws[0], kid2, {}, plan="metered")
    status, headers, _ = await post_embeddings(gws[-1].url, key2, f"f {marker}")
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "2"
    await set_limits(gws[0], kid2, {"endpoints": {"embeddings": {"rpm": 4}}})
    status, headers, _ = await post_embeddings(gws[-1].url, key2, f"f0 {marker}")
    assert status == 200 and headers["x-ratelimit-limit-requests"] == "4"
    embeds = [(await post_embeddings(at(i), key2, f"f{i} {marker}"))[0] for i in range(1, 3)]
    # GCRA keeps time, not a count: the request admitted at 2 a minute holds 30 s of the window,
    # two requests' worth at 4 a minute, so two more fit, not three.
    assert embeds == [200, 429]
    rows = await limit_rows(gws[-1], kid2)
    assert rows["embeddings.rpm"]["limit"] == 4 and rows["rpm"]["limit"] == 5
    assert upstream_calls(upstream, marker) == 1 + 2 + 3 + 3


async def test_streamed_requests_are_charged_what_they_used(replicas: list[GatewayProc]) -> None:
    """A stream settles at its real usage when it ends (the client did not ask for usage), and a
    stream the client leaves midway is charged too, not costed at zero."""
    gw = replicas[0]
    kid, key = await new_key(replicas, spend_per_day=1.0)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    async with aiohttp.ClientSession() as s:
        body = chat_body("count to ten slowly", stream=True, max_tokens=50)
        async with s.post(replicas[-1].url + "/v1/chat/completions", data=body, headers=headers) as r:
            assert r.status == 200
            assert (await r.read()).rstrip().endswith(b"data: [DONE]")

    async def records(n: int) -> list[dict[str, Any]] | None:
        _, body = await gw.admin("GET", f"/admin/v1/usage?key_id={kid}")
        return body["data"] if len(body["data"]) >= n else None

    first = (await wait_until(lambda: records(1), timeout=5))[0]
    assert first["cost_usd"] > 0 and first["completion_tokens"] > 0
    row = await wait_until(lambda: _settled(gw, kid, "spend_per_day"), timeout=5)
    assert row["used"] == pytest.approx(first["cost_usd"], abs=1e-9)

    async with aiohttp.ClientSession() as s:
        body = chat_body(f"[[fault:stall_after=3]] {uuid.uuid4().hex}", stream=True, max_tokens=200)
        async with s.post(replicas[-1].url + "/v1/chat/completions", data=body, headers=headers) as r:
            assert r.status == 200
            await r.content.readany()
    # The client left: the reservation is settled at what the stream had used, and released.
    rows = await wait_until(lambda: records(2), timeout=5)
    left = next(r for r in rows if r["request_id"] != first["request_id"])
    assert left["cost_usd"] > 0
    row = await wait_until(lambda: _settled(gw, kid, "spend_per_day"), timeout=5)
    assert row["used"] == pytest.approx(first["cost_usd"] + left["cost_usd"], abs=1e-9)


async def test_limits_view_shows_use_remaining_and_reset(replicas: list[GatewayProc]) -> None:
    gw = replicas[0]
    kid, key = await new_key(replicas, rpm=10, spend_per_day=1.0)
    assert (await post_chat(gw.url, key, chat_body("hello there")))[0] == 200
    status, view = await gw.admin("GET", f"/admin/v1/keys/{kid}/limits")
    assert status == 200
    rows = {r["name"]: r for r in view["limits"]}
    assert rows["rpm"]["used"] == pytest.approx(1, abs=0.01)
    assert rows["rpm"]["remaining"] == pytest.approx(9, abs=0.01)
    assert 0 < rows["rpm"]["reset_seconds"] <= 6.1
    assert rows["spend_per_day"]["unit"] == "usd" and rows["spend_per_day"]["period"] == "day"
    assert view["backend"] == ("redis" if len(replicas) > 1 else "memory")
    status, body = await gw.admin("PATCH", f"/admin/v1/keys/{kid}/limits", {"plan": "nonexistent"})
    assert status == 400 and body["error"]["param"] == "plan"
    for path in (f"/admin/v1/keys/{kid}/limits", f"/admin/v1/keys/{kid}"):
        status, body = await gw.admin("PATCH", path, {"limits": {"rpm": "lots"}})
        assert status == 400 and body["error"]["param"].startswith("limits.rpm"), body
    status, body = await gw.admin("PATCH", f"/admin/v1/keys/{kid}", {"limits": {"rpm": 5}})
    assert status == 200 and body["limits"] == {"rpm": 5.0}


async def test_usage_records_show_reserved_against_settled(replicas: list[GatewayProc]) -> None:
    gw = replicas[0]
    kid, key = await new_key(replicas, spend_per_day=1.0)
    assert (await post_chat(gw.url, key, chat_body("hello there", max_tokens=30)))[0] == 200

    async def record() -> dict[str, object] | None:
        _, body = await gw.admin("GET", f"/admin/v1/usage?key_id={kid}")
        return body["data"][0] if body["data"] else None

    rec = await wait_until(record, timeout=5)
    reserved = rec["meta"]["reserved"]
    assert reserved["completion_tokens"] == 30
    assert reserved["cost_usd"] >= rec["cost_usd"] > 0
    assert reserved["prompt_tokens"] >= rec["prompt_tokens"]


async def test_in_process_spend_survives_a_restart(upstream: FakeOpenAI, tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path, config(upstream))
    try:
        kid, key = await new_key([gw], spend_per_day=1.0)
        for _ in range(3):
            assert (await post_chat(gw.url, key, chat_body("hello there")))[0] == 200
        before = (await limit_rows(gw, kid))["spend_per_day"]["used"]
    finally:
        gw.stop()  # a graceful stop flushes the usage outbox
    t0 = time.monotonic()
    gw = await start_gateway(tmp_path, config(upstream))
    try:
        after = (await limit_rows(gw, kid))["spend_per_day"]["used"]
        assert after == pytest.approx(before, abs=1e-8) and after > 0
        assert time.monotonic() - t0 < 30
    finally:
        gw.stop()


async def test_a_provider_counting_more_than_our_tokenizer_cannot_overspend_a_budget(tmp_path: Path) -> None:
    """A model we count only approximately (cl100k for a Llama), on a provider whose tokenizer
    reports about three times our count: the first answer uses more than its request reserved
    (counted, and taught to the reservations), after which a burst against a spend budget never
    has used + reserved above the budget, and ends at the provider's reported usage priced."""
    async with FakeOpenAI(
        api_key=UPSTREAM_KEY, models=(*DEFAULT_MODELS, "llama-3.1-70b"), prompt_scale=3.0
    ) as up:
        cfg = config(up, budget_trail=TRAIL)
        cfg["models"].append({"name": "llama", "provider": "fake", "model": "llama-3.1-70b", "price": PRICE})
        gw = await start_gateway(tmp_path, cfg)
        try:
            budget = 0.03
            kid, key = await new_key([gw], spend_per_day=budget)
            text = "the quick brown fox jumps over the lazy dog " * 40  # 360 words, ~370 counted
            first = await post_chat(gw.url, key, chat_body(text, max_tokens=5, model="llama"))
            assert first[0] == 200
            _, view = await gw.admin("GET", f"/admin/v1/keys/{kid}/limits")
            assert view["overshoots"] == 1

            bodies = [chat_body(f"{i} {text}", max_tokens=5, model="llama") for i in range(40)]
            statuses = [a[0] for a in await burst([gw.url], key, bodies)]
            assert 0 < statuses.count(200) < 40 and statuses.count(200) + statuses.count(403) == 40
            _, view = await gw.admin("GET", f"/admin/v1/keys/{kid}/limits")
            assert view["overshoots"] == 1  # the reservations learned from the first answer

            entries, rows = await _spend_settled(gw, kid, answered=1 + statuses.count(200))
            assert_budget_held(entries, budget)
            later = [r for r in rows if r["request_id"] != first[1]["x-request-id"]]
            for r in later:  # each reserved at least what the provider then reported
                assert r["meta"]["reserved"]["prompt_tokens"] >= r["prompt_tokens"] > 2 * 360
                assert r["meta"]["reserved"]["prompt_scale"] > 2.5
            assert entries[-1]["used"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-8)
            assert "used more than its request reserved" in gw.log()
        finally:
            gw.stop()


async def test_a_fallback_to_a_dearer_model_cannot_overspend_a_budget(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """The requested model is cheap, its provider is down, and its fallback costs 100 times more:
    each request is reserved at the fallback's price (the dearest that may answer), so a burst
    against a spend budget never has used + reserved above it."""
    cheap = {"input": 0.25, "output": 1.0}
    dear = {"input": 25.0, "output": 100.0}
    # Every request falls back here, more at once than the default retry budget lets through.
    cfg = config(upstream, budget_trail=TRAIL, routing={"retry_budget": {"ratio": 1.0, "min": 1000}})
    cfg["providers"]["down"] = {
        "type": "openai",
        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # connection refused
        "api_key": UPSTREAM_KEY,
    }
    cfg["models"] += [
        {"name": "cheap", "provider": "down", "model": "gpt-4o", "price": cheap, "fallbacks": ["dear"]},
        {"name": "dear", "provider": "fake", "model": "gpt-4o-mini", "price": dear},
    ]
    gw = await start_gateway(tmp_path, cfg)
    try:
        budget = 0.01  # 40 requests fit at the cheap price, a few at the dear one
        kid, key = await new_key([gw], spend_per_day=budget)
        bodies = [chat_body(f"item {i}: tell me something", max_tokens=20, model="cheap") for i in range(40)]
        answers = await burst([gw.url], key, bodies)
        statuses = [a[0] for a in answers]
        odd = [a[2] for a in answers if a[0] not in (200, 403)]
        assert 0 < statuses.count(200) < 40 and statuses.count(200) + statuses.count(403) == 40, odd[:1]

        entries, rows = await _spend_settled(gw, kid, answered=statuses.count(200))
        assert_budget_held(entries, budget)
        for r in rows:  # answered by the fallback, at its price, within what was reserved
            priced = (r["prompt_tokens"] * dear["input"] + r["completion_tokens"] * dear["output"]) / 1e6
            assert r["cost_usd"] == pytest.approx(priced, abs=1e-9)
            assert r["meta"]["reserved"]["cost_usd"] >= r["cost_usd"]
        assert entries[-1]["used"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-8)
        _, view = await gw.admin("GET", f"/admin/v1/keys/{kid}/limits")
        assert view["overshoots"] == 0
    finally:
        gw.stop()


async def _spend_settled(
    gw: GatewayProc, kid: str, *, answered: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The spend budget's trail once nothing is reserved, and the usage records of the key's
    ``answered`` successful requests once all are written."""

    async def settled() -> list[dict[str, Any]] | None:
        _, body = await gw.admin(
            "GET", f"/admin/v1/keys/{kid}/limits/trail?budget=spend_per_day&limit={TRAIL}"
        )
        return body["data"] if body["data"] and body["data"][-1]["reserved"] == 0 else None

    async def records() -> list[dict[str, Any]] | None:
        _, body = await gw.admin("GET", f"/admin/v1/usage?key_id={kid}&limit=100")
        done = [r for r in body["data"] if r["status"] == 200]
        return done if len(done) == answered else None

    return await wait_until(settled, timeout=10), await wait_until(records, timeout=10)
