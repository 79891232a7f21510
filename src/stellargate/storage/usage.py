"""`SqlUsageLedger`: the `usage_records` table (implements `records.UsageLedger`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.core.usage import UsageRecord
from stellargate.storage._cursor import decode_cursor, encode_cursor
from stellargate.storage.records import GroupBy
from stellargate.storage.tables import usage_records

log = logging.getLogger("stellargate.storage.usage")

MAX_PAGE = 1000

_REQUIRED_TEXT = ("request_id", "endpoint", "dialect", "model")
_OPTIONAL_TEXT = ("key_id", "provider", "upstream_model", "error_code")
_INTS = (
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_creation_tokens",
    "reasoning_tokens",
    "attempts",
)
_FLOATS = ("created_at", "cost_usd", "latency_ms")
_BOOLS = ("streamed", "usage_estimated")

# SQLSTATE classes 22 (data exception) and 23 (integrity violation): the same rows would fail again
# on every retry, unlike connection trouble, which a retry cures.
_DATA_SQLSTATE_CLASSES = ("22", "23")


class RejectedRecord(ValueError):
    """A usage record that can never be stored as it is (wrong types, missing fields)."""


class SqlUsageLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        # Records dropped because no retry could ever store them; each is logged with its request_id.
        self.rejected_total = 0

    async def insert_many(self, records: Sequence[UsageRecord]) -> int:
        """Insert in one transaction, skipping request_ids already stored; returns how many were new.

        A record that can never be stored (bad types, or data the database refuses, such as a NUL
        in PostgreSQL text) is logged by request_id and dropped, so that it cannot block the
        ledger; the rest are then inserted one transaction each.
        """
        rows: list[dict[str, Any]] = []
        for rec in records:
            try:
                rows.append(_to_row(rec))
            except RejectedRecord as e:
                self._reject(getattr(rec, "request_id", None), str(e))
        if not rows:
            return 0
        try:
            return await self._insert(rows)
        except sa_exc.DBAPIError as e:
            if not _is_data_error(e):
                raise
        inserted = 0
        for row in rows:
            try:
                inserted += await self._insert([row])
            except sa_exc.DBAPIError as e:
                if not _is_data_error(e):
                    raise
                self._reject(row["request_id"], "refused by the database")
        return inserted

    async def _insert(self, rows: list[dict[str, Any]]) -> int:
        insert = pg_insert if self._pg else sqlite_insert
        stmt = (
            insert(usage_records)
            .on_conflict_do_nothing(index_elements=[usage_records.c.request_id])
            .returning(usage_records.c.request_id)
        )
        async with self._engine.begin() as conn:
            result = await conn.execute(stmt, rows)
            return len(result.all())

    def _reject(self, request_id: object, why: str) -> None:
        self.rejected_total += 1
        log.error("usage record %r dropped: %s", request_id, why)

    async def query(
        self,
        *,
        key_id: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[UsageRecord], str | None]:
        """Newest first. `since` is inclusive, `until` exclusive (both on created_at)."""
        limit = max(1, min(limit, MAX_PAGE))
        c = usage_records.c
        stmt = (
            sa.select(usage_records)
            .where(*_filters(key_id, model, since, until))
            .order_by(c.created_at.desc(), c.request_id.desc())
            .limit(limit + 1)
        )
        if cursor:
            before_ts, before_id = decode_cursor(cursor, (float, str))
            stmt = stmt.where(
                sa.or_(c.created_at < before_ts, sa.and_(c.created_at == before_ts, c.request_id < before_id))
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        recs = [_from_row(r) for r in rows[:limit]]
        next_cursor = encode_cursor(recs[-1].created_at, recs[-1].request_id) if len(rows) > limit else None
        return recs, next_cursor

    async def aggregate(
        self,
        *,
        group_by: GroupBy,
        key_id: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Totals per model, key (None for keyless requests) or UTC day ('YYYY-MM-DD'), by group ascending."""
        limit = max(1, min(limit, MAX_PAGE))
        c = usage_records.c
        group = self._group_expr(group_by)
        stmt = (
            sa.select(
                group.label("grp"),
                sa.func.count().label("requests"),
                sa.func.sum(c.prompt_tokens).label("prompt_tokens"),
                sa.func.sum(c.completion_tokens).label("completion_tokens"),
                sa.func.sum(c.cached_tokens).label("cached_tokens"),
                sa.func.sum(c.cache_creation_tokens).label("cache_creation_tokens"),
                sa.func.sum(c.reasoning_tokens).label("reasoning_tokens"),
                sa.func.sum(c.cost_usd).label("cost_usd"),
                sa.func.sum(sa.case((c.status >= 400, 1), else_=0)).label("errors"),
                sa.func.avg(c.latency_ms).label("avg_latency_ms"),
            )
            .where(*_filters(key_id, model, since, until))
            .group_by(group)
            .order_by(group)
            .limit(limit + 1)
        )
        if cursor:
            (after,) = decode_cursor(cursor, (str,))
            # Rows, not groups, are filtered: a group's value depends on its rows alone.
            stmt = stmt.where(group > after)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        out = [_agg_row(r, group_by) for r in rows[:limit]]
        next_cursor = encode_cursor(rows[limit - 1]["grp"]) if len(rows) > limit else None
        return out, next_cursor

    def _group_expr(self, group_by: GroupBy) -> sa.ColumnElement[str]:
        c = usage_records.c
        expr: sa.ColumnElement[str]
        if group_by == "model":
            expr = c.model
        elif group_by == "key":
            # '' stands in for "no key" so that grouping, ordering and cursors need no NULL rules,
            # which differ between the backends; it is reported as None.
            expr = sa.func.coalesce(c.key_id, "")
        elif group_by == "day":
            expr = self._utc_day(c.created_at)
        else:
            raise ValueError(f"group_by must be 'model', 'key' or 'day', not {group_by!r}")
        # Byte order on both backends; PostgreSQL would otherwise sort by the database's locale.
        return expr.collate("C") if self._pg else expr

    def _utc_day(self, ts: sa.ColumnElement[float]) -> sa.ColumnElement[str]:
        # Whole seconds first: SQLite rounds to milliseconds and PostgreSQL to microseconds, so a
        # request at 23:59:59.9999 could otherwise land on different days on the two backends.
        if self._pg:
            utc = sa.func.timezone("UTC", sa.func.to_timestamp(sa.func.floor(ts)))
            return sa.func.to_char(utc, "YYYY-MM-DD", type_=sa.Text)
        return sa.func.strftime("%Y-%m-%d", sa.cast(ts, sa.Integer), "unixepoch", type_=sa.Text)


