"""Admin endpoints for a key's limits and budgets: what applies, how much is used, and changes.

``GET /admin/v1/keys/{key_id}/limits`` shows each limit with its current use, what open
reservations hold, what remains and when it is whole again. ``PATCH`` sets the key's plan and
overrides; like every key change it reaches every worker and replica on their next request.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from stellargate.counters import CounterUnavailable
from stellargate.counters.policy import NANO, items_for
from stellargate.counters.redis import RedisCounterStore
from stellargate.counters.service import Limits
from stellargate.errors import InvalidRequest, ServiceUnavailable
from stellargate.keyservice import public_view
from stellargate.timefmt import iso_utc
from stellargate.web import Request, Result, Router, json_reply

if TYPE_CHECKING:
    from stellargate.admin.api import AdminAPI

KINDS = {"r": "rate", "c": "concurrency", "q": "quota"}


def _iso(ts: float) -> str:
    return iso_utc(ts, "seconds")


class AdminLimits:
    def __init__(self, api: AdminAPI) -> None:
        self.api = api

    @property
    def limits(self) -> Limits:
        lim = self.api.rt.limits
        if lim is None:
            raise ServiceUnavailable("Limits are not running in this process.")
        return lim

    def register(self, router: Router) -> None:
        router.add("GET", "/admin/v1/keys/{key_id}/limits", self.get_limits)
        router.add("PATCH", "/admin/v1/keys/{key_id}/limits", self.update_limits)

    async def get_limits(self, req: Request) -> Result:
        self.api._auth(req)
        return json_reply(await self._view(req.params["key_id"]))

    async def _view(self, key_id: str) -> dict[str, Any]:
        rec = await self.api.rt.key_service.get(key_id)
        lim = self.limits
        seen: dict[str, Any] = {}
        for endpoint in ("chat", "embeddings", "images"):
            for s in lim.policy.specs(rec, endpoint):
                seen.setdefault(s.name, s)
        specs = tuple(seen.values())
        items = items_for(rec.id, specs, tokens=0, nano_usd=0, slot_seconds=0.0)
        try:
            states = await lim.store.read(items)
        except CounterUnavailable:
            raise ServiceUnavailable(
                "The limit counters (Redis) cannot be reached.", code="limits_unavailable"
            ) from None
        now = time.time()
        rows = []
        for s, st in zip(specs, states, strict=True):
            scale = NANO if s.unit == "usd" else 1
            rows.append(
                {
                    "name": s.name,
                    "kind": KINDS[s.kind],
                    "unit": s.unit,
                    "limit": s.limit,
                    "period": s.calendar or s.period or None,
                    "used": st.used / scale,
                    "reserved": st.reserved / scale,
                    "remaining": st.remaining / scale,
                    "reset_seconds": round(st.reset, 3),
                    "reset_at": _iso(now + st.reset),
                }
            )
        return {
            "object": "key_limits",
            "key_id": rec.id,
            "plan": rec.plan,
            "overrides": rec.limits,
            "effective": lim.policy.figures(rec),
            "backend": "redis" if isinstance(lim.store, RedisCounterStore) else "memory",
            # This process's requests decided without counters since it started (Redis down).
            "unavailable": {"admitted": lim.unavailable_open, "refused": lim.unavailable_closed},
            "limits": rows,
        }

    async def update_limits(self, req: Request) -> Result:
        self.api._auth(req)
        key_id = req.params["key_id"]
        body = await self.api._body(req)
        unknown = sorted(set(body) - {"plan", "limits"})
        if unknown:
            raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}.", param=unknown[0])
        rec = await self.api.rt.key_service.get(key_id)
        changes: dict[str, Any] = {}
        if "plan" in body:
            plan = body["plan"]
            names = self.limits.policy.plan_names
            if plan is not None and plan not in names:
                raise InvalidRequest(
                    f"No plan named {plan!r}; the config defines: {', '.join(names) or 'none'}.", param="plan"
                )
            changes["plan"] = plan
        if "limits" in body:
            new = body["limits"]
            if not isinstance(new, dict):
                raise InvalidRequest("'limits' must be an object of figures.", param="limits")
            merged = {**rec.limits, **new}  # a figure set to null drops the override
            changes["limits"] = {k: v for k, v in merged.items() if v is not None}  # validated there
        if changes:
            rec = await self.api.rt.key_service.update(key_id, changes)
        return json_reply({**public_view(rec), "limits": rec.limits, "plan": rec.plan})
