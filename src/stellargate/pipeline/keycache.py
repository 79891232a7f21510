"""Keys cached in memory, so that authenticating a request reads no database.

Invalidation reaches every worker and replica by three paths, each calling ``invalidate_all``:
- a generation counter in a memory-mapped file of the data directory, bumped by whatever changed
  a key (another worker, or the CLI) and read on every lookup: same-machine changes are seen by
  the very next request;
- a Redis pub/sub message when Redis is configured (other replicas, within milliseconds);
- a poll of the store's last change time every ``poll_interval`` seconds (other replicas without
  Redis, and a safety net for lost messages).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import struct
import time
from pathlib import Path

from stellargate.storage.records import KeyRecord, KeyStore

log = logging.getLogger("stellargate.keys")
_GEN = struct.Struct("<Q")


class SharedGeneration:
    """A 64-bit counter in a file, mapped into every process of one data directory."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < mmap.PAGESIZE:
                os.ftruncate(fd, mmap.PAGESIZE)
            self._mm = mmap.mmap(fd, mmap.PAGESIZE)
        finally:
            os.close(fd)

    def read(self) -> int:
        return int(_GEN.unpack_from(self._mm, 0)[0])

    def bump(self) -> None:
        # Not atomic across processes, but any change of value is enough to invalidate.
        _GEN.pack_into(self._mm, 0, (self.read() + 1) % (1 << 63) + 1)

    def close(self) -> None:
        self._mm.close()


class KeyCache:
    def __init__(
        self,
        store: KeyStore,
        generation: SharedGeneration,
        *,
        ttl: float = 60.0,
        negative_ttl: float = 2.0,
    ) -> None:
        self._store = store
        self._gen = generation
        self._seen = generation.read()
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._entries: dict[str, tuple[KeyRecord | None, float]] = {}
        self._pending: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._last_change = 0.0

    def invalidate_all(self) -> None:
        self._entries.clear()

    def changed(self) -> None:
        """This process changed a key: tell the other processes too."""
        self._gen.bump()
        self.invalidate_all()

    async def lookup(self, key_hash: str) -> KeyRecord | None:
        gen = self._gen.read()
        if gen != self._seen:
            self._seen = gen
            self._entries.clear()
        hit = self._entries.get(key_hash)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        # Concurrent misses for one key share one database read.
        fut = self._pending.get(key_hash)
        if fut is not None:
            return await fut
        fut = asyncio.get_running_loop().create_future()
        self._pending[key_hash] = fut
        try:
            rec = await self._store.get_by_hash(key_hash)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved here, so a lone waiter-less failure is not reported twice
            raise
        finally:
            self._pending.pop(key_hash, None)
        self._entries[key_hash] = (rec, now + (self._ttl if rec is not None else self._negative_ttl))
        fut.set_result(rec)
        return rec

    async def poll(self, interval: float) -> None:
        """Background task: notice key changes made by processes that share only the database."""
        while True:
            await asyncio.sleep(interval)
            try:
                last = await self._store.last_change()
            except Exception as e:  # a database blip must not kill the poller
                log.warning("key change poll failed: %s", type(e).__name__)
                continue
            if last != self._last_change:
                # Also on the first reading: whatever this process cached before it may be stale.
                self.invalidate_all()
                self._last_change = last
