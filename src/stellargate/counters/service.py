"""What a process holds for limits: the policy, the counter store, outage counts; and how it starts.

The store is Redis whenever Redis is configured (every worker and replica then shares exact
counters), else in-process. In-process spend and token budgets survive a restart: at start-up
they are seeded from the usage ledger, one aggregate query per calendar period (this UTC day and
this UTC month), so a restarted gateway does not grant a key its budget a second time.
"""

from __future__ import annotations

import logging
import math
import time

from stellargate.counters import CounterStore
from stellargate.counters.memory import MemoryCounterStore
from stellargate.counters.policy import NANO, QUOTAS, Policy, Spec, counter_key, period_bounds, period_start
from stellargate.counters.redis import RedisCounterStore
from stellargate.settings import Settings
from stellargate.storage.records import UsageLedger

log = logging.getLogger("stellargate.limits")


class Limits:
    def __init__(self, policy: Policy, store: CounterStore, *, fail_open: bool, trail: int = 0) -> None:
        self.policy = policy
        self.store = store
        self.fail_open = fail_open
        self.trail = trail  # the store's trail length (budget_trail), as it started
        self.unavailable_open = 0  # requests admitted unchecked while the store was unreachable
        self.unavailable_closed = 0  # requests refused because the store was unreachable
        self.overshoots = 0  # answers whose reported use exceeded what their request reserved
        self._last_log = self._last_overshoot_log = 0.0

    def outage(self, admitted: bool, err: Exception) -> None:
        if admitted:
            self.unavailable_open += 1
        else:
            self.unavailable_closed += 1
        now = time.monotonic()
        if now - self._last_log >= 5.0:  # one line per 5 s with the counts, not one per request
            self._last_log = now
            log.warning(
                "limit counters unreachable (%s): %d requests admitted unchecked (rate limits fail %s), "
                "%d refused (budgets fail closed) so far",
                err, self.unavailable_open, "open" if self.fail_open else "closed", self.unavailable_closed,
            )  # fmt: skip

    def overshot(self, model: str, tokens: int, reserved: int) -> None:
        """An answer used more than its request reserved (the prompt counted short, a provider
        reporting more than it was asked for): the budgets record the real use, so they may end
        over their figure by that much. Counted, and logged at most once a minute."""
        self.overshoots += 1
        now = time.monotonic()
        if now - self._last_overshoot_log >= 60.0:
            self._last_overshoot_log = now
            log.warning(
                "an answer from %s used more than its request reserved (%d tokens against %d, or its "
                "cost; %d such answers so far): budgets record the real use; reservations for it now "
                "scale their prompt count by what it reports",
                model or "the upstream", tokens, reserved, self.overshoots,
            )  # fmt: skip

    async def close(self) -> None:
        await self.store.close()


async def start_limits(settings: Settings, ledger: UsageLedger) -> Limits:
    policy = Policy(settings)
    store: CounterStore
    if settings.redis:
        store = RedisCounterStore(settings.redis, trail=settings.budget_trail)
    else:
        mem = MemoryCounterStore(trail=settings.budget_trail)
        await seed_from_ledger(mem, ledger)
        store = mem  # one process: the CLI refuses several workers without Redis
    return Limits(policy, store, fail_open=settings.rate_limit_fail_open, trail=settings.budget_trail)


async def seed_from_ledger(store: MemoryCounterStore, ledger: UsageLedger, now: float | None = None) -> None:
    now = time.time() if now is None else now
    for name, (unit, calendar) in QUOTAS.items():
        spec = Spec(name, "q", unit, 0.0, 0.0, calendar)
        pid, left = period_bounds(calendar, now)
        cursor: str | None = None
        for _ in range(10_000):  # bounded: pages of 1000 keys
            rows, cursor = await ledger.aggregate(
                group_by="key", since=period_start(calendar, now), limit=1000, cursor=cursor
            )
            for row in rows:
                kid = row.get("group") or row.get("key_id")
                if not kid:
                    continue
                if unit == "usd":
                    used = math.ceil(float(row.get("cost_usd") or 0.0) * NANO)
                else:
                    used = int(row.get("prompt_tokens") or 0) + int(row.get("completion_tokens") or 0)
                if used:
                    store.seed(counter_key(str(kid), spec, pid), used, left)
            if cursor is None:
                break
