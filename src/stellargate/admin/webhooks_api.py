"""Admin endpoints for webhooks: register, list, change, delete, rotate the secret, see deliveries,
send a test event. Secrets are shown once, when created or rotated."""

from __future__ import annotations

import os
import time
from typing import Any

from stellargate.admin.api import AdminAPI, _limit
from stellargate.admin.audit_api import iso
from stellargate.errors import InvalidRequest, NotFound
from stellargate.storage.records import WebhookDelivery, WebhookEndpoint
from stellargate.web import Request, Result, Router, json_reply
from stellargate.webhooks import EVENT_TYPES, ROTATION_OVERLAP, Webhooks, check_url, new_secret

_FIELDS = frozenset({"url", "events", "description", "enabled"})


def endpoint_view(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": ep.id,
        "object": "webhook_endpoint",
        "url": ep.url,
        "description": ep.description,
        "events": ep.events,
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "created_at": iso(ep.created_at),
        "updated_at": iso(ep.updated_at),
    }


def delivery_view(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.msg_id,
        "object": "webhook_delivery",
        "endpoint_id": d.endpoint_id,
        "event_type": d.event_type,
        "state": d.state,
        "attempts": d.attempts,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) if d.state == "pending" else None,
        "last_status": d.last_status,
        "last_error": d.last_error,
    }


