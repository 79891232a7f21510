from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from stellargate.storage.db import Database
from stellargate.storage.migrate import alembic_config
from stellargate.storage.tables import VERSION_TABLE, metadata

HEAD = "0004_key_log_prompts"  # the newest migration; update with each new one


async def test_fresh_database_upgrades_to_head(fresh_db_url: str) -> None:
    db = await Database.connect(fresh_db_url)
    try:
        assert await db.migration_state() == (None, HEAD)
        assert not await db.migrations_current()
        await db.upgrade()
        assert await db.migration_state() == (HEAD, HEAD)
        assert await db.migrations_current()
        await db.upgrade()  # already current: nothing to do, no error
        assert await db.migrations_current()
    finally:
        await db.close()


def _diff(conn: Connection) -> list[object]:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
    return list(compare_metadata(ctx, metadata))


async def test_migrations_match_tables(fresh_db_url: str) -> None:
    db = await Database.connect(fresh_db_url)
    try:
        await db.upgrade()
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.close()


async def test_concurrent_upgrades_in_one_process(fresh_db_url: str) -> None:
    dbs = [await Database.connect(fresh_db_url) for _ in range(3)]
    try:
        await asyncio.gather(*(d.upgrade() for d in dbs))
        assert all([await d.migrations_current() for d in dbs])
    finally:
        for d in dbs:
            await d.close()


_UPGRADE_SCRIPT = """
import asyncio, sys
from stellargate.storage.db import Database
from stellargate.storage.migrate import alembic_config

async def main(url):
    db = await Database.connect(url)
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # start together, to make the race real
        await db.upgrade()
        assert await db.migrations_current()
    finally:
        await db.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_concurrent_upgrades_in_separate_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/race/sg.db"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _UPGRADE_SCRIPT,
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    async with asyncio.timeout(30):
        for p in procs:
            assert p.stdout is not None
            await p.stdout.readline()
        results = await asyncio.gather(*(p.communicate(b"go\n") for p in procs))
    for p, (_out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
    db = await Database.connect(url)
    try:
        assert await db.migrations_current()
    finally:
        await db.close()


def _migrate(conn: Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, action)(cfg, revision)


def _key_columns(conn: Connection) -> set[str]:
    return {col["name"] for col in sa.inspect(conn).get_columns("api_keys")}


async def test_0004_gives_existing_keys_prompt_logging_off_and_downgrades(fresh_db_url: str) -> None:
    db = await Database.connect(fresh_db_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate, "upgrade", "0003_platform")
            # A key as a gateway at 0003 wrote it: no log_prompts column yet.
            await conn.execute(
                sa.text(
                    "INSERT INTO api_keys (id, name, key_hash, prefix, created_at, updated_at, enabled,"
                    " models, scopes, metadata) VALUES ('key_old', 'old', 'h', 'sg-00000000', 1, 1,"
                    " :t, '[]', '[\"*\"]', '{}')"
                ),
                {"t": True},
            )
        await db.upgrade()
        old = await db.keys.get("key_old")
        assert old is not None and old.log_prompts is False
        async with db.engine.begin() as conn:
            await conn.run_sync(_migrate, "downgrade", "0003_platform")
        async with db.engine.connect() as conn:
            assert "log_prompts" not in await conn.run_sync(_key_columns)
            assert (await conn.execute(sa.text("SELECT name FROM api_keys"))).scalars().all() == ["old"]
        await db.upgrade()  # and up again
        assert await db.migrations_current()
    finally:
        await db.close()
