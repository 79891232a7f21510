"""Admin endpoints for a key's limits and budgets: what applies, how much is used, and changes.

``GET /admin/v1/keys/{key_id}/limits`` shows each limit with its current use, what open
reservations hold, what remains and when it is whole again. ``PATCH`` sets the key's plan and
overrides; like every key change it reaches every worker and replica on their next request.
``GET /admin/v1/keys/{key_id}/limits/trail`` lists a budget's last recorded changes (with
``budget_trail`` on): what each request reserved and settled, and the state after each step.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from stellargate.counters import CounterUnavailable
from stellargate.counters.policy import NANO, QUOTAS, Spec, counter_key, items_for, period_bounds
from stellargate.counters.redis import RedisCounterStore
from stellargate.counters.service import Limits
from stellargate.errors import InvalidRequest, NotFound, ServiceUnavailable
from stellargate.keyservice import public_view
from stellargate.timefmt import iso_utc
from stellargate.web import Request, Result, Router, json_reply

if TYPE_CHECKING:
    from stellargate.admin.api import AdminAPI

KINDS = {"r": "rate", "c": "concurrency", "q": "quota"}
PERIOD_ID = {"day": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), "month": re.compile(r"[0-9]{4}-[0-9]{2}")}
MAX_TRAIL_PAGE = 100_000  # as many as budget_trail may keep: one read returns a whole trail


def _shown(value: float, unit: str) -> float:
    """Spend from nano-USD; requests and tokens to six places: rates replenish continuously, so
    they are fractional, and six places drop the float noise of arrival times (48.99999999997)."""
    return value / NANO if unit == "usd" else round(value, 6)


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
        router.add("GET", "/admin/v1/keys/{key_id}/limits/trail", self.get_trail)

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
            rows.append(
                {
                    "name": s.name,
                    "kind": KINDS[s.kind],
                    "unit": s.unit,
                    "limit": s.limit,
                    "period": s.calendar or s.period or None,
                    "used": _shown(st.used, s.unit),
                    "reserved": _shown(st.reserved, s.unit),
                    "remaining": _shown(st.remaining, s.unit),
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
            # This process's answers that used more than their request reserved (README, Limits).
            "overshoots": lim.overshoots,
            "limits": rows,
        }

    async def get_trail(self, req: Request) -> Result:
        self.api._auth(req)
        lim = self.limits
        if not lim.trail:
            raise NotFound(
                "The budget trail is off: set budget_trail (changes kept per budget) in the config.",
                code="budget_trail_off",
            )
        q = req.query
        name = q.get("budget")
        if name not in QUOTAS:
            raise InvalidRequest(f"'budget' must be one of: {', '.join(QUOTAS)}.", param="budget")
        raw = q.get("limit", "100")
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_TRAIL_PAGE):
            raise InvalidRequest(f"'limit' must be a whole number from 1 to {MAX_TRAIL_PAGE}.", param="limit")
        unit, calendar = QUOTAS[name]
        period = q.get("period") or period_bounds(calendar, time.time())[0]
        if not PERIOD_ID[calendar].fullmatch(period):
            shape = "YYYY-MM-DD" if calendar == "day" else "YYYY-MM"
            raise InvalidRequest(f"'period' of {name} is a UTC {calendar}: {shape}.", param="period")
        rec = await self.api.rt.key_service.get(req.params["key_id"])
        # Any budget name, not only the key's current ones: a budget lifted since keeps its trail.
        key = counter_key(rec.id, Spec(name, "q", unit, 0.0, 0.0, calendar), period)
        try:
            trail = await lim.store.trail(key, int(raw))
        except CounterUnavailable:
            raise ServiceUnavailable(
                "The limit counters (Redis) cannot be reached.", code="limits_unavailable"
            ) from None
        scale = NANO if unit == "usd" else 1
        figure = lim.policy.figures(rec).get(name)
        return json_reply(
            {
                "object": "budget_trail",
                "key_id": rec.id,
                "budget": name,
                "unit": unit,
                "period": period,
                "limit": figure,
                "trail_length": lim.trail,
                "kept": trail.kept,
                "added": trail.added,
                "trimmed": None if trail.added is None else trail.added - trail.kept,
                "data": [
                    {
                        "at": iso_utc(e.ts, "microseconds"),
                        "op": e.op,
                        "request_id": e.token or None,
                        "used_delta": e.committed_delta / scale,
                        "reserved_delta": e.reserved_delta / scale,
                        "used": e.committed / scale,
                        "reserved": e.reserved / scale,
                    }
                    for e in trail.entries
                ],
            }
        )

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
