from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete, func, select

from stellargate.core.usage import UsageRecord
from stellargate.storage.db import Database
from stellargate.storage.tables import usage_records
from stellargate.storage.usage import SqlUsageLedger

from .factories import T0, usage


def test_table_has_a_column_for_every_record_field() -> None:
    # A field added to UsageRecord needs a column and a migration, or the ledger cannot store it.
    assert {f.name for f in fields(UsageRecord)} == set(usage_records.c.keys())


async def count(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(usage_records))).scalar_one())


async def test_insert_many_is_idempotent(db: Database) -> None:
    recs = [usage(i) for i in range(10)]
    assert await db.usage.insert_many(recs) == 10
    assert await db.usage.insert_many(recs) == 0
    assert await db.usage.insert_many([*recs[5:], usage(10), usage(11), usage(11)]) == 2
    assert await db.usage.insert_many([]) == 0
    assert await count(db) == 12


async def test_round_trip_keeps_every_field(db: Database) -> None:
    rec = usage(
        1,
        key_id=None,
        provider=None,
        upstream_model=None,
        status=429,
        streamed=True,
        cached_tokens=3,
        cache_creation_tokens=2,
        reasoning_tokens=7,
        cost_usd=0.000123,
        latency_ms=12.5,
        ttft_ms=3.25,
        error_code="rate_limited",
        usage_estimated=True,
        attempts=3,
        meta={"route": ["a", "b"], "nested": {"ok": True}, "unicode": "héllo ✓"},
    )
    await db.usage.insert_many([rec])
    got, _ = await db.usage.query()
    assert got == [rec]


async def test_unstorable_records_are_dropped_not_retried(db: Database) -> None:
    ledger = db.usage
    assert isinstance(ledger, SqlUsageLedger)
    bad: list[UsageRecord] = [
        usage(1, model=None),
        usage(2, prompt_tokens="many"),
        usage(3, cost_usd=float("nan")),
        usage(4, request_id=""),
    ]
    assert await ledger.insert_many([*bad, usage(5), usage(6)]) == 2
    assert ledger.rejected_total == 4
    assert await count(db) == 2


async def test_data_the_database_refuses_is_dropped_alone(db: Database) -> None:
    ledger = db.usage
    assert isinstance(ledger, SqlUsageLedger)
    # PostgreSQL refuses NUL in text; SQLite stores it. Either way the other records go in.
    n = await ledger.insert_many([usage(1), usage(2, model="gpt\x00"), usage(3)])
    assert await count(db) == n
    assert n + ledger.rejected_total == 3
    if db.dialect == "postgresql":
        assert ledger.rejected_total == 1


