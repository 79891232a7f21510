"""Cache invalidation messages between replicas over Redis pub/sub (when Redis is configured)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

log = logging.getLogger("stellargate.invalidation")
KEYS_CHANNEL = "stellargate:keys:changed"


async def publish_keys_changed(client: aioredis.Redis) -> None:
    try:
        await client.publish(KEYS_CHANNEL, b"1")
    except (aioredis.RedisError, OSError) as e:
        # The database poll still reaches every replica within its interval.
        log.warning("could not publish a key invalidation: %s", type(e).__name__)


async def subscribe(client: aioredis.Redis, channel: str, on_message: Callable[[], None]) -> None:
    """Run until cancelled; reconnects with backoff, and invalidates after every reconnect since
    messages sent while disconnected are lost."""
    delay = 0.5
    while True:
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe(channel)
            on_message()
            delay = 0.5
            try:
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        on_message()
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            raise
        except (aioredis.RedisError, OSError) as e:
            log.warning(
                "Redis subscription to %s lost (%s); retrying in %.1fs", channel, type(e).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
