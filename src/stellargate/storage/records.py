"""What the storage layer stores and the query-group protocols it implements.

The rest of the gateway depends on these protocols only, never on SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from stellargate.core.usage import UsageRecord


@dataclass(slots=True)
class KeyRecord:
    id: str  # "key_" + 24 hex; public, appears in URLs and the ledger
    name: str
    key_hash: str  # SHA-256 hex of the whole secret key; the secret itself is never stored
    prefix: str  # display prefix, e.g. "sg-3kTq9bZ1", enough to recognise a key, useless to use it
    created_at: float  # unix seconds
    updated_at: float
    expires_at: float | None = None
    enabled: bool = True
    revoked_at: float | None = None
    models: list[str] = field(default_factory=list)  # glob patterns; empty = every model
    scopes: list[str] = field(default_factory=lambda: ["*"])
    metadata: dict[str, Any] = field(default_factory=dict)
    plan: str | None = None  # a named plan from the config (limits, budgets); None: the default plan
    limits: dict[str, Any] = field(default_factory=dict)  # this key's overrides of its plan's figures
    # Log each request's prompt and completion (logger stellargate.prompts); off: never logged.
    log_prompts: bool = False

    def is_active(self, now: float) -> bool:
        return self.enabled and self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


GroupBy = Literal["model", "key", "day"]


class KeyStore(Protocol):
    async def create(self, rec: KeyRecord) -> None: ...
    async def get(self, key_id: str) -> KeyRecord | None: ...
    async def get_by_hash(self, key_hash: str) -> KeyRecord | None: ...
    async def list(
        self, *, limit: int = 50, cursor: str | None = None, include_revoked: bool = True
    ) -> tuple[list[KeyRecord], str | None]: ...
    async def update(self, key_id: str, **fields: Any) -> KeyRecord | None: ...
    async def last_change(self) -> float: ...


class UsageLedger(Protocol):
    async def insert_many(self, records: Sequence[UsageRecord]) -> int: ...
    async def query(
        self,
        *,
        key_id: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[UsageRecord], str | None]: ...
    async def aggregate(
        self,
        *,
        group_by: GroupBy,
        key_id: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...


@dataclass(slots=True)
class StoredResponse:
    """A response kept for an Idempotency-Key, replayed byte for byte."""

    status: int
    content_type: str
    headers: list[tuple[str, str]]
    body: bytes
    streamed: bool


@dataclass(slots=True)
class IdempotencyRecord:
    key_id: str
    idem_key: str
    request_hash: str
    state: Literal["running", "done"]
    owner: str  # the claiming request's token: only it may complete or release the record
    created_at: float
    expires_at: float  # running: the end of the lock's lease; done: the end of the replay window
    response: StoredResponse | None = None


class IdempotencyStore(Protocol):
    async def claim(self, rec: IdempotencyRecord) -> IdempotencyRecord | None:
        """Insert ``rec`` (a running record); None when it is now ours, else the live record held."""
        ...

    async def complete(
        self, key_id: str, idem_key: str, owner: str, response: StoredResponse, expires_at: float
    ) -> bool: ...
    async def release(self, key_id: str, idem_key: str, owner: str) -> None: ...
    async def purge(self, now: float) -> int: ...


@dataclass(slots=True)
class AuditEvent:
    id: str  # time-ordered: "aud_" + 13 hex digits of microseconds + 12 random hex digits
    ts: float  # unix seconds
    actor: str  # "admin", "cli", "key:<id>", "system", or the key prefix of a failed authentication
    action: str  # e.g. "key.created", "auth.failed", "budget.exhausted", "config.reloaded"
    target: str | None = None
    source: str | None = None  # the client's address
    details: dict[str, Any] = field(default_factory=dict)


class AuditStore(Protocol):
    async def append_many(self, events: Sequence[AuditEvent]) -> int: ...
    async def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[AuditEvent], str | None]: ...


@dataclass(slots=True)
class WebhookEndpoint:
    id: str  # "wh_" + 24 hex
    url: str
    secrets: list[dict[str, Any]]  # [{"secret": "whsec_...", "expires_at": float | None}], newest first
    created_at: float
    updated_at: float
    events: list[str] = field(default_factory=list)  # empty: every event type
    description: str | None = None
    enabled: bool = True
    disabled_reason: str | None = None


@dataclass(slots=True)
class WebhookDelivery:
    endpoint_id: str
    msg_id: str  # the ``webhook-id``: the same on every attempt
    event_type: str
    body: bytes
    created_at: float
    state: Literal["pending", "delivered", "failed", "cancelled"] = "pending"
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_status: int | None = None
    last_error: str | None = None
    updated_at: float = 0.0


class WebhookStore(Protocol):
    async def create_endpoint(self, ep: WebhookEndpoint) -> None: ...
    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None: ...
    async def list_endpoints(self) -> list[WebhookEndpoint]: ...
    async def update_endpoint(self, endpoint_id: str, **fields: Any) -> WebhookEndpoint | None: ...
    async def delete_endpoint(self, endpoint_id: str) -> bool: ...
    async def enqueue(self, deliveries: Sequence[WebhookDelivery]) -> int: ...
    async def claim_due(self, now: float, lease: float, limit: int) -> list[WebhookDelivery]: ...
    async def finish(self, d: WebhookDelivery) -> None: ...
    async def cancel_pending(self, endpoint_id: str, now: float) -> int: ...
    async def list_deliveries(
        self, endpoint_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[WebhookDelivery], str | None]: ...
