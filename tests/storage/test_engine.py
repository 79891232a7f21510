from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from stellargate.storage.db import Database
from stellargate.storage.engine import normalize_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///data/sg.db", "sqlite+aiosqlite:///data/sg.db"),
        ("sqlite:////var/lib/sg.db", "sqlite+aiosqlite:////var/lib/sg.db"),
        ("sqlite+aiosqlite:///sg.db", "sqlite+aiosqlite:///sg.db"),
        ("postgresql://u@db:5433/sg", "postgresql+asyncpg://u@db:5433/sg"),
        ("postgres://u:pw@db/sg", "postgresql+asyncpg://u:pw@db/sg"),
        ("postgresql+asyncpg://u@db/sg", "postgresql+asyncpg://u@db/sg"),
        ("postgresql://u@db/sg?sslmode=require", "postgresql+asyncpg://u@db/sg?ssl=require"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


def test_unsupported_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        normalize_url("mysql://u@h/db")


async def test_redacted_url_hides_password() -> None:
    db = await Database.connect("postgresql://sg:s3cret@127.0.0.1:1/sg")
    try:
        assert "s3cret" not in db.redacted_url
        assert "s3cret" not in repr(db)
        assert "s3cret" in db.url
    finally:
        await db.close()


async def test_sqlite_relative_path_creates_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = await Database.connect("sqlite:///nested/dir/sg.db")
    try:
        await db.ping()
        assert (tmp_path / "nested" / "dir" / "sg.db").exists()
    finally:
        await db.close()


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = await Database.connect(f"sqlite:///{tmp_path}/sg.db")
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await db.close()


async def test_sqlite_in_memory_is_one_database() -> None:
    db = await Database.connect("sqlite://")
    try:
        await db.upgrade()
        assert await db.migrations_current()
    finally:
        await db.close()


async def test_ping(db: Database) -> None:
    await db.ping()


async def test_ping_fails_when_unreachable() -> None:
    db = await Database.connect("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(OSError):  # the driver's own error is what callers see
            await db.ping()
    finally:
        await db.close()
