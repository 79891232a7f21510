"""Database fixtures: SQLite in tmp_path and the real PostgreSQL server, in throwaway databases.

Reusable by other suites (import or copy the fixtures):
- `pg_admin_url`: the maintenance database (STELLARGATE_TEST_PG, default the local `test` db);
  skips when the server is unreachable, except under CI, where that is a failure.
- `pg_url`: a fresh database `sg_test_<hex>` for the whole session, dropped at the end.
- `make_pg_database()`: another fresh database (dropped at session end), for tests that need an
  empty one.
- `db_url` / `db`: parametrized over sqlite and postgresql; `db` is migrated and emptied.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import delete
from sqlalchemy.engine import make_url

from stellargate.storage.db import Database
from stellargate.storage.tables import api_keys, audit_log, idempotency_records, usage_records

from .tcp_proxy import TcpProxy

BACKENDS = ["sqlite", "postgresql"]


@pytest_asyncio.fixture(scope="session")
async def pg_migrated_url(pg_url: str) -> str:
    db = await Database.connect(pg_url)
    try:
        await db.upgrade()
    finally:
        await db.close()
    return pg_url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def fresh_pg_url(make_pg_database: Callable[[], Awaitable[str]]) -> str:
    return await make_pg_database()


# Sync on purpose: getfixturevalue() may only set up async fixtures from outside the event loop.
@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database on `backend`; the PostgreSQL one is shared and migrated: use `db` for an empty one."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/data/gateway.db"
    return str(request.getfixturevalue("pg_migrated_url"))


@pytest.fixture
def fresh_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database that has never been migrated."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/fresh/gateway.db"
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest_asyncio.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database on each backend."""
    database = await Database.connect(db_url)
    await database.upgrade()
    async with database.engine.begin() as conn:
        await conn.execute(delete(usage_records))
        await conn.execute(delete(api_keys))
        await conn.execute(delete(idempotency_records))
        await conn.execute(delete(audit_log))
    try:
        yield database
    finally:
        await database.close()


@pytest_asyncio.fixture
async def pg_proxy(pg_admin_url: str) -> AsyncIterator[TcpProxy]:
    """A TcpProxy in front of the PostgreSQL server; `proxied(url)` points a URL at it."""
    u = make_url(pg_admin_url)
    proxy = TcpProxy(u.host or "127.0.0.1", u.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def proxied(url: str, proxy: TcpProxy) -> str:
    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
