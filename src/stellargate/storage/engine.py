"""Turning a database URL into a pooled async engine: driver normalisation, pool sizing, SQLite pragmas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, pool
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"

# Per connection, because SQLite keeps most of these per connection, not per file.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",  # readers never block the writer, and the writer never blocks readers
    "PRAGMA synchronous=NORMAL",  # durable at checkpoints; safe with WAL, far fewer fsyncs than FULL
    "PRAGMA busy_timeout=5000",  # wait for another process's write lock instead of failing at once
    "PRAGMA foreign_keys=ON",
)


def normalize_url(url: str | URL) -> URL:
    """Map the URLs people write to the async driver SQLAlchemy needs.

    `sqlite:///rel.db`, `sqlite:////abs.db`, `postgres://`, `postgresql://` and the explicit async
    forms are accepted; `sslmode` (libpq's spelling) becomes asyncpg's `ssl`.
    """
    u = make_url(url) if isinstance(url, str) else url
    backend = u.get_backend_name()
    if backend == "sqlite":
        return u.set(drivername=SQLITE_DRIVER)
    if backend in ("postgresql", "postgres"):
        u = u.set(drivername=POSTGRES_DRIVER)
        if "sslmode" in u.query:
            query = dict(u.query)
            query.setdefault("ssl", query.pop("sslmode"))
            u = u.set(query=query)
        return u
    raise ValueError(f"unsupported database URL scheme {u.drivername!r}: use sqlite:// or postgresql://")


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The database file, or None for an in-memory database."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def _json_dumps(value: Any) -> str:
    # default=str: a stray non-JSON value in `meta` must not make a whole batch unwritable.
    return orjson.dumps(value, default=str).decode()


def open_pool(url: str | URL, *, pool_size: int | None = None, echo: bool = False) -> AsyncEngine:
    """An async engine (a connection pool) sized for a gateway worker.

    PostgreSQL: `pool_size` connections kept (default 5) plus up to twice that in bursts; each
    worker process has its own pool, so N workers hold up to N * 3 * pool_size connections.
    SQLite: a small pool; one writer at a time is SQLite's limit anyway, WAL lets readers proceed.
    """
    u = normalize_url(url)
    common: dict[str, Any] = {
        "echo": echo,
        # Never put bound values (usage contents, key hashes) into exception messages and logs.
        "hide_parameters": True,
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
    }
    if is_sqlite(u):
        if sqlite_path(u) is None:
            # One shared connection, or every checkout would see its own empty in-memory database.
            engine = create_async_engine(u, poolclass=pool.StaticPool, **common)
        else:
            size = pool_size or 5
            engine = create_async_engine(u, pool_size=size, max_overflow=size, **common)
        event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    size = pool_size or 5
    return create_async_engine(
        u,
        pool_size=size,
        max_overflow=2 * size,
        pool_pre_ping=True,  # a restarted server or a proxy's idle cut leaves dead sockets in the pool
        pool_recycle=1800,
        pool_timeout=10,
        # asyncpg waits 60 s by default for a connection; fail fast so callers can retry or spill.
        connect_args={"timeout": 5},
        **common,
    )


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()
