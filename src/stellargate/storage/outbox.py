"""`UsageOutbox`: takes usage records off the request path and writes them to the ledger in batches.

`add()` is all a request pays: an append to an in-memory deque. A background task commits
batches with `insert_many`. While the database is failing it retries with backoff, and once a
failure has lasted `spill_after` seconds, or the buffer outgrows `max_buffer`, it moves the
pending records to fsynced spill files, which are replayed (and deleted after commit) when the
database is back, by this process or, after a crash, by the next one. A record is acknowledged
once committed or durably spilled; the ledger's insert is idempotent on request_id, so a replay
that repeats a committed record does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from pathlib import Path

from stellargate.core.usage import UsageRecord
from stellargate.storage import spill
from stellargate.storage.records import UsageLedger

log = logging.getLogger("stellargate.outbox")


class UsageOutbox:
    def __init__(
        self,
        ledger: UsageLedger,
        spill_dir: Path,
        *,
        flush_interval: float = 0.25,
        batch_size: int = 500,
        max_buffer: int = 50_000,
        spill_after: float = 3.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 5.0,
        insert_timeout: float = 10.0,
        rescan_interval: float = 60.0,
    ) -> None:
        self._ledger = ledger
        self._spill_dir = Path(spill_dir)
        self._flush_interval = flush_interval
        self._batch_size = max(1, batch_size)
        self._max_buffer = max(max_buffer, self._batch_size)  # add() checks it only past a full batch
        self._spill_after = spill_after
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._insert_timeout = insert_timeout  # a hung connection counts as a failure, not a stall
        self._rescan_interval = rescan_interval  # looks for files other processes left behind

        self._buf: deque[UsageRecord] = deque()
        self._in_flight = 0  # taken from _buf for a write that has not finished yet
        self._wake = asyncio.Event()  # a full batch is waiting, or close() was called
        self._urgent = asyncio.Event()  # the buffer is over max_buffer, or close() was called
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failing_since: float | None = None  # monotonic time of the first failure in a row
        self._backoff = backoff_initial
        self._replay_due = False
        self._last_scan = 0.0

        # Metrics; read them, never write them.
        self.spilled_records = 0  # records written to spill files by this process
        self.replayed_records = 0  # records committed from spill files by this process
        self.flushed_total = 0  # records committed (from memory or from spill files)
        self.failures_total = 0  # failed write attempts
        self.last_error: str | None = None  # the latest failure, type and first line only

    @property
    def depth(self) -> int:
        """Records held in memory and not yet acknowledged."""
        return len(self._buf) + self._in_flight

    @property
    def healthy(self) -> bool:
        return self._failing_since is None

    def add(self, rec: UsageRecord) -> None:
        """Queue one record. The hot path: no I/O, no await, no lock."""
        if self._closed:
            raise RuntimeError("usage outbox is closed")
        buf = self._buf
        buf.append(rec)
        if len(buf) >= self._batch_size:
            self._wake.set()
            if len(buf) > self._max_buffer:
                self._urgent.set()

    async def start(self) -> None:
        """Replay what earlier runs left on disk, then start flushing in the background."""
        if self._task is not None:
            raise RuntimeError("usage outbox already started")
        if self._closed:
            raise RuntimeError("usage outbox is closed")
        await asyncio.to_thread(spill.recover_orphans, self._spill_dir)
        await self._replay()
        self._task = asyncio.create_task(self._run(), name="stellargate-usage-outbox")

    async def close(self) -> None:
        """Flush what is left; if the database cannot take it, spill it, so that nothing is lost."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._urgent.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("usage outbox flusher had died")
        # While failing, go straight to disk: shutdown should not wait out another timeout.
        if self._buf and (not self.healthy or not await self._drain()):
            await self._spill_buffer()
        if self.depth:
            log.error("usage outbox closed with %d records neither committed nor spilled", self.depth)

    async def flush(self) -> bool:
        """Write everything buffered now; True when it is all committed. For tests and admin."""
        return await self._drain()

    # The background task.

    async def _run(self) -> None:
        while not self._closed:
            if self._failing_since is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            else:
                await self._pause(self._backoff)
            self._wake.clear()
            if self._closed:
                return  # close() does the final flush itself
            try:
                await self._cycle()
            except Exception as e:  # a bug here must not stop usage accounting for good
                log.exception("usage outbox cycle failed")
                self._failed(e)

    async def _pause(self, seconds: float) -> None:
        # Backoff ignores full batches (they are why we are here), but not close() or an
        # overfull buffer, which must go to disk before memory runs out.
        if len(self._buf) <= self._max_buffer:
            self._urgent.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._urgent.wait(), seconds)

    async def _cycle(self) -> None:
        ok = await self._drain()
        now = time.monotonic()
        if ok and (self._replay_due or now - self._last_scan >= self._rescan_interval):
            ok = await self._replay()
        if not ok and self._should_spill(now):
            await self._spill_buffer()

    def _should_spill(self, now: float) -> bool:
        if not self._buf:
            return False
        if len(self._buf) > self._max_buffer:
            return True
        return self._failing_since is not None and now - self._failing_since >= self._spill_after

    async def _drain(self) -> bool:
        """Commit the buffer batch by batch; False (records kept, in order) at the first failure."""
        while self._buf:
            n = min(len(self._buf), self._batch_size)
            batch = [self._buf.popleft() for _ in range(n)]
            self._in_flight += n
            committed = False
            try:
                await asyncio.wait_for(self._ledger.insert_many(batch), self._insert_timeout)
                committed = True
            except Exception as e:
                self._failed(e)
                return False
            finally:
                self._in_flight -= n
                if not committed:  # failed or cancelled: back to the front, to be retried or spilled
                    self._buf.extendleft(reversed(batch))
            self.flushed_total += n
            self._succeeded()
        return True

    async def _replay(self) -> bool:
        """Commit spill files (ours or anyone's); False when the database failed meanwhile."""
        self._last_scan = time.monotonic()
        self._replay_due = False
        paths = await asyncio.to_thread(spill.claim_spill_files, self._spill_dir)
        for i, path in enumerate(paths):
            if self._closed:  # shutting down: leave the rest to the next start
                await asyncio.to_thread(spill.release, paths[i:])
                self._replay_due = True
                return True
            try:
                records, bad = await asyncio.to_thread(spill.read_spill, path)
                for start in range(0, len(records), self._batch_size):
                    chunk = records[start : start + self._batch_size]
                    await asyncio.wait_for(self._ledger.insert_many(chunk), self._insert_timeout)
            except BaseException as e:
                await asyncio.shield(asyncio.to_thread(spill.release, paths[i:]))
                self._replay_due = True
                if not isinstance(e, Exception):
                    raise
                self._failed(e)
                return False
            await asyncio.to_thread(spill.remove, path)
            self.replayed_records += len(records)
            self.flushed_total += len(records)
            self._succeeded()
            if bad:
                log.error("spill file %s had %d unreadable line(s); they are lost", path.name, bad)
            log.info("replayed %d usage records from %s", len(records), path.name)
        return True

    async def _spill_buffer(self) -> bool:
        records = list(self._buf)
        self._buf.clear()
        self._in_flight += len(records)
        try:
            path = await asyncio.to_thread(spill.write_spill, self._spill_dir, records)
        except BaseException as e:
            # Cancelled mid-write, the file may still appear: a later replay then repeats these
            # records, which the idempotent insert absorbs.
            self._buf.extendleft(reversed(records))
            if not isinstance(e, Exception):
                raise
            log.error("cannot spill %d usage records, keeping them in memory: %s", len(records), _describe(e))
            return False
        finally:
            self._in_flight -= len(records)
        self.spilled_records += len(records)
        self._replay_due = True
        log.warning("database unavailable: spilled %d usage records to %s", len(records), path.name)
        return True

    def _failed(self, e: BaseException) -> None:
        self.failures_total += 1
        self.last_error = _describe(e)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            self._backoff = self._backoff_initial
            log.warning("usage ledger write failed, retrying with backoff: %s", self.last_error)
        else:
            self._backoff = min(self._backoff * 2, self._backoff_max)
            log.debug("usage ledger write failed again: %s", self.last_error)

    def _succeeded(self) -> None:
        if self._failing_since is not None:
            log.info("usage ledger writable again after %.1fs", time.monotonic() - self._failing_since)
            self._failing_since = None
            self._backoff = self._backoff_initial


def _describe(e: BaseException) -> str:
    # Type and first line only: driver messages can quote SQL, and logs must never carry usage data.
    inner = getattr(e, "orig", None)
    err = inner if isinstance(inner, BaseException) else e
    first = str(err).partition("\n")[0][:200]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
