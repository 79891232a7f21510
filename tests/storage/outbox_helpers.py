"""Shared pieces of the outbox tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select

from stellargate.core.usage import UsageRecord
from stellargate.storage.db import Database
from stellargate.storage.records import UsageLedger
from stellargate.storage.tables import usage_records


class SwitchableLedger:
    """Wraps a real ledger; `down = True` makes every write fail the way a lost connection does."""

    def __init__(self, inner: UsageLedger) -> None:
        self.inner = inner
        self.down = False
        self.batches: list[int] = []

    async def insert_many(self, records: Sequence[UsageRecord]) -> int:
        if self.down:
            raise ConnectionRefusedError("database down (test)")
        self.batches.append(len(records))
        return await self.inner.insert_many(records)

    async def query(self, **kw: Any) -> Any:
        return await self.inner.query(**kw)

    async def aggregate(self, **kw: Any) -> Any:
        return await self.inner.aggregate(**kw)


async def eventually(pred: Callable[[], Any], what: str = "condition") -> None:
    """Poll `pred` (sync or async) until it holds; fails the test after 15 s."""
    try:
        async with asyncio.timeout(15):
            while True:
                result = pred()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def stored_ids(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(select(usage_records.c.request_id))).scalars())
