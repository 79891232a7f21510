"""Where webhook events come from, each off the request path.

- ``budget.threshold``: a usage observer notes which keys spent (a set add); every few seconds
  their spend and token budgets are read from the limit counters and a crossing of 50, 80 or
  100 % is emitted, once per key, budget, period and threshold (a deterministic message id, so
  every worker and replica emitting it queues one delivery per endpoint).
- ``key.expiring``: hourly, keys that expire within 7 days, once per key and expiry time.
- ``deployment.ejected`` / ``deployment.recovered``: circuit breaker transitions seen by this
  process, polled every 2 s, once per deployment, state and minute across processes.
- ``job.completed`` is reserved for long-running jobs; the gateway has none yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from stellargate.core.usage import UsageRecord
from stellargate.counters.policy import NANO, items_for, period_bounds
from stellargate.runtime import Runtime
from stellargate.timefmt import iso_utc
from stellargate.webhooks import Webhooks

log = logging.getLogger("stellargate.webhooks")

THRESHOLDS = (0.5, 0.8, 1.0)
EXPIRY_WINDOW = 7 * 86400.0


def _iso(ts: float) -> str:
    return iso_utc(ts, "seconds")


class BudgetWatch:
    """A usage observer (O(1)) plus a periodic check of the keys that spent since the last one."""

    def __init__(self, rt: Runtime, hooks: Webhooks) -> None:
        self.rt = rt
        self.hooks = hooks
        self._spent: set[str] = set()

    def __call__(self, rec: UsageRecord, ctx: Any) -> None:
        spent = rec.cost_usd or rec.prompt_tokens or rec.completion_tokens
        if rec.key_id is not None and spent and len(self._spent) < 100_000:
            self._spent.add(rec.key_id)

    async def run(self, interval: float = 5.0) -> None:
        while True:
            await asyncio.sleep(interval)
            keys, self._spent = self._spent, set()
            for key_id in keys:
                try:
                    await self.check(key_id)
                except Exception as e:
                    log.warning("budget check for webhooks failed: %s", type(e).__name__)

    async def check(self, key_id: str) -> None:
        lim = self.rt.limits
        if lim is None:
            return
        rec = await self.rt.db.keys.get(key_id)
        if rec is None:
            return
        specs = tuple({s.name: s for e in ("chat", "embeddings", "images") for s in lim.policy.specs(rec, e)
                       if s.kind == "q"}.values())  # fmt: skip
        if not specs:
            return
        now = time.time()
        states = await lim.store.read(
            items_for(key_id, specs, tokens=0, nano_usd=0, slot_seconds=0.0, now=now)
        )
        for s, st in zip(specs, states, strict=True):
            scale = NANO if s.unit == "usd" else 1
            used = st.used / scale
            if s.limit <= 0:
                continue
            period, _ = period_bounds(s.calendar, now)
            for t in THRESHOLDS:
                if used >= s.limit * t:
                    data = {
                        "key_id": key_id,
                        "budget": s.name,
                        "unit": s.unit,
                        "threshold_percent": int(t * 100),
                        "used": used,
                        "limit": s.limit,
                        "period": period,
                    }
                    await self.hooks.emit("budget.threshold", data, dedupe=f"{key_id}:{s.name}:{period}:{t}")


async def watch_key_expiry(rt: Runtime, hooks: Webhooks, interval: float = 3600.0) -> None:
    await asyncio.sleep(5.0)  # let start-up settle
    while True:
        try:
            now, cursor = time.time(), None
            for _ in range(10_000):  # bounded: 200 keys a page
                recs, cursor = await rt.db.keys.list(limit=200, cursor=cursor, include_revoked=False)
                for k in recs:
                    if k.is_active(now) and k.expires_at is not None and k.expires_at - now <= EXPIRY_WINDOW:
                        data = {
                            "key_id": k.id,
                            "name": k.name,
                            "prefix": k.prefix,
                            "expires_at": _iso(k.expires_at),
                        }
                        await hooks.emit("key.expiring", data, dedupe=f"{k.id}:{k.expires_at}")
                if cursor is None:
                    break
        except Exception as e:
            log.warning("key expiry scan failed: %s", type(e).__name__)
        await asyncio.sleep(interval)


async def watch_breakers(rt: Runtime, hooks: Webhooks, interval: float = 2.0) -> None:
    seen: dict[str, str] = {}
    while True:
        await asyncio.sleep(interval)
        now = time.time()
        for d in list(rt.models.deployments.values()):
            state = "open" if d.breaker.state == "open" else "closed" if d.breaker.state == "closed" else ""
            before = seen.get(d.id, "closed")
            if not state or state == before:
                continue
            seen[d.id] = state
            event = "deployment.ejected" if state == "open" else "deployment.recovered"
            data = {"deployment": d.id, "provider": d.provider, "upstream_model": d.upstream_model}
            try:
                await hooks.emit(event, data, dedupe=f"{d.id}:{state}:{int(now // 60)}")
            except Exception as e:
                log.warning("breaker webhook failed: %s", type(e).__name__)


def start_webhooks(rt: Runtime) -> Webhooks:
    """Build the sender and the event sources; call before the routes build their stage chains."""
    hooks = Webhooks(rt.db.webhooks, rt.settings.webhooks)
    budget = BudgetWatch(rt, hooks)
    rt.usage_observers.append(budget)
    for coro in (hooks.run(), budget.run(), watch_key_expiry(rt, hooks), watch_breakers(rt, hooks)):
        rt.tasks.append(asyncio.create_task(coro))
    return hooks
