"""Redis stopped mid-load: budgets refuse (503 limits_unavailable), request rates follow
``rate_limit_fail_open``, and enforcement resumes within 5 s of Redis returning. The Redis here is
this test's own server on a free port (the machine's shared one is never stopped)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.limits_helpers import burst, chat_body, config, post_chat, set_limits
from tests.harness import free_port, start_gateway

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
]


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    r = OwnRedis()
    r.start()
    try:
        yield r
    finally:
        r.stop()


async def test_redis_stopped_mid_load_then_restarted(
    own_redis: OwnRedis, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    gw = await start_gateway(tmp_path, config(upstream, redis=own_redis.url))
    try:
        rate_id, rate_key = await gw.create_key("rates")
        await set_limits(gw, rate_id, {"rps": "unlimited", "rpm": 5})
        budget_id, budget_key = await gw.create_key("budget")
        await set_limits(gw, budget_id, {"rps": "unlimited", "spend_per_day": 10.0})
        marker = uuid.uuid4().hex
        body = chat_body(f"load {marker}")

        statuses = [a[0] for a in await burst([gw.url], rate_key, [body] * 10)]
        assert statuses.count(200) == 5 and statuses.count(429) == 5

        # Mid-load: requests already admitted (their reservations taken) finish normally.
        slow = chat_body(f"[[fault:slow_first_byte=0.6]] {marker}")
        in_flight = asyncio.create_task(burst([gw.url], budget_key, [slow] * 5))
        await asyncio.sleep(0.3)
        own_redis.stop()
        budget = [a for a in await burst([gw.url], budget_key, [body] * 10)]
        assert [a[0] for a in budget] == [503] * 10
        assert orjson.loads(budget[0][2])["error"]["code"] == "limits_unavailable"
        rates = [a[0] for a in await burst([gw.url], rate_key, [body] * 10)]
        assert rates == [200] * 10  # rate limits fail open by default
        assert [a[0] for a in await in_flight] == [200] * 5

        own_redis.start()  # empty: the window starts afresh
        t0 = time.monotonic()
        while (await post_chat(gw.url, budget_key, body))[0] != 200:
            assert time.monotonic() - t0 < 5, "enforcement did not resume within 5 s"
            await asyncio.sleep(0.1)
        statuses = [a[0] for a in await burst([gw.url], rate_key, [body] * 10)]
        assert statuses.count(200) == 5 and statuses.count(429) == 5
        assert "limit counters unreachable" in gw.log()
        status, view = await gw.admin("GET", f"/admin/v1/keys/{rate_id}/limits")
        assert status == 200
        assert view["unavailable"]["admitted"] >= 10 and view["unavailable"]["refused"] >= 10
    finally:
        gw.stop()


async def test_rate_limits_fail_closed_when_configured(
    own_redis: OwnRedis, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    gw = await start_gateway(tmp_path, config(upstream, redis=own_redis.url, rate_limit_fail_open=False))
    try:
        kid, key = await gw.create_key("closed")
        await set_limits(gw, kid, {"rpm": 100})
        assert (await post_chat(gw.url, key, chat_body("hi")))[0] == 200
        own_redis.stop()
        status, _, body = await post_chat(gw.url, key, chat_body("hi"))
        assert status == 503 and orjson.loads(body)["error"]["code"] == "limits_unavailable"
    finally:
        gw.stop()


async def test_starts_and_serves_while_redis_is_down(
    own_redis: OwnRedis, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """Joining the breaker channel at start is bounded: a replica started during a Redis outage
    serves (unlimited keys), then joins the channel in the background when Redis returns."""
    own_redis.stop()
    t0 = time.monotonic()
    gw = await start_gateway(tmp_path, config(upstream, redis=own_redis.url))
    try:
        assert time.monotonic() - t0 < 15
        assert "breaker channel not joined at start" in gw.log()
        _, key = await gw.create_key("free")
        assert (await post_chat(gw.url, key, chat_body("hi")))[0] == 200
        own_redis.start()
        deadline = time.monotonic() + 20  # the background retry backs off to 10 s at most
        while (
            b"stellargate:breaker"
            not in subprocess.run(
                ["redis-cli", "-p", str(own_redis.port), "pubsub", "channels"],
                capture_output=True,
                check=False,
            ).stdout
        ):
            assert time.monotonic() < deadline, "the gateway never joined the breaker channel"
            await asyncio.sleep(0.1)
    finally:
        gw.stop()
