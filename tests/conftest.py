"""Fixtures shared by every suite: throwaway databases on the real PostgreSQL server.

- `pg_admin_url`: the maintenance database (STELLARGATE_TEST_PG, default the local `test` db);
  skips when the server is unreachable, except under CI, where that is a failure.
- `make_pg_database()`: a fresh database `sg_test_<hex>`, dropped at the end of the session.
- `pg_url`: one such database for the whole session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import make_url

DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest_asyncio.fixture(scope="session")
async def pg_admin_url() -> str:
    url = os.environ.get("STELLARGATE_TEST_PG", DEFAULT_PG_ADMIN)
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as e:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {url}: {e}")
    await conn.close()
    return url


@pytest_asyncio.fixture(scope="session")
async def make_pg_database(pg_admin_url: str) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    created: list[str] = []

    async def make() -> str:
        name = f"sg_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(pg_admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        created.append(name)
        return _with_database(pg_admin_url, name)

    yield make
    conn = await asyncpg.connect(pg_admin_url)
    try:
        for name in created:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="session")
async def pg_url(make_pg_database: Callable[[], Awaitable[str]]) -> str:
    return await make_pg_database()
