"""Creating, changing, rotating and revoking keys: one implementation for the admin API and the CLI.

Every change calls ``notify`` so caches in every worker and replica drop what they hold.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from stellargate import apikeys
from stellargate.audit import AuditLog
from stellargate.counters.figures import LimitFigures
from stellargate.errors import InvalidRequest, NotFound
from stellargate.storage.records import KeyRecord, KeyStore

SCOPES = frozenset({"*", "chat", "completions", "embeddings", "images", "models", "audit:read", "usage:read"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | int) -> float:
    """'30d', '12h', '90m', '3600s' or a number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise InvalidRequest(
                f"Invalid duration {text!r}: use e.g. 30d, 12h, 90m or seconds.", param="expires_in"
            )
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise InvalidRequest("A duration must be positive.", param="expires_in")
    return seconds


def _str_list(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"'{param}' must be a list of non-empty strings.", param=param)
    return list(value)


def _scopes(value: Any) -> list[str]:
    scopes = _str_list(value, "scopes")
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise InvalidRequest(
            f"Unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}.", param="scopes"
        )
    return scopes


def _log_prompts(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest("'log_prompts' must be true or false.", param="log_prompts")
    return value


def _limits(value: Any) -> dict[str, Any]:
    """A key's limit overrides, validated as the config's figures are (a bad figure stored would
    fail every request of the key)."""
    if not isinstance(value, dict):
        raise InvalidRequest("'limits' must be an object.", param="limits")
    try:
        figs = LimitFigures.model_validate(value)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidRequest(f"limits.{where}: {err['msg']}", param=f"limits.{where}") from None
    return figs.model_dump(exclude_none=True, exclude_defaults=True)


def public_view(rec: KeyRecord) -> dict[str, Any]:
    """A key as the admin API and the CLI show it: never the hash."""
    now = time.time()
    status = (
        "revoked" if rec.revoked_at is not None
        else "disabled" if not rec.enabled
        else "expired" if rec.expires_at is not None and now >= rec.expires_at
        else "active"
    )  # fmt: skip
    return {
        "id": rec.id, "object": "api_key", "name": rec.name, "prefix": rec.prefix, "status": status,
        "created_at": rec.created_at, "updated_at": rec.updated_at, "expires_at": rec.expires_at,
        "revoked_at": rec.revoked_at, "enabled": rec.enabled, "models": rec.models, "scopes": rec.scopes,
        "metadata": rec.metadata, "plan": rec.plan, "limits": rec.limits, "log_prompts": rec.log_prompts,
    }  # fmt: skip


class KeyService:
    def __init__(
        self,
        store: KeyStore,
        notify: Callable[[], Awaitable[None]],
        *,
        audit: AuditLog | None = None,
        actor: str = "admin",
    ) -> None:
        self._store = store
        self._notify = notify
        self._audit = audit
        self.actor = actor  # who the audit log names for changes made through this service

    async def _audited(self, action: str, rec: KeyRecord, details: dict[str, Any] | None = None) -> None:
        # Written before the caller answers, so an acknowledged change is always in the log.
        if self._audit is not None:
            await self._audit.record(action, actor=self.actor, target=rec.id, details=details)

    async def create(
        self,
        *,
        name: str,
        models: list[str] | None = None,
        scopes: list[str] | None = None,
        expires_in: str | float | None = None,
        expires_at: float | None = None,
        metadata: dict[str, Any] | None = None,
        log_prompts: bool = False,
    ) -> tuple[KeyRecord, str]:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise InvalidRequest("'name' must be a non-empty string of at most 200 characters.", param="name")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("'metadata' must be an object.", param="metadata")
        bad_expiry = isinstance(expires_at, bool) or not isinstance(expires_at, int | float)
        if expires_at is not None and bad_expiry:
            # Found by the schema fuzzer: a string here used to reach the database (a 500).
            raise InvalidRequest("'expires_at' must be unix seconds or null.", param="expires_at")
        now = time.time()
        if expires_in is not None:
            expires_at = now + parse_duration(expires_in)
        secret = apikeys.generate()
        rec = KeyRecord(
            id=apikeys.new_key_id(),
            name=name.strip(),
            key_hash=apikeys.hash_key(secret),
            prefix=apikeys.display_prefix(secret),
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            models=_str_list(models, "models") if models is not None else [],
            scopes=_scopes(scopes) if scopes is not None else ["*"],
            metadata=metadata or {},
            log_prompts=_log_prompts(log_prompts),
        )
        await self._store.create(rec)
        await self._notify()
        details: dict[str, Any] = {"name": rec.name, "prefix": rec.prefix, "scopes": rec.scopes}
        if rec.log_prompts:
            details["log_prompts"] = True  # who asked for prompts to be logged, and when
        await self._audited("key.created", rec, details)
        return rec, secret

    async def get(self, key_id: str) -> KeyRecord:
        rec = await self._store.get(key_id)
        if rec is None:
            raise NotFound(f"No API key with id '{key_id}'.", code="key_not_found")
        return rec

    async def update(self, key_id: str, changes: dict[str, Any]) -> KeyRecord:
        # plan and limits arrive validated against the config's plans (admin/limits.py).
        allowed = {"name", "models", "scopes", "enabled", "expires_at", "expires_in", "metadata"}
        allowed |= {"plan", "limits", "log_prompts"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise InvalidRequest(f"Unknown field(s): {', '.join(unknown)}.", param=unknown[0])
        fields: dict[str, Any] = {}
        if "name" in changes:
            if not isinstance(changes["name"], str) or not changes["name"].strip():
                raise InvalidRequest("'name' must be a non-empty string.", param="name")
            fields["name"] = changes["name"].strip()
        if "models" in changes:
            fields["models"] = _str_list(changes["models"], "models")
        if "scopes" in changes:
            fields["scopes"] = _scopes(changes["scopes"])
        if "enabled" in changes:
            if not isinstance(changes["enabled"], bool):
                raise InvalidRequest("'enabled' must be true or false.", param="enabled")
            fields["enabled"] = changes["enabled"]
        if "metadata" in changes:
            if not isinstance(changes["metadata"], dict):
                raise InvalidRequest("'metadata' must be an object.", param="metadata")
            fields["metadata"] = changes["metadata"]
        if "plan" in changes:
            if changes["plan"] is not None and not isinstance(changes["plan"], str):
                raise InvalidRequest("'plan' must be a plan name or null.", param="plan")
            fields["plan"] = changes["plan"]
        if "limits" in changes:
            fields["limits"] = _limits(changes["limits"])
        if "log_prompts" in changes:
            fields["log_prompts"] = _log_prompts(changes["log_prompts"])
        if "expires_in" in changes:
            fields["expires_at"] = time.time() + parse_duration(changes["expires_in"])
        elif "expires_at" in changes:
            v = changes["expires_at"]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise InvalidRequest("'expires_at' must be unix seconds or null.", param="expires_at")
            fields["expires_at"] = v
        before = await self.get(key_id)
        rec = await self._store.update(key_id, **fields)
        if rec is None:
            raise NotFound(f"No API key with id '{key_id}'.", code="key_not_found")
        await self._notify()
        details: dict[str, Any] = {"fields": sorted(fields)}
        if "log_prompts" in fields:
            # Whether a key's prompts reach the logs is a privacy decision: the log keeps both values.
            details["log_prompts"] = {"from": before.log_prompts, "to": rec.log_prompts}
        await self._audited("key.updated", rec, details)
        return rec

    async def revoke(self, key_id: str) -> KeyRecord:
        rec = await self.get(key_id)
        if rec.revoked_at is None:
            updated = await self._store.update(key_id, revoked_at=time.time(), enabled=False)
            assert updated is not None
            rec = updated
            await self._notify()
            await self._audited("key.revoked", rec)
        return rec

    async def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new secret for the same key (same id, limits and history); the old secret stops working."""
        rec = await self.get(key_id)
        if rec.revoked_at is not None:
            raise InvalidRequest("A revoked key cannot be rotated; create a new one.", code="key_revoked")
        secret = apikeys.generate()
        updated = await self._store.update(
            key_id, key_hash=apikeys.hash_key(secret), prefix=apikeys.display_prefix(secret)
        )
        assert updated is not None
        await self._notify()
        await self._audited("key.rotated", updated, {"prefix": updated.prefix})
        return updated, secret
