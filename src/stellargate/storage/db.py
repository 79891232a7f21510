"""`Database`: one connection pool and the stores built on it; the storage layer's entry point."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from stellargate.storage import migrate
from stellargate.storage.audit import SqlAuditStore
from stellargate.storage.engine import is_sqlite, normalize_url, open_pool, sqlite_path
from stellargate.storage.idempotency import SqlIdempotencyStore
from stellargate.storage.keys import SqlKeyStore
from stellargate.storage.records import AuditStore, IdempotencyStore, KeyStore, UsageLedger, WebhookStore
from stellargate.storage.usage import SqlUsageLedger
from stellargate.storage.webhooks import SqlWebhookStore


class Database:
    """Keys and the usage ledger over SQLite or PostgreSQL.

    `await Database.connect(url)` opens a pool lazily (no connection is made until first use);
    call `upgrade()` once at start-up (or `stellargate db upgrade`) and `close()` at shutdown.
    """

    keys: KeyStore
    usage: UsageLedger
    idempotency: IdempotencyStore
    audit: AuditStore
    webhooks: WebhookStore

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name  # "sqlite" or "postgresql"
        self.url: str = url.render_as_string(hide_password=False)
        self.redacted_url: str = url.render_as_string(hide_password=True)  # for logs and errors
        self._sa_url = url
        self.keys = SqlKeyStore(engine)
        self.usage = SqlUsageLedger(engine)
        self.idempotency = SqlIdempotencyStore(engine)
        self.audit = SqlAuditStore(engine)
        self.webhooks = SqlWebhookStore(engine)
        self._head: str | None = None

    @classmethod
    async def connect(cls, url: str, *, pool_size: int | None = None, echo: bool = False) -> Database:
        """Accepts sqlite:///rel.db, sqlite:////abs.db, postgres(ql)://... and their async forms."""
        sa_url = normalize_url(url)
        path = sqlite_path(sa_url) if is_sqlite(sa_url) else None
        if path is not None:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        return cls(open_pool(sa_url, pool_size=pool_size, echo=echo), sa_url)

    async def ping(self) -> None:
        """Round-trip a trivial query; raises whatever the driver raises when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def migration_state(self) -> tuple[str | None, str]:
        """(revision the database is at, or None when never migrated; head revision of this code)."""
        if self._head is None:
            self._head = await asyncio.to_thread(migrate.head_revision)
        return await migrate.current_revision(self.engine), self._head

    async def migrations_current(self) -> bool:
        current, head = await self.migration_state()
        return current == head

    async def upgrade(self) -> None:
        """Migrate to head; a no-op when current, and safe when several processes do it at once."""
        await migrate.upgrade(self.engine, self._sa_url)

    async def close(self) -> None:
        await self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.redacted_url!r})"