class WebhooksAPI:
    def __init__(self, admin: AdminAPI, hooks: Webhooks) -> None:
        self.admin = admin
        self.hooks = hooks

    def register(self, router: Router) -> None:
        r = router.add
        r("POST", "/admin/v1/webhooks", self.admin.idempotent(self.create))
        r("GET", "/admin/v1/webhooks", self.list)
        r("GET", "/admin/v1/webhooks/{endpoint_id}", self.get)
        r("PATCH", "/admin/v1/webhooks/{endpoint_id}", self.update)
        r("DELETE", "/admin/v1/webhooks/{endpoint_id}", self.delete)
        r("POST", "/admin/v1/webhooks/{endpoint_id}/rotate-secret", self.admin.idempotent(self.rotate))
        r("POST", "/admin/v1/webhooks/{endpoint_id}/test", self.admin.idempotent(self.test))
        r("GET", "/admin/v1/webhooks/{endpoint_id}/deliveries", self.deliveries)

    def _check(self, b: dict[str, Any], creating: bool) -> dict[str, Any]:
        unknown = sorted(set(b) - _FIELDS)
        if unknown:
            raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}.", param=unknown[0])
        out: dict[str, Any] = {}
        if "url" in b or creating:
            url = b.get("url")
            if not isinstance(url, str) or not url:
                raise InvalidRequest("'url' must be an http(s) URL.", param="url")
            try:
                check_url(url, self.hooks.settings.allow_private)
            except ValueError as e:
                raise InvalidRequest(
                    f"This webhook URL is refused: {e} (webhooks.allow_private allows it).",
                    param="url",
                    code="webhook_url_refused",
                ) from None
            out["url"] = url
        if "events" in b:
            ev = b["events"]
            if not isinstance(ev, list) or not all(isinstance(e, str) for e in ev):
                raise InvalidRequest("'events' must be a list of event types.", param="events")
            unknown_ev = sorted(set(ev) - EVENT_TYPES)
            if unknown_ev:
                known = ", ".join(sorted(EVENT_TYPES))
                raise InvalidRequest(
                    f"Unknown event type(s) {', '.join(unknown_ev)}; known: {known}.", param="events"
                )
            out["events"] = list(ev)
        if "description" in b:
            if b["description"] is not None and not isinstance(b["description"], str):
                raise InvalidRequest("'description' must be a string.", param="description")
            out["description"] = b["description"]
        if "enabled" in b:
            if not isinstance(b["enabled"], bool):
                raise InvalidRequest("'enabled' must be true or false.", param="enabled")
            out["enabled"] = b["enabled"]
            if b["enabled"]:
                out["disabled_reason"] = None
        return out

    async def _get(self, endpoint_id: str) -> WebhookEndpoint:
        ep = await self.hooks.store.get_endpoint(endpoint_id)
        if ep is None:
            raise NotFound(f"No webhook endpoint with id '{endpoint_id}'.", code="webhook_not_found")
        return ep

    async def create(self, req: Request) -> Result:
        self.admin._auth(req)
        fields = self._check(await self.admin._body(req), creating=True)
        now, secret = time.time(), new_secret()
        ep = WebhookEndpoint(
            id="wh_" + os.urandom(12).hex(),
            url=fields["url"],
            secrets=[{"secret": secret, "expires_at": None}],
            created_at=now,
            updated_at=now,
            events=fields.get("events", []),
            description=fields.get("description"),
            enabled=fields.get("enabled", True),
        )
        await self.hooks.store.create_endpoint(ep)
        await self.admin.rt.audit.record(
            "webhook.created", actor="admin", target=ep.id, details={"url": ep.url}
        )
        return json_reply({**endpoint_view(ep), "secret": secret}, status=201)

    async def list(self, req: Request) -> Result:
        self.admin._auth(req)
        eps = await self.hooks.store.list_endpoints()
        return json_reply({"object": "list", "data": [endpoint_view(e) for e in eps]})

    async def get(self, req: Request) -> Result:
        self.admin._auth(req)
        return json_reply(endpoint_view(await self._get(req.params["endpoint_id"])))

    async def update(self, req: Request) -> Result:
        self.admin._auth(req)
        fields = self._check(await self.admin._body(req), creating=False)
        await self._get(req.params["endpoint_id"])
        ep = await self.hooks.store.update_endpoint(req.params["endpoint_id"], **fields)
        if ep is None:
            raise NotFound("No such webhook endpoint.", code="webhook_not_found")
        await self.admin.rt.audit.record(
            "webhook.updated", actor="admin", target=ep.id, details={"fields": sorted(fields)}
        )
        return json_reply(endpoint_view(ep))

    async def delete(self, req: Request) -> Result:
        self.admin._auth(req)
        ep = await self._get(req.params["endpoint_id"])
        await self.hooks.store.delete_endpoint(ep.id)
        await self.admin.rt.audit.record("webhook.deleted", actor="admin", target=ep.id)
        return json_reply({"id": ep.id, "object": "webhook_endpoint", "deleted": True})

    async def rotate(self, req: Request) -> Result:
        """A new secret signs from now on; the previous one keeps signing for ROTATION_OVERLAP, so
        receivers can switch without losing a message (both signatures are sent meanwhile)."""
        self.admin._auth(req)
        ep = await self._get(req.params["endpoint_id"])
        now, secret = time.time(), new_secret()
        old = [{**s, "expires_at": s.get("expires_at") or now + ROTATION_OVERLAP} for s in ep.secrets]
        keep = [s for s in old if s["expires_at"] > now]
        updated = await self.hooks.store.update_endpoint(
            ep.id, secrets=[{"secret": secret, "expires_at": None}, *keep]
        )
        assert updated is not None
        await self.admin.rt.audit.record("webhook.secret_rotated", actor="admin", target=ep.id)
        return json_reply({**endpoint_view(updated), "secret": secret})

    async def test(self, req: Request) -> Result:
        self.admin._auth(req)
        ep = await self._get(req.params["endpoint_id"])
        n = await self.hooks.emit("webhook.test", {"endpoint_id": ep.id}, only=ep.id)
        return json_reply({"object": "webhook_test", "queued": n}, status=202)

    async def deliveries(self, req: Request) -> Result:
        self.admin._auth(req)
        ep = await self._get(req.params["endpoint_id"])
        q = req.query
        try:
            rows, cursor = await self.hooks.store.list_deliveries(
                ep.id, limit=_limit(q), cursor=q.get("cursor") or None
            )
        except ValueError:
            raise InvalidRequest("'cursor' is not a cursor this API returned.", param="cursor") from None
        return json_reply(
            {
                "object": "list",
                "data": [delivery_view(d) for d in rows],
                "next_cursor": cursor,
                "has_more": cursor is not None,
            }
        )
