"""Idempotency records and the audit log on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace

import pytest

from stellargate.audit import AuditLog, new_event_id, watch_fail_open
from stellargate.storage.db import Database
from stellargate.storage.records import AuditEvent, IdempotencyRecord, StoredResponse


def running(owner: str, now: float, lease: float = 60.0, rhash: str = "h1") -> IdempotencyRecord:
    return IdempotencyRecord("key_a", "idem-1", rhash, "running", owner, now, now + lease)


RESP = StoredResponse(200, "application/json", [("request-id", "r1")], b'{"ok": true}\x00\xff', False)


async def test_one_claim_wins_and_the_record_replays(db: Database) -> None:
    store, now = db.idempotency, time.time()
    results = await asyncio.gather(*(store.claim(running(f"o{i}", now)) for i in range(5)))
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    held = next(r for r in results if r is not None)
    assert held.state == "running" and held.response is None
    owner = f"o{winners[0]}"
    assert not await store.complete("key_a", "idem-1", "someone-else", RESP, now + 100)
    assert await store.complete("key_a", "idem-1", owner, RESP, now + 100)
    again = await store.claim(running("o9", now))
    assert again is not None and again.state == "done" and again.response == RESP


async def test_release_and_expiry_free_the_key(db: Database) -> None:
    store, now = db.idempotency, time.time()
    assert await store.claim(running("a", now)) is None
    await store.release("key_a", "idem-1", "not-the-owner")
    assert await store.claim(running("b", now)) is not None
    await store.release("key_a", "idem-1", "a")
    assert await store.claim(running("b", now)) is None
    # b's process dies: once its lease is over, the next claim takes the key over.
    assert await store.claim(running("c", now + 61)) is None
    assert not await store.complete("key_a", "idem-1", "b", RESP, now + 100)
    assert await store.purge(now + 10_000) == 1


async def test_audit_filters_and_cursor(db: Database) -> None:
    base = 1_700_000_000.0
    events = [
        AuditEvent(
            new_event_id(base + i), base + i, "admin" if i % 2 else "cli", "key.created", f"key_{i % 3}"
        )
        for i in range(25)
    ]
    assert await db.audit.append_many(events) == 25
    assert await db.audit.append_many(events[:3]) == 0  # retried batches are harmless
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page, cursor = await db.audit.query(limit=7, cursor=cursor)
        seen += [e.id for e in page]
        if cursor is None:
            break
    assert seen == [e.id for e in reversed(events)]
    admin, _ = await db.audit.query(actor="admin", limit=100)
    assert len(admin) == 12 and all(e.actor == "admin" for e in admin)
    ranged, _ = await db.audit.query(target="key_1", since=base + 4, until=base + 13, limit=100)
    assert [e.ts - base for e in ranged] == [10.0, 7.0, 4.0]
    with pytest.raises(ValueError, match="cursor"):
        await db.audit.query(cursor="garbage!")


async def test_buffered_events_are_written_in_batches(db: Database) -> None:
    log = AuditLog(db.audit, flush_interval=0.05, max_buffer=100)
    await log.start()
    for i in range(150):
        log.add("auth.failed", actor="sg-abcdefgh", source="127.0.0.1", details={"n": i})
    assert log.dropped_total == 50
    await log.record("key.revoked", actor="admin", target="key_x")
    await log.close()
    failed, _ = await db.audit.query(action="auth.failed", limit=1000)
    assert len(failed) == 100
    assert (await db.audit.query(action="key.revoked"))[0][0].target == "key_x"


async def test_fail_open_periods_are_audited(db: Database) -> None:
    log = AuditLog(db.audit, flush_interval=0.05)
    await log.start()
    limits = SimpleNamespace(unavailable_open=0, unavailable_closed=0)
    task = asyncio.create_task(watch_fail_open(log, limits, interval=0.05))
    try:
        await asyncio.sleep(0.1)
        limits.unavailable_open += 7
        limits.unavailable_closed += 2
        await asyncio.sleep(0.15)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await log.close()
    events, _ = await db.audit.query(action="limits.fail_open")
    assert len(events) == 1 and events[0].details == {"admitted_unchecked": 7, "refused": 2}
