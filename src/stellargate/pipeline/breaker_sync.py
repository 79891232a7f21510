"""Share circuit-breaker ejections and recoveries between replicas over Redis.

The hot path never touches Redis: a breaker decides in process, and only its state changes
(an ejection, a recovery: a handful per incident) are published, from a background task. Each
replica applies what it hears to its own breakers. An ejection is also kept as a key that expires
with the cooldown, read when a replica (re)subscribes, so that one starting mid-incident or
reconnecting after a gap learns of ejections it missed. Times travel as unix time; each side
converts to its own monotonic clock. After the cooldown each replica probes on its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from stellargate.pipeline.breaker import Breaker
from stellargate.pipeline.routing import Router

log = logging.getLogger("stellargate.breaker")


class BreakerSync:
    def __init__(self, client: aioredis.Redis, prefix: str, router: Router) -> None:
        self._redis = client
        self._router = router
        self.channel = f"{prefix}:breaker"
        self._keys = f"{prefix}:breaker:"
        self.origin = os.urandom(6).hex()
        self._pending: set[asyncio.Task[None]] = set()
        router.on_breaker_change = self._changed
        for d in router.deployments.values():
            d.breaker.on_change = self._changed

    def _changed(self, b: Breaker) -> None:
        msg: dict[str, Any] = {"id": b.name, "state": b.state, "origin": self.origin}
        if b.state == "open":
            msg.update(
                until=time.time() + (b.open_until - time.monotonic()),
                ejections=b.ejections,
                cooldown=b.cooldown,
                since=b.ejected_at,
            )
        task = asyncio.get_running_loop().create_task(self._publish(msg))
        self._pending.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._pending.discard)

    async def _publish(self, msg: dict[str, Any]) -> None:
        data = orjson.dumps(msg)
        key = self._keys + msg["id"]
        try:
            if msg["state"] == "open":
                await self._redis.set(key, data, ex=max(1, math.ceil(msg["cooldown"])))
            else:
                await self._redis.delete(key)
            await self._redis.publish(self.channel, data)
        except (aioredis.RedisError, OSError) as e:
            log.warning("could not share a breaker change of %s: %s", msg["id"], type(e).__name__)

    def apply(self, raw: bytes | str) -> None:
        try:
            msg = orjson.loads(raw)
            if msg.get("origin") == self.origin:
                return
            d = self._router.deployments.get(str(msg["id"]))
            if d is None:
                return
            if msg["state"] == "open":
                until = time.monotonic() + (float(msg["until"]) - time.time())
                if until > time.monotonic():
                    since = float(msg.get("since") or 0.0) or None  # absent from older replicas
                    d.breaker.remote_open(until, int(msg["ejections"]), float(msg["cooldown"]), since)
            elif msg["state"] == "closed":
                d.breaker.remote_close()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("ignored a malformed breaker message on %s", self.channel)

    async def _catch_up(self) -> None:
        async for key in self._redis.scan_iter(match=self._keys + "*", count=200):
            raw = await self._redis.get(key)
            if raw is not None:
                self.apply(raw)

    async def join(self) -> PubSub:
        """Subscribe, then catch up from the keys: subscribing first means no ejection falls
        between the two. The caller owns (and closes) the subscription."""
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            await self._catch_up()
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        return pubsub

    async def start(self, within: float) -> PubSub | None:
        """The first join, awaited before the replica serves, so that one starting mid-incident
        does not send its first requests to a deployment the others have ejected. Redis being
        slow or down must not stop the start: ``run`` then keeps trying."""
        try:
            return await asyncio.wait_for(self.join(), within)
        except (aioredis.RedisError, OSError, TimeoutError) as e:
            log.warning(
                "breaker channel not joined at start (%s); retrying in the background", type(e).__name__
            )
            return None

    async def run(self, pubsub: PubSub | None = None) -> None:
        """Until cancelled; reconnects with backoff and catches up from the keys each time."""
        delay = 0.5
        while True:
            try:
                if pubsub is None:
                    pubsub = await self.join()
                delay = 0.5
                try:
                    async for msg in pubsub.listen():
                        if msg.get("type") == "message":
                            self.apply(msg["data"])
                finally:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    pubsub = None
            except asyncio.CancelledError:
                raise
            except (aioredis.RedisError, OSError) as e:
                log.warning("breaker channel lost (%s); retrying in %.1fs", type(e).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