async def _seed(db: Database) -> list[UsageRecord]:
    recs = [
        usage(
            i,
            # Pairs share a timestamp, so the cursor has to break ties by request_id.
            created_at=T0 + (i // 2),
            key_id=["key_a", "key_b", None][i % 3],
            model=["gpt-4o", "claude-3-5-sonnet"][i % 2],
        )
        for i in range(25)
    ]
    await db.usage.insert_many(recs)
    return recs


async def _all_pages(db: Database, limit: int, **filters: Any) -> list[UsageRecord]:
    out: list[UsageRecord] = []
    cursor: str | None = None
    while True:
        page, cursor = await db.usage.query(limit=limit, cursor=cursor, **filters)
        assert len(page) <= limit
        out += page
        if cursor is None:
            return out


def _newest_first(recs: list[UsageRecord]) -> list[str]:
    return [r.request_id for r in sorted(recs, key=lambda r: (r.created_at, r.request_id), reverse=True)]


async def test_query_newest_first_with_cursor(db: Database) -> None:
    recs = await _seed(db)
    got = await _all_pages(db, limit=4)
    assert [r.request_id for r in got] == _newest_first(recs)


@pytest.mark.parametrize(
    "filters",
    [
        {"key_id": "key_b"},
        {"model": "claude-3-5-sonnet"},
        {"since": T0 + 3},
        {"until": T0 + 3},
        {"since": T0 + 2, "until": T0 + 9, "model": "gpt-4o", "key_id": "key_a"},
    ],
)
async def test_query_filters(db: Database, filters: dict[str, Any]) -> None:
    recs = await _seed(db)

    def keep(r: UsageRecord) -> bool:
        return (
            ("key_id" not in filters or r.key_id == filters["key_id"])
            and ("model" not in filters or r.model == filters["model"])
            and ("since" not in filters or r.created_at >= filters["since"])
            and ("until" not in filters or r.created_at < filters["until"])
        )

    got = await _all_pages(db, limit=3, **filters)
    assert [r.request_id for r in got] == _newest_first([r for r in recs if keep(r)])


DAY = 86_400.0
MIDNIGHT = 1_700_006_400.0  # 2023-11-15T00:00:00Z

# Straddles UTC midnight, including an instant SQLite would round up into the next day.
AGG_RECORDS = [
    usage(1, created_at=MIDNIGHT - 0.00004, model="b-model", key_id="key_b", cost_usd=0.1, latency_ms=10.0),
    usage(2, created_at=MIDNIGHT - 3600, model="B-model", key_id=None, status=500, cost_usd=0.2),
    usage(3, created_at=MIDNIGHT, model="a-model", key_id="key_a", prompt_tokens=100, cached_tokens=40),
    usage(4, created_at=MIDNIGHT + DAY - 1, model="a-model", key_id="key_a", status=429, latency_ms=300.0),
    usage(5, created_at=MIDNIGHT + DAY, model="b-model", key_id="key_b", completion_tokens=9),
    usage(6, created_at=MIDNIGHT + 2 * DAY + 0.5, model="a-model", key_id=None, cost_usd=0.3),
]


def _group(
    n: int, p: int, c: int, cached: int, cost: float, errors: int, lat: float, group: str | None
) -> dict[str, Any]:
    return {
        "group": group,
        "requests": n,
        "prompt_tokens": p,
        "completion_tokens": c,
        "cached_tokens": cached,
        "cache_creation_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "errors": errors,
        "avg_latency_ms": lat,
    }


EXPECTED = {
    # Byte order: upper case sorts before lower case on both backends, whatever the locale.
    "model": [
        _group(1, 10, 5, 0, 0.2, 1, 100.0, "B-model"),
        _group(3, 120, 15, 40, 0.8, 1, 166.667, "a-model"),
        _group(2, 20, 14, 0, 0.35, 0, 55.0, "b-model"),
    ],
    "key": [
        _group(2, 20, 10, 0, 0.5, 1, 100.0, None),
        _group(2, 110, 10, 40, 0.5, 1, 200.0, "key_a"),
        _group(2, 20, 14, 0, 0.35, 0, 55.0, "key_b"),
    ],
    "day": [
        _group(2, 20, 10, 0, 0.3, 1, 55.0, "2023-11-14"),
        _group(2, 110, 10, 40, 0.5, 1, 200.0, "2023-11-15"),
        _group(1, 10, 9, 0, 0.25, 0, 100.0, "2023-11-16"),
        _group(1, 10, 5, 0, 0.3, 0, 100.0, "2023-11-17"),
    ],
}


@pytest.mark.parametrize("group_by", ["model", "key", "day"])
async def test_aggregate(db: Database, group_by: Any) -> None:
    await db.usage.insert_many(AGG_RECORDS)
    rows, cursor = await db.usage.aggregate(group_by=group_by)
    assert cursor is None
    assert rows == EXPECTED[group_by]
    # One group per page: the cursor walks them in order.
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = await db.usage.aggregate(group_by=group_by, limit=1, cursor=cursor)
        paged += page
        if cursor is None:
            break
    assert paged == rows


async def test_aggregate_filters(db: Database) -> None:
    await db.usage.insert_many(AGG_RECORDS)
    rows, _ = await db.usage.aggregate(group_by="day", model="a-model", since=MIDNIGHT, until=MIDNIGHT + DAY)
    assert rows == [_group(2, 110, 10, 40, 0.5, 1, 200.0, "2023-11-15")]
    rows, _ = await db.usage.aggregate(group_by="model", key_id="key_b")
    assert [r["group"] for r in rows] == ["b-model"]


@pytest_asyncio.fixture
async def both_dbs(tmp_path: Path, pg_migrated_url: str) -> AsyncIterator[list[Database]]:
    dbs = [await Database.connect(f"sqlite:///{tmp_path}/sg.db"), await Database.connect(pg_migrated_url)]
    for d in dbs:
        await d.upgrade()
        async with d.engine.begin() as conn:
            await conn.execute(delete(usage_records))
    try:
        yield dbs
    finally:
        for d in dbs:
            await d.close()


async def test_aggregates_identical_on_both_backends(both_dbs: list[Database]) -> None:
    # Awkward floats and many rows, so summation order and rounding would show if they could.
    recs = [
        usage(
            i,
            created_at=MIDNIGHT + i * 3599.9997,
            model=f"model-{i % 7}",
            key_id=None if i % 5 == 0 else f"key_{i % 4}",
            cost_usd=0.1 * (i % 13) + 1e-7 * i,
            latency_ms=i * 1.1,
            status=200 if i % 9 else 502,
        )
        for i in range(400)
    ]
    results = []
    for d in both_dbs:
        await d.usage.insert_many(recs)
        results.append({g: await d.usage.aggregate(group_by=g, limit=1000) for g in ("model", "key", "day")})
    assert results[0] == results[1]
    assert len(results[0]["day"][0]) == 17  # 400 hours and a bit
