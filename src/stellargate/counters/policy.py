"""Which counters a request of a key touches: the key's plan and overrides merged into limits,
each named, and turned into store items with this request's costs.

Counter names: ``sg:l:{<key id>}:<limit>[:<period>]``. The braces are a Redis Cluster hash tag, so
that all counters of one key live on one shard and one script can touch them together.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from stellargate.counters import Item, Kind
from stellargate.counters.figures import LimitFigures, merged
from stellargate.settings import Settings
from stellargate.storage.records import KeyRecord

Unit = Literal["requests", "tokens", "usd"]
NANO = 1_000_000_000  # spend is counted in integer nano-USD: exact sums, no float drift
RATE_PERIODS = {"rps": 1.0, "rpm": 60.0, "rph": 3600.0, "rpd": 86400.0, "tpm": 60.0}
QUOTAS: dict[str, tuple[Unit, Literal["day", "month"]]] = {
    "tokens_per_month": ("tokens", "month"),
    "spend_per_day": ("usd", "day"),
    "spend_per_month": ("usd", "month"),
}
ENDPOINT_CLASS = {"chat": "chat", "completions": "chat", "embeddings": "embeddings", "images": "images"}


@dataclass(frozen=True, slots=True)
class Spec:
    name: str  # "rpm", "images.rpm", "spend_per_day", ...
    kind: Kind
    unit: Unit
    limit: float  # requests, tokens or USD
    period: float  # rates: seconds; quotas: 0 (calendar)
    calendar: Literal["day", "month", ""] = ""

    @property
    def fails_closed(self) -> bool:
        """Budgets and token limits refuse while their counters cannot be reached; request rates
        and concurrency follow ``rate_limit_fail_open``."""
        return self.unit != "requests" or self.kind == "q"


class UnknownPlan(ValueError):
    pass


def period_bounds(calendar: str, now: float) -> tuple[str, float]:
    """(the period's id, seconds left in it) for a UTC calendar day or month."""
    dt = datetime.fromtimestamp(now, UTC)
    if calendar == "day":
        start = math.floor(now / 86400) * 86400
        return dt.strftime("%Y-%m-%d"), start + 86400 - now
    nxt = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=UTC)
    return dt.strftime("%Y-%m"), nxt.timestamp() - now


def period_start(calendar: str, now: float) -> float:
    dt = datetime.fromtimestamp(now, UTC)
    if calendar == "day":
        return float(math.floor(now / 86400) * 86400)
    return datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp()


class Policy:
    def __init__(self, settings: Settings) -> None:
        self._defaults: LimitFigures = settings.limits
        self._plans: dict[str, LimitFigures] = dict(settings.plans)
        self._cache: dict[tuple[str, float, str], tuple[Spec, ...]] = {}

    def plan(self, name: str | None) -> LimitFigures | None:
        if name is None:
            return None
        p = self._plans.get(name)
        if p is None:
            raise UnknownPlan(name)
        return p

    @property
    def plan_names(self) -> list[str]:
        return sorted(self._plans)

    def figures(self, key: KeyRecord) -> dict[str, Any]:
        try:
            plan = self.plan(key.plan)
        except UnknownPlan:
            plan = None  # a plan removed from the config: the defaults and the key's own figures
        return merged(self._defaults, plan, key.limits)

    def specs(self, key: KeyRecord, endpoint: str) -> tuple[Spec, ...]:
        """The limits that apply to a call of ``key`` on ``endpoint``, cached until the key changes."""
        ck = (key.id, key.updated_at, endpoint)
        found = self._cache.get(ck)
        if found is not None:
            return found
        cls = ENDPOINT_CLASS.get(endpoint, endpoint)
        out: list[Spec] = []
        for name, value in self.figures(key).items():
            scope, _, fig = name.rpartition(".")
            if scope and scope != cls:
                continue
            limit = float(value)
            if fig in RATE_PERIODS:
                unit: Unit = "tokens" if fig == "tpm" else "requests"
                out.append(Spec(name, "r", unit, limit, RATE_PERIODS[fig]))
            elif fig == "concurrency":
                out.append(Spec(name, "c", "requests", limit, 0.0))
            elif fig in QUOTAS:
                unit, calendar = QUOTAS[fig]
                out.append(Spec(name, "q", unit, limit, 0.0, calendar))
        specs = tuple(out)
        if len(self._cache) >= 10_000:
            self._cache.clear()
        self._cache[ck] = specs
        return specs


def counter_key(key_id: str, spec: Spec, period_id: str = "") -> str:
    base = f"sg:l:{{{key_id}}}:{spec.name}"
    return f"{base}:{period_id}" if period_id else base


_names: dict[tuple[str, str], str] = {}
_periods: dict[str, tuple[int, str, float]] = {}  # calendar -> (second, period id, its end)


def _name(key_id: str, spec: Spec) -> str:
    k = (key_id, spec.name)
    n = _names.get(k)
    if n is None:
        if len(_names) >= 100_000:
            _names.clear()
        n = _names[k] = counter_key(key_id, spec)
    return n


def _period(calendar: str, now: float) -> tuple[str, float]:
    """``period_bounds``, computed once a second: formatting dates costs more than the rest."""
    second = int(now)
    cached = _periods.get(calendar)
    if cached is None or cached[0] != second:
        pid, left = period_bounds(calendar, now)
        cached = _periods[calendar] = (second, pid, now + left)
    return cached[1], cached[2] - now


def items_for(
    key_id: str,
    specs: tuple[Spec, ...],
    *,
    tokens: int,
    nano_usd: int,
    slot_seconds: float,
    now: float | None = None,
) -> list[Item]:
    """Store items for one request: one request, ``tokens`` and ``nano_usd`` at their worst case."""
    now = time.time() if now is None else now
    items = []
    for s in specs:
        if s.kind == "r":
            cost = tokens if s.unit == "tokens" else 1
            items.append(Item("r", _name(key_id, s), s.limit, s.period, cost))
        elif s.kind == "c":
            items.append(Item("c", _name(key_id, s), s.limit, slot_seconds, 1))
        else:
            pid, left = _period(s.calendar, now)
            limit = s.limit * NANO if s.unit == "usd" else s.limit
            q_cost = nano_usd if s.unit == "usd" else tokens
            items.append(Item("q", f"{_name(key_id, s)}:{pid}", math.floor(limit), left, q_cost))
    return items
