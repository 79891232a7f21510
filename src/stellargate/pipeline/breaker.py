"""Per-deployment circuit breaker, and the bucketed sliding window it (and the retry budget) count in.

States: ``closed`` (serving) → ``open`` (ejected for a cooldown: 30 s by default, doubling on each
repeated ejection, capped) → ``half_open`` (exactly one probe request may go) → ``closed`` when the
probe succeeds, ``open`` again (longer) when it fails. A deployment is ejected after N consecutive
failures, or when its failure rate over the window passes the threshold once the window holds
enough requests to judge.

Everything here is in-process and O(1) per request: a few integer updates, no locks (one event
loop), no I/O. Sharing ejections between replicas is ``breaker_sync``'s job; it hears about them
through ``on_change``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from stellargate.settings import BreakerSettings

State = Literal["closed", "open", "half_open"]


class Window:
    """Two counters summed over a sliding span, kept in ``buckets`` fixed slots (no allocation)."""

    __slots__ = ("_a", "_b", "_ids", "_n", "_width")

    def __init__(self, span: float, buckets: int = 10) -> None:
        self._n = buckets
        self._width = span / buckets
        self._ids = [-1] * buckets
        self._a = [0] * buckets
        self._b = [0] * buckets

    def add(self, now: float, a: int = 0, b: int = 0) -> None:
        i = int(now / self._width)
        k = i % self._n
        if self._ids[k] != i:
            self._ids[k], self._a[k], self._b[k] = i, 0, 0
        self._a[k] += a
        self._b[k] += b

    def totals(self, now: float) -> tuple[int, int]:
        oldest = int(now / self._width) - self._n
        a = b = 0
        for k in range(self._n):
            if self._ids[k] > oldest:
                a += self._a[k]
                b += self._b[k]
        return a, b

    def reset(self) -> None:
        self._ids = [-1] * self._n


class Breaker:
    __slots__ = (
        "_s",
        "consecutive",
        "cooldown",
        "ejected_at",
        "ejections",
        "name",
        "on_change",
        "open_until",
        "probing",
        "state",
        "window",
    )

    def __init__(self, s: BreakerSettings, name: str = "") -> None:
        self._s = s
        self.name = name  # the deployment's id
        self.state: State = "closed"
        self.open_until = 0.0
        self.cooldown = 0.0
        self.ejections = 0  # ejections since the last recovery: the cooldown doubles with each
        # Unix time the current (or last) ejection began; a failed probe does not move it. It names
        # the incident: webhook events are deduplicated on it, and replicas share it (breaker_sync).
        self.ejected_at = 0.0
        self.consecutive = 0
        self.probing = False
        self.window = Window(s.window)  # a: requests, b: failures
        # Told of every ejection and recovery decided here (not of those heard from elsewhere).
        self.on_change: Callable[[Breaker], None] | None = None

    def available(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open":
            if now < self.open_until:
                return False
            self.state, self.probing = "half_open", False
        return not self.probing

    def configure(self, s: BreakerSettings) -> None:
        """New settings after a config reload, keeping the state: they apply from the next decision
        (a running ejection keeps its cooldown); a new window span starts an empty window."""
        if s.window != self._s.window:
            self.window = Window(s.window)
        self._s = s

    def acquire(self) -> None:
        """An attempt starts: in half-open state it is the one probe."""
        if self.state == "half_open":
            self.probing = True

    def abandon(self) -> None:
        """An attempt ended without a verdict (the client left): let another request probe."""
        if self.state == "half_open":
            self.probing = False

    def success(self, now: float) -> None:
        self.consecutive = 0
        self.window.add(now, a=1)
        if self.state != "closed":
            self.state, self.probing, self.ejections = "closed", False, 0
            if self.on_change is not None:
                self.on_change(self)

    def failure(self, now: float) -> None:
        self.consecutive += 1
        self.window.add(now, a=1, b=1)
        if self.state == "half_open":
            self.eject(now)
        elif self.state == "closed":
            if self.consecutive >= self._s.failures:
                self.eject(now)
                return
            reqs, fails = self.window.totals(now)
            if reqs >= self._s.min_requests and fails >= self._s.error_rate * reqs:
                self.eject(now)

    def eject(self, now: float) -> None:
        if self.state == "closed":
            self.ejected_at = time.time()
        self.ejections += 1
        self.cooldown = min(self._s.cooldown * 2 ** (self.ejections - 1), self._s.max_cooldown)
        self.state, self.open_until, self.probing, self.consecutive = "open", now + self.cooldown, False, 0
        self.window.reset()
        if self.on_change is not None:
            self.on_change(self)

    # -- decisions heard from other replicas ---------------------------------------------------

    def remote_open(self, until: float, ejections: int, cooldown: float, since: float | None = None) -> None:
        """``since``: the ejection's start as the deciding replica recorded it (None from an older one)."""
        if self.state == "open" and self.open_until >= until:
            return
        if self.state == "closed":
            self.ejected_at = since if since else time.time()
        self.state, self.open_until, self.probing, self.consecutive = "open", until, False, 0
        self.ejections = max(self.ejections, ejections)
        self.cooldown = cooldown
        self.window.reset()

    def remote_close(self) -> None:
        if self.state != "closed":
            self.state, self.probing, self.ejections, self.consecutive = "closed", False, 0, 0

    def error_rate(self, now: float) -> float:
        reqs, fails = self.window.totals(now)
        return fails / reqs if reqs else 0.0
