"""A real database outage: PostgreSQL behind a TCP proxy that the test cuts off and restores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import delete

from stellargate.storage import spill
from stellargate.storage.db import Database
from stellargate.storage.outbox import UsageOutbox
from stellargate.storage.tables import usage_records

from .conftest import proxied
from .factories import usage
from .outbox_helpers import eventually, stored_ids
from .tcp_proxy import TcpProxy


@pytest_asyncio.fixture
async def pg_db(pg_migrated_url: str) -> AsyncIterator[Database]:
    """Direct (unproxied) access to the shared test database, emptied."""
    db = await Database.connect(pg_migrated_url)
    async with db.engine.begin() as conn:
        await conn.execute(delete(usage_records))
    try:
        yield db
    finally:
        await db.close()


@pytest_asyncio.fixture
async def via_proxy(pg_migrated_url: str, pg_proxy: TcpProxy) -> AsyncIterator[Database]:
    db = await Database.connect(proxied(pg_migrated_url, pg_proxy))
    try:
        yield db
    finally:
        await db.close()


def _outbox(db: Database, spill_dir: Path, spill_after: float) -> UsageOutbox:
    return UsageOutbox(
        db.usage,
        spill_dir,
        flush_interval=0.05,
        batch_size=100,
        spill_after=spill_after,
        backoff_initial=0.1,
        backoff_max=0.5,
        insert_timeout=2.0,
    )


async def _produce(ob: UsageOutbox, made: list[str], stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set():
        for _ in range(10):
            rec = usage(i)
            ob.add(rec)
            made.append(rec.request_id)
            i += 1
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("spill_after", [1.0, 60.0], ids=["spills", "retries-in-memory"])
async def test_outage_loses_and_duplicates_nothing(
    pg_db: Database, via_proxy: Database, pg_proxy: TcpProxy, tmp_path: Path, spill_after: float
) -> None:
    spill_dir = tmp_path / "spill"
    ob = _outbox(via_proxy, spill_dir, spill_after)
    await ob.start()
    made: list[str] = []
    stop = asyncio.Event()
    producer = asyncio.create_task(_produce(ob, made, stop))
    try:
        await asyncio.sleep(0.5)
        await eventually(lambda: ob.flushed_total > 0, what="first flush")
        await pg_proxy.cut()
        await asyncio.sleep(3.0)
        assert not ob.healthy
        assert ob.depth > 0 or ob.spilled_records > 0
        await pg_proxy.restore()
        await asyncio.sleep(0.5)
        stop.set()
        await producer
        await eventually(
            lambda: ob.healthy and ob.depth == 0 and spill.pending_files(spill_dir) == 0,
            what="recovery",
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await producer
        await ob.close()

    ids = await stored_ids(pg_db)
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(made)
    assert ob.failures_total > 0
    if spill_after < 3:
        assert ob.spilled_records > 0
        assert ob.replayed_records == ob.spilled_records
    else:
        assert ob.spilled_records == 0
    assert list(spill_dir.glob("*")) == []


async def test_close_while_down_spills_and_next_start_replays_once(
    pg_db: Database, via_proxy: Database, pg_proxy: TcpProxy, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    ob = _outbox(via_proxy, spill_dir, spill_after=60)
    await ob.start()
    ob.add(usage(0))
    await eventually(lambda: ob.flushed_total == 1, what="first flush")
    await pg_proxy.cut()
    for i in range(1, 301):
        ob.add(usage(i))
    await asyncio.wait_for(ob.close(), timeout=10)
    assert ob.depth == 0
    assert ob.spilled_records == 300
    assert spill.pending_files(spill_dir) >= 1
    assert await stored_ids(pg_db) == [usage(0).request_id]

    await pg_proxy.restore()
    for _ in range(2):  # a second start finds nothing left to replay
        ob2 = _outbox(via_proxy, spill_dir, spill_after=60)
        await ob2.start()
        await ob2.close()
    ids = await stored_ids(pg_db)
    assert sorted(ids) == sorted(usage(i).request_id for i in range(301))
    assert list(spill_dir.glob("*")) == []


async def test_start_while_down_replays_later(
    pg_db: Database, via_proxy: Database, pg_proxy: TcpProxy, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    spill.write_spill(spill_dir, [usage(i) for i in range(50)])
    await pg_proxy.cut()
    ob = _outbox(via_proxy, spill_dir, spill_after=60)
    await asyncio.wait_for(ob.start(), timeout=10)  # the database being down must not stop start-up
    try:
        assert spill.pending_files(spill_dir) == 1  # released for a later try, not lost
        assert not ob.healthy
        await pg_proxy.restore()
        await eventually(lambda: spill.pending_files(spill_dir) == 0 and ob.healthy, what="replay")
    finally:
        await ob.close()
    assert len(await stored_ids(pg_db)) == 50
