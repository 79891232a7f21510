"""In-process counters: the single-process default.

Atomicity needs no lock: ``reserve`` never awaits between its check and its update, so on one
event loop no other request can interleave (asyncio switches tasks only at an ``await``).
Rates and concurrency use the monotonic clock; quota keys carry their calendar period in their
name, and expire with it. A quota's trail (``trail`` > 0) is a bounded deque beside it, appended
to in the same step as each change.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from stellargate.counters import EPS, Decision, Item, Trail, TrailEntry, Usage

SWEEP_EVERY = 60.0  # seconds between sweeps of expired rate and quota state
_new = tuple.__new__  # a named tuple without its Python-level __new__: a third of the cost


class _Trail:
    __slots__ = ("added", "entries")

    def __init__(self, length: int) -> None:
        # Tuples, made TrailEntry only when read: a frozen dataclass costs several times more to build.
        self.entries: deque[tuple[float, str, str, float, float, float, float]] = deque(maxlen=length)
        self.added = 0


class MemoryCounterStore:
    def __init__(self, *, trail: int = 0) -> None:
        self._trail_len = trail  # changes kept per quota counter; 0: no trail
        self._trails: dict[str, _Trail] = {}
        self._tat: dict[str, float] = {}  # rate: theoretical arrival time (monotonic seconds)
        self._inflight: dict[str, int] = {}
        self._quota: dict[str, list[float]] = {}  # [committed, reserved]
        self._expires: dict[str, float] = {}  # quota key -> wall time after its period
        self._next_sweep = time.monotonic() + SWEEP_EVERY

    def seed(self, key: str, committed: float, period_left: float) -> None:
        """Start a quota from use recorded before this process started (the usage ledger)."""
        q = self._quota[key] = [committed, 0.0]
        self._expires[key] = time.time() + period_left
        if self._trail_len:
            # The trail's first entry explains a committed figure that no request of this process made.
            self._note(key, "seed", "", committed, 0.0, q)

    async def reserve(self, items: Sequence[Item], token: str) -> Decision:
        return self.reserve_now(items, token)

    def reserve_now(self, items: Sequence[Item], token: str = "") -> Decision:
        # Written for speed (it runs for every request): no helpers, and
        # one pass that takes each item as it admits it. A refusal (the rare case) gives back
        # what the pass took before it and only checks the rest, so the state is as if nothing
        # had been taken; no await anywhere, so no other request saw the interim.
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        tats, inflight, quotas = self._tat, self._inflight, self._quota
        remaining: list[float] = []
        reset: list[float] = []
        prior: list[float] = []  # each admitted rate's arrival time before this pass moved it
        failed, retry = -1, 0.0
        for kind, key, limit, period, cost in items:
            if kind == "r":
                tat = tats.get(key, now)
                if tat < now:
                    tat = now
                if limit > 0:
                    t = period / limit
                    new = tat + cost * t
                    over = new - now - period
                    if over <= EPS:
                        remaining.append((period - (new - now)) / t)
                        reset.append(new - now)
                        if failed < 0:
                            prior.append(tat)
                            tats[key] = new
                        continue
                    remaining.append(max(0.0, (period - (tat - now)) / t))
                else:
                    over = period
                    remaining.append(0.0)
                reset.append(tat - now)
                if failed < 0:
                    failed = len(reset) - 1
                    retry = over if cost <= limit and limit > 0 else period
            elif kind == "c":
                used = inflight.get(key, 0)
                if used + 1 > limit:
                    remaining.append(0.0)
                    reset.append(1.0)
                    if failed < 0:
                        failed, retry = len(reset) - 1, 1.0
                else:
                    remaining.append(limit - used - 1)
                    reset.append(0.0)
                    if failed < 0:
                        inflight[key] = used + 1
            else:
                q = quotas.get(key)
                c, r = (0.0, 0.0) if q is None else q
                left = limit - c - r
                reset.append(period)
                if cost > left + EPS or (cost == 0 and left <= EPS):
                    remaining.append(max(0.0, left))
                    if failed < 0:
                        failed, retry = len(reset) - 1, period
                else:
                    remaining.append(left - cost)
                    if failed < 0:
                        if q is None:
                            q = quotas[key] = [0.0, 0.0]
                            self._expires[key] = time.time() + period
                        q[1] += cost
        if failed >= 0:
            self._give_back(items[:failed], prior)
            return Decision(False, failed, retry, remaining, reset)
        if self._trail_len:
            for kind, key, _, _, cost in items:
                if kind == "q":
                    self._note(key, "reserve", token, 0.0, cost, self._quota[key])
        return _new(Decision, (True, -1, 0.0, remaining, reset))

    def _give_back(self, taken: Sequence[Item], prior: list[float]) -> None:
        """Undo what a refused reservation's pass took, item by item."""
        rates = iter(prior)
        for kind, key, _, _, cost in taken:
            if kind == "r":
                self._tat[key] = next(rates)
            elif kind == "c":
                n = self._inflight[key] - 1
                if n > 0:
                    self._inflight[key] = n
                else:
                    del self._inflight[key]
            else:
                self._quota[key][1] -= cost

    def settle(self, items: Sequence[Item], token: str, actual: Sequence[float]) -> None:
        now = time.monotonic()
        tats, inflight = self._tat, self._inflight
        for i, (kind, key, limit, period, cost) in enumerate(items):
            used = actual[i]  # indexed: zip(strict=True) parses its keyword on every call
            if kind == "r":
                if used != cost and limit > 0:
                    tat = tats.get(key)
                    if tat is not None:
                        # A refund moves the arrival time back, but never before now: credit
                        # cannot be saved up beyond a full bucket.
                        tat += (used - cost) * period / limit
                        tats[key] = tat if tat > now else now
            elif kind == "c":
                n = inflight.get(key, 0) - 1
                if n > 0:
                    inflight[key] = n
                else:
                    inflight.pop(key, None)
            else:
                q = self._quota.get(key)
                if q is not None:  # None: its period ended (and was swept) while in flight
                    held = q[1]
                    q[1] = held - cost if held > cost else 0.0
                    q[0] += used
                    if self._trail_len:
                        self._note(key, "settle" if used else "refund", token, used, q[1] - held, q)

    async def read(self, items: Sequence[Item]) -> list[Usage]:
        now = time.monotonic()
        out = []
        for kind, key, limit, period, _ in items:
            if kind == "r":
                t = period / limit if limit > 0 else float("inf")
                wait = max(0.0, self._tat.get(key, now) - now)
                used = min(limit, wait / t)
                out.append(Usage(used, 0.0, limit - used, wait))
            elif kind == "c":
                n = self._inflight.get(key, 0)
                out.append(Usage(0.0, n, max(0.0, limit - n), 0.0))
            else:
                c, r = self._quota.get(key, (0.0, 0.0))
                out.append(Usage(c, r, max(0.0, limit - c - r), period))
        return out

    async def trail(self, key: str, count: int) -> Trail:
        t = self._trails.get(key)
        if t is None:
            return Trail([], 0, 0)
        n = len(t.entries)
        entries = [TrailEntry(*e) for e in list(t.entries)[max(0, n - count) :]] if count > 0 else []
        return Trail(entries, n, t.added)

    def _note(self, key: str, op: str, token: str, dc: float, dr: float, q: list[float]) -> None:
        t = self._trails.get(key)
        if t is None:
            t = self._trails[key] = _Trail(self._trail_len)
        t.entries.append((time.time(), op, token, dc, dr, q[0], q[1]))
        t.added += 1

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_EVERY
        for k in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[k]
        wall = time.time()
        for k in [k for k, exp in self._expires.items() if exp <= wall]:
            self._expires.pop(k, None)
            q = self._quota.get(k)
            if q is not None and q[1] <= 0:
                del self._quota[k]
                self._trails.pop(k, None)

    async def close(self) -> None:
        return None
