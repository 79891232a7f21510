"""Alembic environment for StellarGate.

Normally `stellargate.storage.migrate` runs Alembic programmatically and hands over a live
connection in `config.attributes["connection"]` (opened from the async engine and passed through
`AsyncConnection.run_sync`). Run as a plain Alembic script (`sqlalchemy.url` set in the config),
it opens its own async engine the same way.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from stellargate.storage.engine import normalize_url, open_pool
from stellargate.storage.tables import VERSION_TABLE, metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite can only ALTER by copying the table; batch mode does that for later migrations.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = open_pool(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    config = context.config
    if context.is_offline_mode():
        url = normalize_url(config.get_main_option("sqlalchemy.url") or "")
        context.configure(url=url, target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_with_own_engine(config.get_main_option("sqlalchemy.url") or ""))


_main()