def _is_data_error(e: sa_exc.DBAPIError) -> bool:
    if e.connection_invalidated:
        return False
    if isinstance(e, (sa_exc.DataError, sa_exc.IntegrityError)):
        return True
    # asyncpg reports some data errors (a NUL in text, say) as a plain Error; its SQLSTATE tells.
    cause: BaseException | None = e.orig
    while cause is not None:
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate[:2] in _DATA_SQLSTATE_CLASSES
        cause = cause.__cause__
    return False


def _filters(
    key_id: str | None, model: str | None, since: float | None, until: float | None
) -> list[sa.ColumnElement[bool]]:
    c = usage_records.c
    out: list[sa.ColumnElement[bool]] = []
    if key_id is not None:
        out.append(c.key_id == key_id)
    if model is not None:
        out.append(c.model == model)
    if since is not None:
        out.append(c.created_at >= since)
    if until is not None:
        out.append(c.created_at < until)
    return out


def _to_row(rec: UsageRecord) -> dict[str, Any]:
    """Coerce to the column types, so both backends store (and give back) the same thing."""
    row: dict[str, Any] = {}
    for name in _REQUIRED_TEXT:
        value = getattr(rec, name, None)
        if not isinstance(value, str):
            raise RejectedRecord(f"{name} is not a string")
        row[name] = value
    if not row["request_id"]:
        raise RejectedRecord("empty request_id")
    if not isinstance(rec.meta, dict):
        raise RejectedRecord("meta is not a dict")
    row["meta"] = rec.meta
    try:
        for name in _OPTIONAL_TEXT:
            value = getattr(rec, name)
            row[name] = None if value is None else str(value)
        for name in _INTS:
            row[name] = int(getattr(rec, name))
        for name in _BOOLS:
            row[name] = bool(getattr(rec, name))
        for name in _FLOATS:
            row[name] = float(getattr(rec, name))
        row["ttft_ms"] = None if rec.ttft_ms is None else float(rec.ttft_ms)
    except (TypeError, ValueError, OverflowError) as e:
        raise RejectedRecord(f"a field has the wrong type ({type(e).__name__})") from e
    # One NaN would turn every sum and average over it into NaN, for good.
    if not all(math.isfinite(row[name]) for name in _FLOATS) or (
        row["ttft_ms"] is not None and not math.isfinite(row["ttft_ms"])
    ):
        raise RejectedRecord("a time or cost is not a finite number")
    return row


def _from_row(row: RowMapping) -> UsageRecord:
    d = dict(row)
    for name in _BOOLS:
        d[name] = bool(d[name])
    return UsageRecord.from_dict(d)


def _agg_row(row: RowMapping, group_by: GroupBy) -> dict[str, Any]:
    group = row["grp"]
    return {
        "group": None if group_by == "key" and group == "" else group,
        "requests": int(row["requests"]),
        "prompt_tokens": _int(row["prompt_tokens"]),
        "completion_tokens": _int(row["completion_tokens"]),
        "cached_tokens": _int(row["cached_tokens"]),
        "cache_creation_tokens": _int(row["cache_creation_tokens"]),
        "reasoning_tokens": _int(row["reasoning_tokens"]),
        # Rounded so that summation order (which differs between backends) cannot show.
        "cost_usd": round(float(row["cost_usd"] or 0.0), 9),
        "errors": _int(row["errors"]),
        "avg_latency_ms": round(float(row["avg_latency_ms"] or 0.0), 3),
    }


def _int(value: int | Decimal | None) -> int:
    # PostgreSQL's sum(bigint) is numeric, which asyncpg returns as Decimal.
    return 0 if value is None else int(value)
