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
