"""Admin JSON API under /admin/v1: keys and usage. Authenticated by the admin key."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from stellargate.admin.deployments import DeploymentsAdmin
from stellargate.admin.limits import AdminLimits
from stellargate.dialects.openai import bearer
from stellargate.errors import AuthenticationError, InvalidRequest, PermissionDenied
from stellargate.keyservice import public_view
from stellargate.runtime import Runtime
from stellargate.timefmt import iso_utc
from stellargate.web import Handler, Request, Result, Router, json_reply

_GROUPS = ("model", "key", "day")
# The Idempotency-Key scope of admin calls. There is one admin credential, so the scope is its
# role, not a value derived from the secret (a hash of a possibly guessable admin key would be a
# verifier for it in the database); the secret itself still seals the records (idempotency.py).
ADMIN_SCOPE = "admin"


def parse_time(value: str, param: str) -> float:
    """Unix seconds or ISO 8601 (a time without zone is UTC)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"'{param}' must be unix seconds or an ISO 8601 time.", param=param) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _limit(q: dict[str, str], default: int = 50, most: int = 200) -> int:
    raw = q.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"'limit' must be a whole number from 1 to {most}.", param="limit")
    return int(raw)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else iso_utc(ts)


def is_admin_token(admin: SecretStr | None, token: str | None) -> bool:
    """The one comparison of a bearer token with the admin key, in constant time."""
    return (
        admin is not None
        and token is not None
        and hmac.compare_digest(token.encode(), admin.get_secret_value().encode())
    )


class AdminAPI:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._limit = min(rt.settings.server.max_body_bytes, 1024 * 1024)

    def register(self, router: Router) -> None:
        r = router.add
        r("POST", "/admin/v1/keys", self.idempotent(self.create_key))
        r("GET", "/admin/v1/keys", self.list_keys)
        r("GET", "/admin/v1/keys/{key_id}", self.get_key)
        r("PATCH", "/admin/v1/keys/{key_id}", self.update_key)
        r("DELETE", "/admin/v1/keys/{key_id}", self.revoke_key)
        r("POST", "/admin/v1/keys/{key_id}/revoke", self.idempotent(self.revoke_key))
        r("POST", "/admin/v1/keys/{key_id}/rotate", self.idempotent(self.rotate_key))
        r("GET", "/admin/v1/usage", self.usage)
        DeploymentsAdmin(self.rt.models, self._auth).register(router)
        AdminLimits(self).register(router)

    def _auth(self, req: Request) -> None:
        admin = self.rt.settings.admin_key
        if admin is None:
            raise PermissionDenied(
                "The admin API is disabled: set admin_key in the config or STELLARGATE_ADMIN_KEY.",
                code="admin_disabled",
            )
        token = bearer(req.headers)
        if token is None:
            raise AuthenticationError(
                "The admin API needs 'Authorization: Bearer <admin key>'.", code="missing_api_key"
            )
        if not is_admin_token(admin, token):
            raise AuthenticationError("Incorrect admin key.", code="invalid_admin_key")

    def idempotent(self, handler: Handler) -> Handler:
        """An admin POST that honours Idempotency-Key, scoped to the admin credential."""

        async def handle(req: Request) -> Result:
            # Before the record is looked up: a replay is shown only to the admin.
            self._auth(req)
            token = bearer(req.headers) or ""
            return await self.rt.idempotency.guard(ADMIN_SCOPE, token, req, lambda: handler(req))

        return handle

    async def _body(self, req: Request) -> dict[str, Any]:
        await req.read_body(self._limit)
        body = req.json() if req.body else {}
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return body

    async def create_key(self, req: Request) -> Result:
        self._auth(req)
        b = await self._body(req)
        known = {"name", "models", "scopes", "expires_in", "expires_at", "metadata", "log_prompts"}
        unknown = sorted(set(b) - known)
        if unknown:
            raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}.", param=unknown[0])
        if "name" not in b:
            raise InvalidRequest("Missing required parameter: 'name'.", param="name")
        rec, secret = await self.rt.key_service.create(
            name=b["name"],
            models=b.get("models"),
            scopes=b.get("scopes"),
            expires_in=b.get("expires_in"),
            expires_at=b.get("expires_at"),
            metadata=b.get("metadata"),
            log_prompts=b.get("log_prompts", False),
        )
        return json_reply({**public_view(rec), "key": secret}, status=201)

    async def list_keys(self, req: Request) -> Result:
        self._auth(req)
        q = req.query
        include_revoked = q.get("include_revoked", "true").lower() not in ("false", "0", "no")
        try:
            recs, cursor = await self.rt.db.keys.list(
                limit=_limit(q), cursor=q.get("cursor"), include_revoked=include_revoked
            )
        except ValueError:
            raise InvalidRequest("'cursor' is not a cursor this API returned.", param="cursor") from None
        return json_reply(
            {
                "object": "list",
                "data": [public_view(r) for r in recs],
                "next_cursor": cursor,
                "has_more": cursor is not None,
            }
        )

    async def get_key(self, req: Request) -> Result:
        self._auth(req)
        return json_reply(public_view(await self.rt.key_service.get(req.params["key_id"])))

    async def update_key(self, req: Request) -> Result:
        self._auth(req)
        rec = await self.rt.key_service.update(req.params["key_id"], await self._body(req))
        return json_reply(public_view(rec))

    async def revoke_key(self, req: Request) -> Result:
        self._auth(req)
        return json_reply(public_view(await self.rt.key_service.revoke(req.params["key_id"])))

    async def rotate_key(self, req: Request) -> Result:
        self._auth(req)
        rec, secret = await self.rt.key_service.rotate(req.params["key_id"])
        return json_reply({**public_view(rec), "key": secret})

    async def usage(self, req: Request) -> Result:
        self._auth(req)
        q = req.query
        filters: dict[str, Any] = {
            "key_id": q.get("key_id") or None,
            "model": q.get("model") or None,
            "since": parse_time(q["since"], "since") if q.get("since") else None,
            "until": parse_time(q["until"], "until") if q.get("until") else None,
            "limit": _limit(q, 100, 1000),
            "cursor": q.get("cursor") or None,
        }
        group = q.get("group_by")
        try:
            if group:
                if group not in _GROUPS:
                    raise InvalidRequest(f"'group_by' must be one of {', '.join(_GROUPS)}.", param="group_by")
                rows, cursor = await self.rt.db.usage.aggregate(group_by=group, **filters)  # type: ignore[arg-type]
                data: list[dict[str, Any]] = rows
            else:
                recs, cursor = await self.rt.db.usage.query(**filters)
                data = [{**r.to_dict(), "created_at_iso": _iso(r.created_at)} for r in recs]
        except ValueError:
            raise InvalidRequest("'cursor' is not a cursor this API returned.", param="cursor") from None
        return json_reply(
            {"object": "list", "data": data, "next_cursor": cursor, "has_more": cursor is not None}
        )
