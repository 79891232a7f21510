"""Running the Alembic migrations from code, without an alembic.ini.

The scripts ship inside the package (`storage/migrations/`), so this works from a wheel as well
as from a checkout. Upgrades are serialised across processes: a PostgreSQL advisory lock held for
the migration transaction, or a lock file beside a SQLite database.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.storage.engine import is_sqlite, sqlite_path
from stellargate.storage.tables import VERSION_TABLE

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# Any constant works; it only has to be the same in every StellarGate process ("SGMI").
_PG_LOCK_KEY = 0x53474D49


def alembic_config(url: URL | None = None) -> Config:
    """An Alembic config pointing at the packaged scripts; `url` only matters for offline/CLI use."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%', which URL-escaped passwords contain.
        cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this code (reads the script files: call it off the loop)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current_revision_sync)


def _current_revision_sync(conn: Connection) -> str | None:
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


async def upgrade(engine: AsyncEngine, url: URL, *, lock_timeout: float = 120.0) -> None:
    """Upgrade to head. A no-op when already current; safe when several processes race to it."""
    path = sqlite_path(url) if is_sqlite(url) else None
    if path is None:
        await _upgrade(engine)
        return
    async with asyncio.timeout(lock_timeout):
        fd = await _lock_file(path.with_name(path.name + ".migrate-lock"))
    try:
        await _upgrade(engine)
    finally:
        _unlock(fd)
        os.close(fd)


async def _upgrade(engine: AsyncEngine) -> None:
    cfg = alembic_config()
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade_sync, cfg)


def _upgrade_sync(conn: Connection, cfg: Config) -> None:
    if conn.dialect.name == "postgresql":
        # Held until this transaction ends; a second process waits here, then finds nothing to do.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def _lock_file(path: Path) -> int:
    """Open `path` and take an exclusive OS lock on it, polling so that waiting never blocks the loop."""
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    fd = await asyncio.to_thread(os.open, path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # Polled: the holder is another process, so there is no event to wait on.
        while True:
            if _try_lock(fd):
                return fd
            await asyncio.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
