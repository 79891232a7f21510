"""Where webhook events come from, each off the request path.

- ``budget.threshold``: a usage observer notes which keys spent (a set add); every few seconds
  their spend and token budgets are read from the limit counters and a crossing of 50, 80 or
  100 % is emitted, once per key, budget, period and threshold (a deterministic message id, so
  every worker and replica emitting it queues one delivery per endpoint).
- ``key.expiring``: every ``webhooks.key_expiry_interval`` (an hour), keys that expire within
  7 days, once per key and expiry time.
- ``deployment.ejected`` / ``deployment.recovered``: circuit breaker transitions seen by this
  process, polled every ``webhooks.breaker_poll_interval`` (2 s), once per ejection across
  processes (``BreakerWatch``).
- ``job.completed`` is reserved for long-running jobs; the gateway has none yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from stellargate.core.usage import UsageRecord
from stellargate.counters.policy import NANO, items_for, period_bounds
from stellargate.pipeline.deployments import Deployment
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
    await asyncio.sleep(min(5.0, interval))  # let start-up settle
    while True:
        try:
            await scan_key_expiry(rt, hooks)
        except Exception as e:
            log.warning("key expiry scan failed: %s", type(e).__name__)
        await asyncio.sleep(interval)


async def scan_key_expiry(rt: Runtime, hooks: Webhooks) -> None:
    now, cursor = time.time(), None
    for _ in range(10_000):  # bounded: 200 keys a page
        recs, cursor = await rt.db.keys.list(limit=200, cursor=cursor, include_revoked=False)
        for k in recs:
            if k.is_active(now) and k.expires_at is not None and k.expires_at - now <= EXPIRY_WINDOW:
                data = {"key_id": k.id, "name": k.name, "prefix": k.prefix, "expires_at": _iso(k.expires_at)}
                # Once per expiry time: a key given a new expiry is announced again.
                await hooks.emit("key.expiring", data, dedupe=f"{k.id}:{k.expires_at}")
        if cursor is None:
            break


@dataclass(slots=True)
class _Seen:
    dep: Deployment  # the object, not the id: a reload may replace a deployment of the same id
    ejected_at: float = 0.0  # the last ejection reported
    ejected: bool = False  # reported ejected and not yet recovered


class BreakerWatch:
    """Reports each ejection and each recovery of a deployment once, polling the breakers.

    An ejection is named by its start (``Breaker.ejected_at``, shared between replicas), which is
    the events' dedupe key: every process reporting it queues one delivery per endpoint, and a
    deployment ejected twice in a minute is reported twice. A failed half-open probe lengthens
    the ejection without a new event; ``recovered`` comes when a probe succeeds after the cooldown
    (here or, with Redis, on another replica). An ejection and recovery both between two polls are
    still reported, in order. A deployment that a config reload replaced (its place changed) while
    ejected is reported recovered with the reason ``config_changed``: the new one starts closed.
    """

    def __init__(self, rt: Runtime, hooks: Webhooks) -> None:
        self.rt = rt
        self.hooks = hooks
        self._seen: dict[str, _Seen] = {}

    async def run(self, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except Exception as e:
                log.warning("breaker webhook failed: %s", type(e).__name__)

    async def poll(self) -> None:
        table = self.rt.models.deployments
        for did in [i for i, s in self._seen.items() if i not in table and not s.ejected]:
            del self._seen[did]  # removed while serving: nothing left to report
        for d in list(table.values()):
            s = self._seen.get(d.id)
            if s is not None and s.dep is not d:
                if s.ejected:
                    await self._recovered(s, "config_changed")
                s = None
            if s is None:
                s = self._seen[d.id] = _Seen(d)
            b = d.breaker
            if b.ejected_at > s.ejected_at:
                if s.ejected:  # recovered and ejected again since the last poll
                    await self._recovered(s, "probe_succeeded")
                await self._ejected(s)
            if s.ejected and b.state == "closed":
                await self._recovered(s, "probe_succeeded")

    def _data(self, d: Deployment, ejected_at: float) -> dict[str, Any]:
        return {
            "deployment": d.id,
            "provider": d.provider,
            "upstream_model": d.upstream_model,
            "ejected_at": iso_utc(ejected_at, "milliseconds"),
        }

    async def _ejected(self, s: _Seen) -> None:
        b = s.dep.breaker
        at = b.ejected_at
        data = {**self._data(s.dep, at), "cooldown_s": b.cooldown, "ejections": b.ejections}
        await self.hooks.emit("deployment.ejected", data, dedupe=f"{s.dep.id}:{at!r}")
        s.ejected_at, s.ejected = at, True  # only once queued: a failed emit is tried next poll

    async def _recovered(self, s: _Seen, reason: str) -> None:
        data = {**self._data(s.dep, s.ejected_at), "reason": reason}
        await self.hooks.emit("deployment.recovered", data, dedupe=f"{s.dep.id}:{s.ejected_at!r}")
        s.ejected = False


def start_webhooks(rt: Runtime) -> Webhooks:
    """Build the sender and the event sources; call before the routes build their stage chains."""
    hooks = Webhooks(rt.db.webhooks, rt.settings.webhooks)
    budget = BudgetWatch(rt, hooks)
    rt.usage_observers.append(budget)
    ws = rt.settings.webhooks
    for coro in (
        hooks.run(),
        budget.run(),
        watch_key_expiry(rt, hooks, ws.key_expiry_interval),
        BreakerWatch(rt, hooks).run(ws.breaker_poll_interval),
    ):
        rt.tasks.append(asyncio.create_task(coro))
    return hooks
