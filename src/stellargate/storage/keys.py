"""`SqlKeyStore`: API keys in the `api_keys` table (implements `records.KeyStore`)."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.storage._cursor import decode_cursor, encode_cursor
from stellargate.storage.records import KeyRecord
from stellargate.storage.tables import api_keys

MAX_PAGE = 200

# id and created_at identify a key for good; updated_at is the store's to set.
UPDATABLE_FIELDS = frozenset(
    {
        "name",
        "key_hash",
        "prefix",
        "expires_at",
        "enabled",
        "revoked_at",
        "models",
        "scopes",
        "metadata",
        "plan",
        "limits",
        "log_prompts",
    }
)

# Enough to stay above a stored updated_at without leaving float precision (~2.4e-7 at 1.7e9).
_TICK = 1e-6


class DuplicateKeyError(ValueError):
    """A key with this id or key_hash already exists."""


class SqlKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, rec: KeyRecord) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(api_keys).values(_to_row(rec)))
        except sa_exc.IntegrityError as e:
            if _is_unique_violation(e):
                raise DuplicateKeyError(f"key {rec.id!r} or its hash already exists") from e
            raise ValueError(f"key {rec.id!r} is incomplete (a required field is None)") from e

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self._one(sa.select(api_keys).where(api_keys.c.id == key_id))

    async def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        return await self._one(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))

    async def list(
        self, *, limit: int = 50, cursor: str | None = None, include_revoked: bool = True
    ) -> tuple[list[KeyRecord], str | None]:
        """Oldest first, by (created_at, id); pass the returned cursor to get the next page."""
        limit = max(1, min(limit, MAX_PAGE))
        c = api_keys.c
        stmt = sa.select(api_keys).order_by(c.created_at, c.id).limit(limit + 1)
        if not include_revoked:
            stmt = stmt.where(c.revoked_at.is_(None))
        if cursor:
            after_ts, after_id = decode_cursor(cursor, (float, str))
            stmt = stmt.where(
                sa.or_(c.created_at > after_ts, sa.and_(c.created_at == after_ts, c.id > after_id))
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        recs = [_from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(recs[-1].created_at, recs[-1].id) if len(rows) > limit else None
        return recs, next_cursor

    async def update(self, key_id: str, **fields: Any) -> KeyRecord | None:
        """Set `fields` and bump updated_at; the new record, or None when there is no such key."""
        unknown = fields.keys() - UPDATABLE_FIELDS
        if unknown:
            raise TypeError(f"cannot update key field(s): {', '.join(sorted(unknown))}")
        c = api_keys.c
        # Workers poll last_change() and reload when it grows. A host whose clock runs behind must
        # still move it forward, so updated_at is at least just above the newest one stored.
        newest = sa.select(sa.func.max(c.updated_at)).scalar_subquery() + _TICK
        now = time.time()
        values: dict[str, Any] = {
            **fields,
            "updated_at": sa.case((newest > now, newest), else_=sa.literal(now, sa.Double)),
        }
        stmt = sa.update(api_keys).where(c.id == key_id).values(values).returning(*api_keys.c)
        try:
            async with self._engine.begin() as conn:
                row = (await conn.execute(stmt)).mappings().first()
        except sa_exc.IntegrityError as e:
            if _is_unique_violation(e):
                raise DuplicateKeyError("another key already has this key_hash") from e
            raise ValueError("a required key field cannot be set to None") from e
        return None if row is None else _from_row(row)

    async def last_change(self) -> float:
        """The newest updated_at of any key (0.0 when there are none)."""
        stmt = sa.select(sa.func.max(api_keys.c.updated_at))
        async with self._engine.connect() as conn:
            value = (await conn.execute(stmt)).scalar()
        return 0.0 if value is None else float(value)

    async def _one(self, stmt: sa.Select[Any]) -> KeyRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else _from_row(row)


def _is_unique_violation(e: sa_exc.IntegrityError) -> bool:
    # PostgreSQL says so by SQLSTATE (on the driver's exception); SQLite only in its message.
    cause: BaseException | None = e.orig
    while cause is not None:
        if getattr(cause, "sqlstate", None) == "23505":
            return True
        cause = cause.__cause__
    return "UNIQUE constraint failed" in str(e.orig)


def _to_row(rec: KeyRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "key_hash": rec.key_hash,
        "prefix": rec.prefix,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "expires_at": rec.expires_at,
        "enabled": rec.enabled,
        "revoked_at": rec.revoked_at,
        "models": list(rec.models),
        "scopes": list(rec.scopes),
        "metadata": dict(rec.metadata),
        "plan": rec.plan,
        "limits": dict(rec.limits),
        "log_prompts": rec.log_prompts,
    }


def _from_row(row: RowMapping) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        expires_at=row["expires_at"],
        enabled=bool(row["enabled"]),
        revoked_at=row["revoked_at"],
        models=list(row["models"] or []),
        scopes=list(row["scopes"] or []),
        metadata=dict(row["metadata"] or {}),
        plan=row["plan"],
        limits=dict(row["limits"] or {}),
        log_prompts=bool(row["log_prompts"]),
    )
