"""Model groups: one public model name served by several deployments, and how one is picked.

A ``Deployment`` is one upstream place (provider + upstream model id), shared by every group that
lists it, with its live state: in-flight count, latency EWMA, circuit breaker, retry budget,
throttling (``Retry-After``) and its RPM/TPM allowance. A ``ModelGroup`` is a configured model:
its members (deployment, weight, the ``Target`` built for that model), strategy and fallbacks.

All state is in-process and updated without I/O; an ``Attempt`` brackets one upstream call so that
in-flight counts and probes are always released, whatever way the call ends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stellargate.errors import GatewayError, UpstreamTimeout
from stellargate.pipeline.breaker import Breaker, Window
from stellargate.pipeline.retry import HEALTH_CLASSES, RetryBudget, error_class
from stellargate.providers.base import Target
from stellargate.settings import FALLBACK_CLASSES, FallbackClass, RoutingSettings

EWMA_ALPHA = 0.2  # weight of the newest latency sample
EXPLORE = 0.05  # share of `latency` picks made at random, so a slow deployment can prove it recovered


class Deployment:
    __slots__ = (
        "breaker",
        "budget",
        "ewma_ms",
        "failures",
        "id",
        "inflight",
        "minute",
        "provider",
        "requests",
        "rpm",
        "throttled_until",
        "timeouts",
        "tpm",
        "upstream_model",
    )

    def __init__(
        self,
        id: str,
        provider: str,
        upstream_model: str,
        policy: RoutingSettings,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> None:
        self.id = id
        self.provider = provider
        self.upstream_model = upstream_model
        self.breaker = Breaker(policy.breaker, id)
        self.budget = RetryBudget(policy.retry_budget)
        self.inflight = 0
        self.ewma_ms: float | None = None
        self.throttled_until = 0.0
        self.rpm, self.tpm = rpm, tpm
        self.minute = Window(60.0, 12)  # a: requests, b: tokens
        self.requests = 0
        self.failures = 0
        self.timeouts: dict[str, int] = {}  # expiries by kind (connect, first_byte, idle, total)

    def configure(self, policy: RoutingSettings, rpm: int | None, tpm: int | None) -> None:
        """Settings from a config reload that kept this deployment: its state stays."""
        self.breaker.configure(policy.breaker)
        self.budget.configure(policy.retry_budget)
        self.rpm, self.tpm = rpm, tpm

    def available(self, now: float) -> bool:
        """Not ejected and within its RPM/TPM (throttling is a preference: see ModelGroup.pick)."""
        if not self.breaker.available(now):
            return False
        if self.rpm is not None or self.tpm is not None:
            reqs, tokens = self.minute.totals(now)
            if (self.rpm is not None and reqs >= self.rpm) or (self.tpm is not None and tokens >= self.tpm):
                return False
        return True

    def observe_latency(self, ms: float) -> None:
        e = self.ewma_ms
        self.ewma_ms = ms if e is None else e + EWMA_ALPHA * (ms - e)

    def view(self, now: float) -> dict[str, Any]:
        b = self.breaker
        reqs, tokens = self.minute.totals(now)
        return {
            "id": self.id,
            "provider": self.provider,
            "upstream_model": self.upstream_model,
            "state": "open" if b.state == "open" and now < b.open_until else b.state,
            "ejected_for_s": round(max(0.0, b.open_until - now), 3) if b.state == "open" else 0.0,
            "ejections": b.ejections,
            "cooldown_s": b.cooldown,
            "consecutive_failures": b.consecutive,
            "in_flight": self.inflight,
            "latency_ewma_ms": None if self.ewma_ms is None else round(self.ewma_ms, 2),
            "error_rate": round(b.error_rate(now), 4),
            "requests": self.requests,
            "failures": self.failures,
            "timeouts": dict(self.timeouts),
            "throttled_for_s": round(max(0.0, self.throttled_until - now), 3),
            "rpm": {"limit": self.rpm, "used": reqs},
            "tpm": {"limit": self.tpm, "used": tokens},
        }


@dataclass(slots=True)
class Member:
    deployment: Deployment
    target: Target
    weight: float = 1.0


@dataclass(slots=True)
class ModelGroup:
    name: str
    members: list[Member]
    policy: RoutingSettings
    strategy: str = "weighted"
    context_window: int | None = None
    fallback_on: frozenset[FallbackClass] = frozenset(FALLBACK_CLASSES)
    fallbacks: list[ModelGroup] = field(default_factory=list)
    _targets: tuple[Target, ...] | None = field(default=None, repr=False, compare=False)

    def targets(self) -> tuple[Target, ...]:
        """Every target that may answer a request routed here: the members', then the fallbacks'
        (and theirs), each once. The limits reserve for the dearest of them, since a retry or a
        fallback may land on any. Made on first use, when every fallback has been linked."""
        found = self._targets
        if found is None:
            out: dict[int, Target] = {}
            seen: set[int] = set()
            todo: list[ModelGroup] = [self]
            while todo:
                g = todo.pop(0)
                if id(g) in seen:
                    continue  # fallbacks may form a cycle
                seen.add(id(g))
                for m in g.members:
                    out.setdefault(id(m.target), m.target)
                todo.extend(g.fallbacks)
            found = self._targets = tuple(out.values())
        return found

    def pick(self, now: float, exclude: Sequence[str] = ()) -> Member | None:
        """A member to try now by the group's strategy, skipping ejected, over-limit and
        ``exclude``d deployments, and throttled ones while others remain; None when none is left."""
        if len(self.members) == 1:  # the common case, kept cheap
            m = self.members[0]
            return m if m.deployment.id not in exclude and m.deployment.available(now) else None
        ms = [m for m in self.members if m.deployment.id not in exclude and m.deployment.available(now)]
        if len(ms) > 1:
            # A deployment that said 429 is avoided until its Retry-After passes, unless it is the
            # only one left: then the upstream, not a guess here, decides.
            ms = [m for m in ms if m.deployment.throttled_until <= now] or ms
        if len(ms) <= 1:
            return ms[0] if ms else None
        s = self.strategy
        if s == "priority":
            return ms[0]
        if s == "least_inflight":
            low = min(m.deployment.inflight for m in ms)
            return random.choice([m for m in ms if m.deployment.inflight == low])
        if s == "latency" and random.random() >= EXPLORE:
            fresh = [m for m in ms if m.deployment.ewma_ms is None]
            if fresh:
                return random.choice(fresh)
            return min(ms, key=lambda m: m.deployment.ewma_ms or 0.0)
        x = random.random() * sum(m.weight for m in ms)  # weighted (random.choices costs more)
        for m in ms:
            x -= m.weight
            if x < 0:
                return m
        return ms[-1]


class Attempt:
    """One upstream call on one deployment: counted in flight from start to ``release``; its
    verdict (``ok`` / ``fail``) feeds the breaker, the latency EWMA and the usage record's
    per-attempt list."""

    __slots__ = ("_released", "dep", "entry", "t0", "verdict")

    def __init__(self, dep: Deployment, entry: dict[str, Any]) -> None:
        self.dep = dep
        self.entry = entry
        self.t0 = time.monotonic()
        self.verdict = False
        self._released = False
        dep.inflight += 1
        dep.requests += 1
        if dep.rpm is not None or dep.tpm is not None:  # counted only where a limit reads it
            dep.minute.add(self.t0, a=1)
        dep.breaker.acquire()

    def ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000

    def ok(self) -> None:
        """The upstream answered (non-stream) or sent its first chunk (stream)."""
        if self.verdict:
            return
        self.verdict = True
        ms = self.ms()
        self.entry.update(status=200, ms=round(ms, 1))
        self.dep.observe_latency(ms)
        self.dep.breaker.success(time.monotonic())

    def fail(self, e: GatewayError) -> None:
        first = not self.verdict
        self.verdict = True
        self.entry.update(status=e.http_status, error=e.code)
        if first:
            self.entry["ms"] = round(self.ms(), 1)
        cls = error_class(e)
        dep, now = self.dep, time.monotonic()
        if isinstance(e, UpstreamTimeout):
            kind = e.code.removeprefix("upstream_timeout_")
            dep.timeouts[kind] = dep.timeouts.get(kind, 0) + 1
        if cls == "429":
            dep.throttled_until = now + (e.retry_after or 1.0)
        if cls in HEALTH_CLASSES:
            dep.failures += 1
            dep.breaker.failure(now)
        else:
            # A 429 or a client error says nothing of health; were this the half-open probe,
            # holding its slot would keep the deployment out of rotation for good.
            dep.breaker.abandon()

    def release(self, tokens: int = 0) -> None:
        if self._released:
            return
        self._released = True
        self.dep.inflight -= 1
        if tokens and self.dep.tpm is not None:
            self.dep.minute.add(time.monotonic(), b=tokens)
        if not self.verdict:
            self.dep.breaker.abandon()
