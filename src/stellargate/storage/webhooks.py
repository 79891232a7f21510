"""`SqlWebhookStore`: webhook endpoints and their deliveries (implements `records.WebhookStore`).

Deliveries are claimed by a conditional UPDATE of ``next_attempt_at`` (a lease): of several workers
or replicas polling at once, one wins each row, and a row whose sender died is retried when the
lease ends. That is at-least-once: a sender that dies after the endpoint answered but before
``finish`` makes the next one send again, which receivers dedupe by ``webhook-id``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.storage._cursor import decode_cursor, encode_cursor
from stellargate.storage.records import WebhookDelivery, WebhookEndpoint
from stellargate.storage.tables import webhook_deliveries as d_t
from stellargate.storage.tables import webhook_endpoints as e_t

ENDPOINT_FIELDS = frozenset({"url", "description", "events", "secrets", "enabled", "disabled_reason"})


class SqlWebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert

    async def create_endpoint(self, ep: WebhookEndpoint) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(e_t).values(_ep_row(ep)))

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(e_t).where(e_t.c.id == endpoint_id))).mappings().first()
        return None if row is None else _ep(row)

    async def list_endpoints(self) -> list[WebhookEndpoint]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(sa.select(e_t).order_by(e_t.c.created_at, e_t.c.id))).mappings().all()
        return [_ep(r) for r in rows]

    async def update_endpoint(self, endpoint_id: str, **fields: Any) -> WebhookEndpoint | None:
        unknown = fields.keys() - ENDPOINT_FIELDS
        if unknown:
            raise TypeError(f"cannot update webhook field(s): {', '.join(sorted(unknown))}")
        stmt = (
            sa.update(e_t)
            .where(e_t.c.id == endpoint_id)
            .values(**fields, updated_at=time.time())
            .returning(*e_t.c)
        )
        async with self._engine.begin() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else _ep(row)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(d_t).where(d_t.c.endpoint_id == endpoint_id))
            return (await conn.execute(sa.delete(e_t).where(e_t.c.id == endpoint_id))).rowcount == 1

    async def enqueue(self, deliveries: Sequence[WebhookDelivery]) -> int:
        if not deliveries:
            return 0
        stmt = self._insert(d_t).on_conflict_do_nothing().returning(d_t.c.msg_id)
        async with self._engine.begin() as conn:
            return len((await conn.execute(stmt, [_d_row(d) for d in deliveries])).all())

    async def claim_due(self, now: float, lease: float, limit: int) -> list[WebhookDelivery]:
        c = d_t.c
        q = (
            sa.select(d_t)
            .where(c.state == "pending", c.next_attempt_at <= now)
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        claimed: list[WebhookDelivery] = []
        async with self._engine.begin() as conn:
            rows = (await conn.execute(q)).mappings().all()
            for r in rows:
                upd = (
                    sa.update(d_t)
                    .where(
                        c.endpoint_id == r["endpoint_id"],
                        c.msg_id == r["msg_id"],
                        c.state == "pending",
                        c.next_attempt_at == r["next_attempt_at"],
                    )
                    .values(next_attempt_at=now + lease)
                )
                if (await conn.execute(upd)).rowcount == 1:
                    claimed.append(_d(r))
        return claimed

    async def finish(self, d: WebhookDelivery) -> None:
        stmt = (
            sa.update(d_t)
            .where(d_t.c.endpoint_id == d.endpoint_id, d_t.c.msg_id == d.msg_id)
            .values(
                state=d.state,
                attempts=d.attempts,
                next_attempt_at=d.next_attempt_at,
                last_status=d.last_status,
                last_error=d.last_error,
                updated_at=d.updated_at,
            )
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def cancel_pending(self, endpoint_id: str, now: float) -> int:
        stmt = (
            sa.update(d_t)
            .where(d_t.c.endpoint_id == endpoint_id, d_t.c.state == "pending")
            .values(state="cancelled", updated_at=now)
        )
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def list_deliveries(
        self, endpoint_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[WebhookDelivery], str | None]:
        """Newest first; ValueError for a bad cursor."""
        c = d_t.c
        conds: list[Any] = [c.endpoint_id == endpoint_id]
        if cursor:
            ts, mid = decode_cursor(cursor, (float, str))
            conds.append(sa.or_(c.created_at < ts, sa.and_(c.created_at == ts, c.msg_id < mid)))
        stmt = sa.select(d_t).where(*conds).order_by(c.created_at.desc(), c.msg_id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        out = [_d(r) for r in rows[:limit]]
        nxt = encode_cursor(out[-1].created_at, out[-1].msg_id) if len(rows) > limit else None
        return out, nxt


def _ep_row(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": ep.id,
        "url": ep.url,
        "description": ep.description,
        "events": list(ep.events),
        "secrets": list(ep.secrets),
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "created_at": ep.created_at,
        "updated_at": ep.updated_at,
    }


def _ep(r: RowMapping) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=r["id"],
        url=r["url"],
        secrets=list(r["secrets"] or []),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        events=list(r["events"] or []),
        description=r["description"],
        enabled=bool(r["enabled"]),
        disabled_reason=r["disabled_reason"],
    )


def _d_row(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "endpoint_id": d.endpoint_id,
        "msg_id": d.msg_id,
        "event_type": d.event_type,
        "body": d.body,
        "created_at": d.created_at,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "updated_at": d.updated_at,
    }


def _d(r: RowMapping) -> WebhookDelivery:
    state = r["state"]
    return WebhookDelivery(
        endpoint_id=r["endpoint_id"],
        msg_id=r["msg_id"],
        event_type=r["event_type"],
        body=bytes(r["body"]),
        created_at=r["created_at"],
        state=state if state in ("pending", "delivered", "failed", "cancelled") else "failed",
        attempts=r["attempts"],
        next_attempt_at=r["next_attempt_at"],
        last_status=r["last_status"],
        last_error=r["last_error"],
        updated_at=r["updated_at"],
    )
