"""Which counters a request of a key touches: the key's plan and overrides merged into limits,
each named, and turned into store items with this request's costs.

Counter names: ``sg:l:{<key id>}:<limit>[:<period>]``. The braces are a Redis Cluster hash tag, so
that all counters of one key live on one shard and one script can touch them together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
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
        self._calls: dict[tuple[str, float, str], CallLimits | None] = {}

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

    def for_call(self, key: KeyRecord, endpoint: str) -> CallLimits | None:
        """``specs`` compiled for the hot path (None: nothing limits the call), cached the same way."""
        ck = (key.id, key.updated_at, endpoint)
        try:
            return self._calls[ck]
        except KeyError:
            pass
        specs = self.specs(key, endpoint)
        found = CallLimits(key.id, specs) if specs else None
        if len(self._calls) >= 10_000:
            self._calls.clear()
        self._calls[ck] = found
        return found


def counter_key(key_id: str, spec: Spec, period_id: str = "") -> str:
    base = f"sg:l:{{{key_id}}}:{spec.name}"
    return f"{base}:{period_id}" if period_id else base


_periods: dict[str, tuple[int, str, float]] = {}  # calendar -> (second, period id, its end)


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
    """Store items for one request: one request, ``tokens`` and ``nano_usd`` at their worst case.
    (The request path keeps its ``CallLimits``; this is for reading a key's counters once.)"""
    return CallLimits(key_id, specs).items(tokens, nano_usd, slot_seconds, now)


# How a spec's item is made per request (CallLimits._ops).
_RATE_TOKENS, _QUOTA_TOKENS, _QUOTA_USD = range(3)


class CallLimits:
    """The limits one call of one key on one endpoint class touches, compiled once per key
    version: per request it builds only what varies (the request's token and spend costs, the
    calendar period), and which limits the rate-limit headers report is settled in advance.

    Built this way because the limits' per-request cost is budgeted (≤ 60 µs in process, README
    "What limits cost"), and rebuilding names, figures and header choices for every request
    stood out in its profile.
    """

    __slots__ = ("_ops", "_pick", "_quota_names", "_req", "_slot", "_slots", "_template", "_tok",
                 "counts_tokens", "fails_closed", "limit_bytes", "prices", "req_index", "specs",
                 "tok_index", "units")  # fmt: skip

    def __init__(self, key_id: str, specs: tuple[Spec, ...]) -> None:
        self.specs = specs
        # Counting tokens costs a few µs: only when a token or spend limit needs the figure.
        self.counts_tokens = any(s.unit != "requests" for s in specs)
        self.fails_closed = any(s.fails_closed for s in specs)
        self.prices = any(s.unit == "usd" for s in specs)
        # Per item, what it is settled at: 0 its reservation (requests), 1 tokens, 2 nano-USD.
        self.units = tuple(0 if s.unit == "requests" else 1 if s.unit == "tokens" else 2 for s in specs)
        self._pick = itemgetter(*self.units)
        self._slot = -1.0  # the slot length the template's concurrency items were made for
        # The items every request shares (request rates; concurrency, per slot length) in their
        # places; ``_ops`` fills in the rest per request.
        self._template: list[Item] = []
        ops: list[tuple[int, int, str, float, float, str]] = []
        slots: list[tuple[int, str, float]] = []
        for i, s in enumerate(specs):
            name = counter_key(key_id, s)
            if s.kind == "r" and s.unit == "requests":
                self._template.append(("r", name, s.limit, s.period, 1))
                continue
            self._template.append((s.kind, name, s.limit, 0.0, 0))  # set by items()
            if s.kind == "r":
                ops.append((i, _RATE_TOKENS, name, s.limit, s.period, ""))
            elif s.kind == "c":
                slots.append((i, name, s.limit))
            elif s.unit == "usd":
                ops.append((i, _QUOTA_USD, name, math.floor(s.limit * NANO), 0.0, s.calendar))
            else:
                ops.append((i, _QUOTA_TOKENS, name, math.floor(s.limit), 0.0, s.calendar))
        self._ops = tuple(ops)
        self._slots = tuple(slots)
        # Per quota: (its period's id, its counter's name in that period), made once a period.
        self._quota_names: list[tuple[str, str] | None] = [None] * len(specs)
        # The headers report the tightest of these: request rates, and token rates.
        self._req = tuple(i for i, s in enumerate(specs) if s.kind == "r" and s.unit == "requests")
        self._tok = tuple(i for i, s in enumerate(specs) if s.kind == "r" and s.unit == "tokens")
        # The index to report when there is one of the kind; -1 none; -2 several (see tightest).
        self.req_index = -1 if not self._req else self._req[0] if len(self._req) == 1 else -2
        self.tok_index = -1 if not self._tok else self._tok[0] if len(self._tok) == 1 else -2
        self.limit_bytes = tuple(b"%d" % int(s.limit) for s in specs)

    def items(self, tokens: int, nano_usd: int, slot_seconds: float, now: float | None = None) -> list[Item]:
        """Store items for one request: one request, ``tokens`` and ``nano_usd`` at their worst case."""
        if slot_seconds != self._slot:
            for i, name, limit in self._slots:
                self._template[i] = ("c", name, limit, slot_seconds, 1)
            self._slot = slot_seconds
        out = self._template.copy()
        wall = 0.0
        for i, op, name, limit, period, calendar in self._ops:
            if op == _RATE_TOKENS:
                out[i] = ("r", name, limit, period, tokens)
                continue
            if not wall:
                wall = time.time() if now is None else now
            pid, left = _period(calendar, wall)
            named = self._quota_names[i]
            if named is None or named[0] != pid:
                named = self._quota_names[i] = (pid, f"{name}:{pid}")
            out[i] = ("q", named[1], limit, left, nano_usd if op == _QUOTA_USD else tokens)
        return out

    def settled(self, tokens: int, nano_usd: int) -> Sequence[float]:
        """Per item, what it is settled at: requests and slots at their reservation (one), token
        limits at ``tokens``, spend at ``nano_usd``."""
        # One C call picks each item's figure by its unit (a comprehension costs a frame and a
        # loop in Python, several times more).
        picked = self._pick((1, tokens, nano_usd))
        return picked if len(self.units) > 1 else (picked,)

    def tightest(self, remaining: list[float]) -> tuple[int, int]:
        """(the request rate, the token rate) with the least left, by index; -1 where none."""
        req, tok = self._req, self._tok
        r = -1 if not req else req[0] if len(req) == 1 else min(req, key=remaining.__getitem__)
        t = -1 if not tok else tok[0] if len(tok) == 1 else min(tok, key=remaining.__getitem__)
        return r, t
