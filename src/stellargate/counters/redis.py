"""Counters in Redis, shared by every worker and replica: one Lua script per reserve, settle or
read (see ``lua.py``), so a check and its reservation are one atomic step on the server.

When Redis cannot be reached, ``reserve`` raises ``CounterUnavailable`` at once (the limits
stage then fails open or closed by the kind of limit) and further calls fail fast for
``RETRY_AFTER`` seconds instead of waiting on a dead socket each time; the first call after that
tries again, so enforcement resumes within that time of Redis returning. Settlements that could
not be sent are kept (bounded) and retried in the background: a reservation must not hold budget
for ever because Redis blinked.

With ``trail`` > 0 the scripts also append every change of a quota to its trail (see ``lua.py``);
the length rides as one last script argument, so off it costs one short argument and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import hiredis

from stellargate.counters import CounterUnavailable, Decision, Item, Trail, TrailEntry, Usage
from stellargate.counters.lua import READ, RESERVE, SETTLE, TRAIL
from stellargate.counters.resp import RespClient, RespError

log = logging.getLogger("stellargate.limits")

RETRY_AFTER = 1.0  # seconds of failing fast after Redis was unreachable
MAX_PENDING = 100_000  # settlement batches kept while Redis is down
SETTLE_BATCH = 256  # counters per settlement script call
SETTLE_DELAY = 0.002  # seconds a settlement may wait for company (it frees capacity that late)


def _num(v: float) -> str:
    """Whole numbers without a fraction (HINCRBY takes integers only), others exactly."""
    if type(v) is int:
        return str(v)
    whole = int(v)
    return str(whole) if whole == v else repr(v)


class RedisCounterStore:
    def __init__(self, url: str, *, timeout: float = 0.5, trail: int = 0) -> None:
        # Its own client (see resp.py for why not redis-py), with a short timeout: a hung Redis
        # must not hang requests.
        self._r = RespClient(url, timeout=timeout)
        self._sha: dict[str, str] = {}
        self._down_until = 0.0
        self._pending: deque[tuple[list[str], list[str]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: set[asyncio.Future[Any]] = set()  # settlements sent without a task, unanswered
        self._batch_keys: list[str] = []
        self._batch: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self.failures = 0  # calls that found Redis unreachable
        self._trail = str(trail)  # changes kept per quota counter, the scripts' last argument

    async def _eval(
        self, script: str, keys: list[str], args: list[str], orphan: Callable[[Any], None] | None = None
    ) -> Any:
        sha = self._sha.get(script)
        try:
            if sha is not None:
                try:
                    return await self._r.call("EVALSHA", sha, str(len(keys)), *keys, *args, orphan=orphan)
                except RespError as e:
                    if not str(e).startswith("NOSCRIPT"):
                        raise
                    # Redis restarted and lost its script cache: load it again.
            sha = (await self._r.call("SCRIPT", "LOAD", script)).decode()
            self._sha[script] = sha
            return await self._r.call("EVALSHA", sha, str(len(keys)), *keys, *args, orphan=orphan)
        except (RespError, OSError, TimeoutError) as e:
            # OSError covers refused and lost connections (ConnectionError is one).
            self.failures += 1
            self._down_until = time.monotonic() + RETRY_AFTER
            raise CounterUnavailable(str(e) or type(e).__name__) from e

    def _with_trails(self, keys: list[str]) -> list[str]:
        """The counters, then (with the trail on) each one's stream: a script declares every key
        it touches (lua.py)."""
        return keys + [f"{k}:trail" for k in keys] if self._trail != "0" else keys

    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:
            self.failures += 1
            raise CounterUnavailable("Redis was unreachable moments ago")

    async def reserve(self, items: Sequence[Item], token: str) -> Decision:
        self._check_up()
        keys = self._with_trails([key for _, key, _, _, _ in items])
        args: list[str] = []
        for kind, _, limit, period, cost in items:
            args += (kind, _num(limit), _num(period), _num(cost), token)
        args.append(self._trail)

        def orphan(reply: Any) -> None:
            # The request was cancelled (its client left) while the script ran: give back what
            # the script reserved, or it would hold budget and a slot until they expire.
            if isinstance(reply, list) and int(reply[0]) < 0:
                self.settle(items, token, [0.0] * len(items))

        if self._batch:
            self._send_batch()  # first, so that what they release counts for this reservation
        out = await self._eval(RESERVE, keys, args, orphan)
        failed = int(out[0])
        vals = [float(v) for v in out[2:]]
        return Decision(failed < 0, failed, float(out[1]), vals[0::2], vals[1::2])

    def settle(self, items: Sequence[Item], token: str, actual: Sequence[float]) -> None:
        if self._timer is None:
            # Settlements wait up to SETTLE_DELAY to go as one script call, together with the next
            # reservation's command when one comes sooner (one write, one system call, for both).
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY, self._send_batch)
        keys, args = self._batch_keys, self._batch
        for (kind, key, limit, period, cost), used in zip(items, actual, strict=True):
            keys.append(key)
            args += (kind, _num(limit), _num(period), _num(cost), _num(used), token)

    def _send_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        keys, args = self._batch_keys, self._batch
        self._batch_keys, self._batch = [], []
        for i in range(0, len(keys), SETTLE_BATCH):
            chunk = args[6 * i : 6 * (i + SETTLE_BATCH)]
            chunk.append(self._trail)
            self._settle_nowait(self._with_trails(keys[i : i + SETTLE_BATCH]), chunk)

    def _settle_nowait(self, keys: list[str], args: list[str]) -> None:
        """The common case without a task (a task per settlement cost ~10 µs a request): sent on
        the open connection, its reply checked by a callback. Anything unusual (no connection yet,
        the script not loaded, Redis down, earlier settlements waiting) takes ``_settle``."""
        sha = self._sha.get(SETTLE)
        fut = None
        if sha is not None and not self._pending and time.monotonic() >= self._down_until:
            fut = self._r.send_nowait("EVALSHA", sha, str(len(keys)), *keys, *args)
        if fut is None:
            self._spawn(self._settle(keys, args))
            return
        self._sent.add(fut)
        fut.add_done_callback(lambda f: self._settled(f, keys, args))

    def _settled(self, fut: asyncio.Future[Any], keys: list[str], args: list[str]) -> None:
        self._sent.discard(fut)
        if fut.cancelled():
            return  # close() gave up on it
        exc = fut.exception()
        if exc is None and not isinstance(fut.result(), hiredis.ReplyError):
            return
        if exc is not None:
            self.failures += 1
            self._down_until = time.monotonic() + RETRY_AFTER
        # NOSCRIPT (Redis restarted) or a lost connection: the full path loads the script, or keeps
        # the settlement until Redis is back.
        self._spawn(self._settle(keys, args))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, keys: list[str], args: list[str]) -> None:
        try:
            if self._pending:
                raise CounterUnavailable("earlier settlements are still waiting")  # keep their order
            self._check_up()
            await self._eval(SETTLE, keys, args)
        except CounterUnavailable:
            if len(self._pending) >= MAX_PENDING:
                log.error("counter settlements dropped: Redis has been unreachable too long")
                return
            self._pending.append((keys, args))
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(RETRY_AFTER / 2)
            try:
                while self._pending:
                    keys, args = self._pending[0]
                    await self._eval(SETTLE, keys, args)
                    self._pending.popleft()
            except CounterUnavailable:
                continue
        log.info("pending counter settlements sent")

    async def read(self, items: Sequence[Item]) -> list[Usage]:
        args: list[str] = []
        for kind, _, limit, period, _ in items:
            args += (kind, _num(limit), _num(period))
        out = await self._eval(READ, [key for _, key, _, _, _ in items], args)
        vals = [float(v) for v in out]
        res = []
        for i, (_, _, limit, _, _) in enumerate(items):
            used, reserved, reset = vals[3 * i : 3 * i + 3]
            res.append(Usage(used, reserved, max(0.0, limit - used - reserved), reset))
        return res

    async def trail(self, key: str, count: int) -> Trail:
        kept, added, rows = await self._eval(TRAIL, [f"{key}:trail"], [str(max(1, count))])
        entries = []
        for _, fields in reversed(rows):
            f = dict(zip(fields[0::2], fields[1::2], strict=True))
            op, token = f[b"op"].decode(), f[b"id"].decode()
            nums = [float(f[k]) for k in (b"t", b"dc", b"dr", b"c", b"r")]
            entries.append(TrailEntry(nums[0], op, token, *nums[1:]))
        return Trail(entries if count > 0 else [], int(kept), int(added) if int(added) >= 0 else None)

    async def close(self) -> None:
        if self._batch:
            self._send_batch()
        if self._sent:
            await asyncio.wait(list(self._sent), timeout=2)
        if self._tasks:  # including those that took over a failed settlement above
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._flusher is not None:
            self._flusher.cancel()
        await self._r.close()
