"""``GET /v1/audit-log``: read the audit log. There is no route that writes, edits or deletes it.

Readable with the admin key, or with an API key that lists the ``audit:read`` scope explicitly:
the wildcard scope ``*`` that keys get by default does not include it, since the log names other
keys and client addresses.
"""

from __future__ import annotations

from typing import Any

from stellargate.admin.api import _limit, is_admin_token, parse_time
from stellargate.dialects.openai import bearer
from stellargate.errors import InvalidRequest, PermissionDenied
from stellargate.pipeline.auth import authenticate
from stellargate.runtime import Runtime
from stellargate.storage.records import AuditEvent
from stellargate.timefmt import iso_utc
from stellargate.web import Request, Result, Router, json_reply

SCOPE = "audit:read"


def iso(ts: float) -> str:
    return iso_utc(ts, "microseconds")


def event_json(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "object": "audit_event",
        "time": iso(e.ts),
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "source": e.source,
        "details": e.details,
    }


class AuditAPI:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def register(self, router: Router) -> None:
        router.add("GET", "/v1/audit-log", self.list_events)

    async def _auth(self, req: Request) -> None:
        token = bearer(req.headers)
        if is_admin_token(self.rt.settings.admin_key, token):
            return
        key = await authenticate(self.rt.keys, token)
        if SCOPE not in key.scopes:
            raise PermissionDenied(
                f"Reading the audit log needs the admin key or a key with the '{SCOPE}' scope.",
                code="scope_not_allowed",
            )

    async def list_events(self, req: Request) -> Result:
        await self._auth(req)
        q = req.query
        unknown = sorted(set(q) - {"actor", "action", "target", "since", "until", "limit", "cursor"})
        if unknown:
            raise InvalidRequest(f"Unknown query parameter(s): {', '.join(unknown)}.", param=unknown[0])
        try:
            events, cursor = await self.rt.db.audit.query(
                actor=q.get("actor") or None,
                action=q.get("action") or None,
                target=q.get("target") or None,
                since=parse_time(q["since"], "since") if q.get("since") else None,
                until=parse_time(q["until"], "until") if q.get("until") else None,
                limit=_limit(q, 100, 1000),
                cursor=q.get("cursor") or None,
            )
        except ValueError:
            raise InvalidRequest("'cursor' is not a cursor this API returned.", param="cursor") from None
        return json_reply(
            {
                "object": "list",
                "data": [event_json(e) for e in events],
                "next_cursor": cursor,
                "has_more": cursor is not None,
            }
        )
