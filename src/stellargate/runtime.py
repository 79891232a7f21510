"""Everything a running gateway process holds, built once in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from stellargate.audit import AuditLog, ExhaustionAudit
from stellargate.counters.service import Limits, start_limits
from stellargate.invalidation import KEYS_CHANNEL, publish_keys_changed, subscribe
from stellargate.keyservice import KeyService
from stellargate.metrics import Metrics, circuit_states
from stellargate.pipeline.breaker_sync import BreakerSync
from stellargate.pipeline.idempotency import Idempotency
from stellargate.pipeline.keycache import KeyCache, SharedGeneration
from stellargate.pipeline.routing import Router
from stellargate.pipeline.usage import UsageObserver
from stellargate.proxy import ProxyEnvironment
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
    idempotency: Idempotency
    audit: AuditLog
    limits: Limits | None = None  # set by start(); None only in a Runtime built by hand
    redis: aioredis.Redis | None = None
    started_at: int = field(default_factory=lambda: int(time.time()))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    usage_observers: list[UsageObserver] = field(default_factory=list)  # told of every finished call

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
        audit = AuditLog(
            db.audit, flush_interval=settings.audit.flush_interval, max_buffer=settings.audit.max_buffer
        )
        await audit.start()
        rt = cls(
            settings=settings,
            db=db,
            keys=cache,
            key_service=KeyService(db.keys, notify, audit=audit),
            outbox=outbox,
            transport=Transport(ProxyEnvironment.parse(settings.proxy_environment)[0]),
            models=Router(settings),
            generation=generation,
            idempotency=Idempotency(db.idempotency, settings.idempotency, redis_client),
            audit=audit,
            redis=redis_client,
        )
        rt.tasks.append(asyncio.create_task(rt.idempotency.run_purger()))
        rt._install_metrics()
        rt.limits = await start_limits(settings, db.usage)
        rt.tasks.append(asyncio.create_task(cache.poll(settings.keys.poll_interval)))
        if redis_client is not None:
            rt.tasks.append(asyncio.create_task(subscribe(redis_client, KEYS_CHANNEL, cache.invalidate_all)))
            # Circuit-breaker ejections shared by every replica (pipeline/breaker_sync.py).
            sync = BreakerSync(redis_client, settings.routing.redis_prefix, rt.models)
            joined = await sync.start(within=2.0)
            rt.tasks.append(asyncio.create_task(sync.run(joined)))
        return rt

    def _install_metrics(self) -> None:
        m = self.metrics = Metrics(self.settings.data_dir / "metrics")
        outbox, audit = self.outbox, self.audit
        m.gauge("stellargate_outbox_depth", "Usage records not committed.", (), lambda: [((), outbox.depth)])
        m.gauge(
            "stellargate_audit_buffer_depth", "Audit events not written.", (), lambda: [((), audit.depth)]
        )
        m.gauge(
            "stellargate_circuit_state",
            "Circuit breaker state per deployment (1 for the current state).",
            ("deployment", "provider", "state"),
            lambda: circuit_states(self.models.deployments.values()),
        )
        self.usage_observers += [lambda rec, ctx: m.observe(rec, ctx.attempts), ExhaustionAudit(self.audit)]
        self.tasks.append(asyncio.create_task(m.run_snapshots()))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with suppress(asyncio.CancelledError):
                await t
        await self.transport.close()
        if self.limits is not None:
            await self.limits.close()
        await self.outbox.close()  # flushes; spills to disk if the database is down
        await self.audit.close()  # flushes buffered security events
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.close()
        self.generation.close()
