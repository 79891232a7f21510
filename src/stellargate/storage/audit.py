"""`SqlAuditStore`: the append-only `audit_log` table (implements `records.AuditStore`).

There is no update and no delete here: nothing in the gateway can change an entry once written.
Appends are idempotent on the event id, so a batch retried after an unclear failure is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.storage._cursor import decode_cursor, encode_cursor
from stellargate.storage.records import AuditEvent
from stellargate.storage.tables import audit_log as t

MAX_PAGE = 1000


class SqlAuditStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def append_many(self, events: Sequence[AuditEvent]) -> int:
        if not events:
            return 0
        rows = [
            {
                "id": e.id,
                "ts": e.ts,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "source": e.source,
                "details": dict(e.details),
            }
            for e in events
        ]
        stmt = self._insert(t).on_conflict_do_nothing(index_elements=[t.c.id]).returning(t.c.id)
        async with self._engine.begin() as conn:
            return len((await conn.execute(stmt, rows)).all())

    async def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[AuditEvent], str | None]:
        """Newest first; ``since`` inclusive, ``until`` exclusive. ValueError for a bad cursor."""
        limit = max(1, min(limit, MAX_PAGE))
        c = t.c
        conds: list[Any] = []
        if actor is not None:
            conds.append(c.actor == actor)
        if action is not None:
            conds.append(c.action == action)
        if target is not None:
            conds.append(c.target == target)
        if since is not None:
            conds.append(c.ts >= since)
        if until is not None:
            conds.append(c.ts < until)
        if cursor:
            ts, last_id = decode_cursor(cursor, (float, str))
            conds.append(sa.or_(c.ts < ts, sa.and_(c.ts == ts, c.id < last_id)))
        stmt = sa.select(t).where(*conds).order_by(c.ts.desc(), c.id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        events = [_from_row(r) for r in rows[:limit]]
        nxt = encode_cursor(events[-1].ts, events[-1].id) if len(rows) > limit else None
        return events, nxt


def _from_row(row: RowMapping) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        ts=row["ts"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        source=row["source"],
        details=dict(row["details"] or {}),
    )
