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
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import hiredis

from stellargate.counters import CounterUnavailable, Decision, Item, Trail, TrailEntry, Usage
from stellargate.counters.lua import READ, RESERVE, SETTLE, TRAIL
from stellargate.counters.resp import RespClient, RespError, bulk, command, encode

log = logging.getLogger("stellargate.limits")

RETRY_AFTER = 1.0  # seconds of failing fast after Redis was unreachable
MAX_PENDING = 100_000  # settlement batches kept while Redis is down
SETTLE_BATCH = 256  # counters per settlement script call
SETTLE_DELAY = 0.002  # seconds a settlement may wait for company (it frees capacity that late)
ENCODED = 50_000  # items whose encoding is kept for reuse (cleared when full)


def _num(v: float) -> str:
    """Whole numbers without a fraction (HINCRBY takes integers only), others exactly."""
    if type(v) is int:
        return str(v)
    whole = int(v)
    return str(whole) if whole == v else repr(v)


def _bulk_num(v: float) -> bytes:
    return bulk(b"%d" % v if type(v) is int else _num(v).encode())


class _Script:
    """A Lua script, its SHA1 (what Redis names it by, computed here, so a command can be encoded
    before the script is known to be loaded) and the encoded start of an EVALSHA of it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()
        self.head = bulk(b"EVALSHA") + bulk(self.sha.encode())


_RESERVE, _SETTLE, _READ, _TRAIL = (_Script(t) for t in (RESERVE, SETTLE, READ, TRAIL))


class RedisCounterStore:
    def __init__(self, url: str, *, timeout: float = 0.5, trail: int = 0) -> None:
        # Its own client (see resp.py for why not redis-py), with a short timeout: a hung Redis
        # must not hang requests.
        self._r = RespClient(url, timeout=timeout)
        self._loaded: set[str] = set()  # scripts run here since (re)connecting: Redis has them
        self._down_until = 0.0
        self._pending: deque[bytes] = deque()  # encoded settlements waiting for Redis
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sent: set[asyncio.Future[Any]] = set()  # settlements sent without a task, unanswered
        # Settlements waiting for company: per counter, its encoded name, its stream's (trail on)
        # and its five encoded script arguments (the first three as one fragment).
        self._batch_keys: list[bytes] = []
        self._batch_trails: list[bytes] = []
        self._batch: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self.failures = 0  # calls that found Redis unreachable
        self._trail = trail  # changes kept per quota counter, the scripts' last argument
        self._trail_arg = bulk(b"%d" % trail)
        # Per item (all but its cost), its encoded counter name, its trail stream's name, and its
        # kind, limit and period: the same request after request (a quota's period left goes in
        # whole seconds for this). Encoding some thirty arguments afresh for each script call cost
        # more than the rest of the store.
        self._encoded: dict[tuple[str, str, float, float], tuple[bytes, bytes, bytes]] = {}

    async def _eval(self, script: _Script, packed: bytes, orphan: Callable[[Any], None] | None = None) -> Any:
        """Run an encoded EVALSHA; when Redis does not have the script (it restarted), load it and
        run the command again."""
        try:
            try:
                reply = await self._r.call_packed(packed, orphan=orphan)
            except RespError as e:
                if not str(e).startswith("NOSCRIPT"):
                    raise
                # Nothing ran: the command failed before the script could.
                await self._r.call("SCRIPT", "LOAD", script.text)
                reply = await self._r.call_packed(packed, orphan=orphan)
            self._loaded.add(script.sha)
            return reply
        except (RespError, OSError, TimeoutError) as e:
            # OSError covers refused and lost connections (ConnectionError is one).
            self.failures += 1
            self._down_until = time.monotonic() + RETRY_AFTER
            self._loaded.clear()  # a Redis that comes back may have lost them
            raise CounterUnavailable(str(e) or type(e).__name__) from e

    def _encode(self, kind: str, key: str, limit: float, period: float) -> tuple[bytes, bytes, bytes]:
        if len(self._encoded) >= ENCODED:
            self._encoded.clear()
        found = self._encoded[(kind, key, limit, period)] = (
            bulk(key.encode()),
            bulk(f"{key}:trail".encode()),
            bulk(kind.encode()) + bulk(_num(limit).encode()) + bulk(_num(period).encode()),
        )
        return found

    def _check_up(self) -> None:
        if time.monotonic() < self._down_until:
            self.failures += 1
            raise CounterUnavailable("Redis was unreachable moments ago")

    async def reserve(self, items: Sequence[Item], token: str) -> Decision:
        self._check_up()
        encoded = self._encoded
        keys: list[bytes] = []
        trails: list[bytes] = []
        args: list[bytes] = []
        tok = bulk(token.encode())
        for kind, key, limit, period, cost in items:
            if kind == "q":
                period = math.ceil(period)
            name, trail, figures = encoded.get((kind, key, limit, period)) or self._encode(
                kind, key, limit, period
            )
            keys.append(name)
            trails.append(trail)
            args += (figures, _bulk_num(cost), tok)
        n = len(keys)
        if self._trail:
            keys += trails
        packed = command(3 + len(keys) + 5 * n + 1, _RESERVE.head, bulk(b"%d" % len(keys)), *keys, *args,
                         self._trail_arg)  # fmt: skip

        def orphan(reply: Any) -> None:
            # The request was cancelled (its client left) while the script ran: give back what
            # the script reserved, or it would hold budget and a slot until they expire.
            if isinstance(reply, list) and int(reply[0]) < 0:
                self.settle(items, token, [0] * len(items))

        if self._batch:
            self._send_batch()  # first, so that what they release counts for this reservation
        out = await self._eval(_RESERVE, packed, orphan)
        failed = int(out[0])
        vals = [float(v) for v in out[2:]]
        return Decision(failed < 0, failed, float(out[1]), vals[0::2], vals[1::2])

    def settle(self, items: Sequence[Item], token: str, actual: Sequence[float]) -> None:
        if self._timer is None:
            # Settlements wait up to SETTLE_DELAY to go as one script call, together with the next
            # reservation's command when one comes sooner (one write, one system call, for both).
            self._timer = asyncio.get_running_loop().call_later(SETTLE_DELAY, self._send_batch)
        encoded = self._encoded
        keys, trails, args = self._batch_keys, self._batch_trails, self._batch
        tok = bulk(token.encode())
        for i, (kind, key, limit, period, cost) in enumerate(items):
            if kind == "q":
                period = math.ceil(period)
            name, trail, figures = encoded.get((kind, key, limit, period)) or self._encode(
                kind, key, limit, period
            )
            keys.append(name)
            trails.append(trail)
            args += (figures, _bulk_num(cost), _bulk_num(actual[i]), tok)

    def _send_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        keys, trails, args = self._batch_keys, self._batch_trails, self._batch
        self._batch_keys, self._batch_trails, self._batch = [], [], []
        for i in range(0, len(keys), SETTLE_BATCH):
            names = keys[i : i + SETTLE_BATCH]
            n = len(names)
            if self._trail:
                names = names + trails[i : i + SETTLE_BATCH]
            packed = command(3 + len(names) + 6 * n + 1, _SETTLE.head, bulk(b"%d" % len(names)), *names,
                             *args[4 * i : 4 * (i + SETTLE_BATCH)], self._trail_arg)  # fmt: skip
            self._settle_nowait(packed)

    def _settle_nowait(self, packed: bytes) -> None:
        """The common case without a task (a task per settlement cost ~10 µs a request): sent on
        the open connection, its reply checked by a callback. Anything unusual (no connection yet,
        the script not loaded, Redis down, earlier settlements waiting) takes ``_settle``."""
        fut = None
        if _SETTLE.sha in self._loaded and not self._pending and time.monotonic() >= self._down_until:
            fut = self._r.send_nowait(packed)
        if fut is None:
            self._spawn(self._settle(packed))
            return
        self._sent.add(fut)
        fut.add_done_callback(lambda f: self._settled(f, packed))

    def _settled(self, fut: asyncio.Future[Any], packed: bytes) -> None:
        self._sent.discard(fut)
        if fut.cancelled():
            return  # close() gave up on it
        exc = fut.exception()
        if exc is None and not isinstance(fut.result(), hiredis.ReplyError):
            return
        if exc is not None:
            self.failures += 1
            self._down_until = time.monotonic() + RETRY_AFTER
            self._loaded.clear()
        # NOSCRIPT (Redis restarted) or a lost connection: the full path loads the script, or keeps
        # the settlement until Redis is back.
        self._spawn(self._settle(packed))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, packed: bytes) -> None:
        try:
            if self._pending:
                raise CounterUnavailable("earlier settlements are still waiting")  # keep their order
            self._check_up()
            await self._eval(_SETTLE, packed)
        except CounterUnavailable:
            if len(self._pending) >= MAX_PENDING:
                log.error("counter settlements dropped: Redis has been unreachable too long")
                return
            self._pending.append(packed)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(RETRY_AFTER / 2)
            try:
                while self._pending:
                    await self._eval(_SETTLE, self._pending[0])
                    self._pending.popleft()
            except CounterUnavailable:
                continue
        log.info("pending counter settlements sent")

    async def read(self, items: Sequence[Item]) -> list[Usage]:
        args: list[str] = []
        for kind, _, limit, period, _ in items:
            args += (kind, _num(limit), _num(period))
        keys = [key for _, key, _, _, _ in items]
        out = await self._eval(_READ, encode(("EVALSHA", _READ.sha, str(len(keys)), *keys, *args)))
        vals = [float(v) for v in out]
        res = []
        for i, (_, _, limit, _, _) in enumerate(items):
            used, reserved, reset = vals[3 * i : 3 * i + 3]
            res.append(Usage(used, reserved, max(0.0, limit - used - reserved), reset))
        return res

    async def trail(self, key: str, count: int) -> Trail:
        packed = encode(("EVALSHA", _TRAIL.sha, "1", f"{key}:trail", str(max(1, count))))
        kept, added, rows = await self._eval(_TRAIL, packed)
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
