"""Everything a running gateway process holds, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from stellargate.invalidation import KEYS_CHANNEL, publish_keys_changed, subscribe
from stellargate.keyservice import KeyService
from stellargate.pipeline.keycache import KeyCache, SharedGeneration
from stellargate.pipeline.routing import Router
from stellargate.settings import Settings
from stellargate.storage.db import Database
from stellargate.storage.outbox import UsageOutbox
from stellargate.transport import Transport

log = logging.getLogger("stellargate")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    keys: KeyCache
    key_service: KeyService
    outbox: UsageOutbox
    transport: Transport
    models: Router
    generation: SharedGeneration
    redis: aioredis.Redis | None = None
    started_at: int = field(default_factory=lambda: int(time.time()))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = await Database.connect(settings.database_url)
        if settings.auto_migrate:
            await db.upgrade()
        generation = SharedGeneration(settings.data_dir / "keys.generation")
        cache = KeyCache(db.keys, generation, ttl=settings.keys.cache_ttl)
        redis_client = aioredis.Redis.from_url(settings.redis) if settings.redis else None

        async def notify() -> None:
            cache.changed()
            if redis_client is not None:
                await publish_keys_changed(redis_client)

        outbox = UsageOutbox(
            db.usage,
            settings.data_dir / "outbox",
            flush_interval=settings.usage.flush_interval,
            batch_size=settings.usage.batch_size,
            max_buffer=settings.usage.max_buffer,
        )
        await outbox.start()
        rt = cls(
            settings=settings,
            db=db,
            keys=cache,
            key_service=KeyService(db.keys, notify),
            outbox=outbox,
            transport=Transport(),
            models=Router(settings),
            generation=generation,
            redis=redis_client,
        )
        rt.tasks.append(asyncio.create_task(cache.poll(settings.keys.poll_interval)))
        if redis_client is not None:
            rt.tasks.append(asyncio.create_task(subscribe(redis_client, KEYS_CHANNEL, cache.invalidate_all)))
        return rt

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with suppress(asyncio.CancelledError):
                await t
        await self.transport.close()
        await self.outbox.close()  # flushes; spills to disk if the database is down
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.close()
        self.generation.close()
