"""`SqlIdempotencyStore`: the `idempotency_records` table (implements `records.IdempotencyStore`).

The primary key (key_id, idem_key) is the lock: of concurrent claims on any worker or replica,
exactly one INSERT succeeds. An expired row (a finished one past its replay window, or a running
one whose lease ran out because its process died) is deleted by the next claim, conditionally on
its owner, so two claimers racing over it cannot both take it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.storage.records import IdempotencyRecord, StoredResponse
from stellargate.storage.tables import idempotency_records as t


class SqlIdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def claim(self, rec: IdempotencyRecord) -> IdempotencyRecord | None:
        row = {
            "key_id": rec.key_id,
            "idem_key": rec.idem_key,
            "request_hash": rec.request_hash,
            "state": "running",
            "owner": rec.owner,
            "created_at": rec.created_at,
            "expires_at": rec.expires_at,
            "headers": [],
            "streamed": False,
        }
        stmt = self._insert(t).values(row).on_conflict_do_nothing().returning(t.c.owner)
        where = sa.and_(t.c.key_id == rec.key_id, t.c.idem_key == rec.idem_key)
        for _ in range(3):  # a held row that expires between our reads is retried, boundedly
            async with self._engine.begin() as conn:
                if (await conn.execute(stmt)).first() is not None:
                    return None
                held = (await conn.execute(sa.select(t).where(where))).mappings().first()
                if held is None:
                    continue  # released meanwhile: try again
                if held["expires_at"] > rec.created_at:
                    return _from_row(held)
                await conn.execute(sa.delete(t).where(where, t.c.owner == held["owner"]))
        raise RuntimeError("idempotency record kept changing under a claim")

    async def complete(
        self, key_id: str, idem_key: str, owner: str, response: StoredResponse, expires_at: float
    ) -> bool:
        values: dict[str, Any] = {
            "state": "done",
            "expires_at": expires_at,
            "status": response.status,
            "content_type": response.content_type,
            "headers": [list(h) for h in response.headers],
            "body": response.body,
            "streamed": response.streamed,
        }
        stmt = (
            sa.update(t)
            .where(t.c.key_id == key_id, t.c.idem_key == idem_key, t.c.owner == owner)
            .values(values)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def release(self, key_id: str, idem_key: str, owner: str) -> None:
        stmt = sa.delete(t).where(
            t.c.key_id == key_id, t.c.idem_key == idem_key, t.c.owner == owner, t.c.state == "running"
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def purge(self, now: float) -> int:
        async with self._engine.begin() as conn:
            return (await conn.execute(sa.delete(t).where(t.c.expires_at <= now))).rowcount


def _from_row(row: RowMapping) -> IdempotencyRecord:
    response = None
    if row["state"] == "done":
        response = StoredResponse(
            status=row["status"],
            content_type=row["content_type"],
            headers=[(str(k), str(v)) for k, v in row["headers"] or []],
            body=bytes(row["body"] or b""),
            streamed=bool(row["streamed"]),
        )
    return IdempotencyRecord(
        key_id=row["key_id"],
        idem_key=row["idem_key"],
        request_hash=row["request_hash"],
        state="done" if row["state"] == "done" else "running",
        owner=row["owner"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        response=response,
    )
