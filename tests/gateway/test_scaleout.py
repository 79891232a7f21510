"""Several workers and several replicas: key changes reach all of them; usage survives shutdown
and database outages. PostgreSQL and Redis are the real servers on this machine."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest
import redis.asyncio as aioredis

from tests.fakes.openai_upstream import FakeOpenAI
from tests.gateway.conftest import UPSTREAM_KEY
from tests.harness import GatewayProc, start_gateway, wait_until
from tests.storage.tcp_proxy import TcpProxy

pytestmark = pytest.mark.asyncio(loop_scope="session")
MSG = [{"role": "user", "content": "hi"}]
REDIS_URL = "redis://127.0.0.1:6379/0"


def config(upstream: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"fake": {"type": "openai", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY}},
        "models": [{"name": "gpt-4o", "provider": "fake"}],
        **extra,
    }


async def fresh_connection_calls(gw: GatewayProc, key: str, n: int) -> list[int]:
    """n concurrent requests, each on its own connection so they spread over the workers."""

    async def one() -> int:
        c = openai.AsyncOpenAI(base_url=gw.v1, api_key=key, max_retries=0)
        try:
            await c.chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
            return 200
        except openai.APIStatusError as e:
            return e.status_code
        finally:
            await c.close()

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_revocation_reaches_every_worker_on_the_next_request(
    upstream: FakeOpenAI, tmp_path: Path
) -> None:
    gw = await start_gateway(tmp_path, config(upstream, redis=REDIS_URL), workers=2)
    try:
        kid, key = await gw.create_key("two-workers")
        assert await fresh_connection_calls(gw, key, 24) == [200] * 24  # now cached in both workers
        status, _ = await gw.admin("POST", f"/admin/v1/keys/{kid}/revoke")
        assert status == 200
        assert await fresh_connection_calls(gw, key, 24) == [401] * 24
    finally:
        gw.stop()


async def test_cli_changes_reach_a_running_gateway(upstream: FakeOpenAI, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    gw = await start_gateway(tmp_path, config(upstream, redis=REDIS_URL), workers=2)
    try:

        def cli(*args: str) -> Any:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "stellargate.cli",
                    "keys",
                    *args,
                    "--config",
                    str(gw.config_path),
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            return json.loads(out.stdout)

        created = await asyncio.to_thread(cli, "create", "--name", "from-cli")
        assert await fresh_connection_calls(gw, created["key"], 8) == [200] * 8
        await asyncio.to_thread(cli, "revoke", created["id"])
        assert await fresh_connection_calls(gw, created["key"], 8) == [401] * 8
    finally:
        gw.stop()


async def test_replicas_share_postgres_and_redis(
    upstream: FakeOpenAI, tmp_path: Path, make_pg_database: Callable[[], Awaitable[str]]
) -> None:
    db = await make_pg_database()
    extra = {"database": db, "redis": REDIS_URL, "keys": {"poll_interval": 30}}
    a = await start_gateway(tmp_path / "a", config(upstream, **extra))
    b = await start_gateway(tmp_path / "b", config(upstream, **extra))
    try:
        kid, key = await a.create_key("shared")
        # B learns of a key created on A, serves it, and refuses it once A revokes it: the
        # message goes over Redis (the database poll is set to 30 s, so it cannot be that).
        assert await fresh_connection_calls(b, key, 4) == [200] * 4
        await a.admin("POST", f"/admin/v1/keys/{kid}/revoke")
        await asyncio.sleep(0.05)
        assert await fresh_connection_calls(b, key, 4) == [401] * 4

        async def usage() -> Any:
            _, body = await b.admin("GET", f"/admin/v1/usage?key_id={kid}")
            return body["data"] if len(body["data"]) >= 4 else None

        assert len(await wait_until(usage)) == 4  # written by B, read through either replica
    finally:
        a.stop()
        b.stop()


async def test_replicas_without_redis_converge_by_polling(
    upstream: FakeOpenAI, tmp_path: Path, make_pg_database: Callable[[], Awaitable[str]]
) -> None:
    db = await make_pg_database()
    extra = {"database": db, "keys": {"poll_interval": 0.3}}
    a = await start_gateway(tmp_path / "a", config(upstream, **extra))
    b = await start_gateway(tmp_path / "b", config(upstream, **extra))
    try:
        kid, key = await a.create_key("polled")
        assert await fresh_connection_calls(b, key, 2) == [200] * 2
        await a.admin("POST", f"/admin/v1/keys/{kid}/revoke")
        await asyncio.sleep(0.8)
        assert await fresh_connection_calls(b, key, 2) == [401] * 2
    finally:
        a.stop()
        b.stop()


async def test_graceful_shutdown_flushes_usage(upstream: FakeOpenAI, tmp_path: Path) -> None:
    gw = await start_gateway(tmp_path, config(upstream, usage={"flush_interval": 30}))
    try:
        _, key = await gw.create_key("shutdown")
        assert await fresh_connection_calls(gw, key, 5) == [200] * 5
    finally:
        # uvicorn re-raises SIGTERM once its graceful shutdown is done
        assert gw.stop() in (0, -15)
    with sqlite3.connect(gw.data_dir / "gw.db") as conn:
        (n,) = conn.execute("select count(*) from usage_records where status = 200").fetchone()
    assert n == 5


async def test_database_outage_loses_no_usage(
    upstream: FakeOpenAI, tmp_path: Path, make_pg_database: Callable[[], Awaitable[str]]
) -> None:
    """The database goes away (connections reset, new ones refused) while traffic flows: requests
    keep succeeding (no database on the hot path), and every record arrives once it is back."""
    db = await make_pg_database()
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    via_proxy = db.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    gw = await start_gateway(tmp_path, config(upstream, database=via_proxy, usage={"flush_interval": 0.1}))
    try:
        _, key = await gw.create_key("outage")
        assert await fresh_connection_calls(gw, key, 5) == [200] * 5
        await proxy.cut()
        statuses: list[int] = []
        for _ in range(6):
            statuses += await fresh_connection_calls(gw, key, 5)
            await asyncio.sleep(0.5)
        assert statuses == [200] * 30, "an outage must not fail requests whose key is cached"
        await proxy.restore()

        async def count() -> int:
            conn = await asyncpg.connect(db)
            try:
                n: int = await conn.fetchval("select count(*) from usage_records where status = 200")
            finally:
                await conn.close()
            return n if n >= 35 else 0

        assert await wait_until(count, timeout=20) == 35
    finally:
        gw.stop()
        await proxy.stop()


async def test_redis_channel_is_the_documented_one() -> None:
    from stellargate.invalidation import KEYS_CHANNEL

    r = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert await r.ping()
    finally:
        await r.aclose()
    assert KEYS_CHANNEL == "stellargate:keys:changed"
