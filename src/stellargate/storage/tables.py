"""The SQL schema, in SQLAlchemy Core: plain tables, no ORM mapping, so reads and batch writes stay cheap.

Times are unix seconds in DOUBLE columns (the same representation as the records), which keeps
comparisons and cursors identical on SQLite and PostgreSQL. Migrations in `migrations/versions`
must produce exactly these tables; a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

# Deterministic constraint names let later migrations drop or alter them by name on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Alembic's bookkeeping table, named so it cannot collide with another application's in a shared database.
VERSION_TABLE = "stellargate_alembic_version"

# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
Json = sa.JSON().with_variant(JSONB(), "postgresql")

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Column("models", Json, nullable=False),
    sa.Column("scopes", Json, nullable=False),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("plan", sa.Text, nullable=True),
    sa.Column("limits", Json, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("log_prompts", sa.Boolean, nullable=False, server_default=sa.false()),
    # list() pages over (created_at, id); last_change() reads max(updated_at).
    sa.Index(None, "created_at", "id"),
    sa.Index(None, "updated_at"),
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("key_id", sa.Text, nullable=True),  # no foreign key: the ledger outlives deleted keys
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("dialect", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=True),
    sa.Column("upstream_model", sa.Text, nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("streamed", sa.Boolean, nullable=False),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False),
    sa.Column("cached_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_creation_tokens", sa.BigInteger, nullable=False),
    sa.Column("reasoning_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Double, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=False),
    sa.Column("ttft_ms", sa.Double, nullable=True),
    sa.Column("error_code", sa.Text, nullable=True),
    sa.Column("usage_estimated", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("meta", Json, nullable=False),
    sa.Index(None, "key_id", "created_at"),
    sa.Index(None, "model", "created_at"),
    sa.Index(None, "created_at"),
)

# Idempotency-Key records (issue: platform conventions). One row per (key, Idempotency-Key): a
# "running" row is the cross-worker lock of the first request (``expires_at`` is its lease), a
# "done" row holds the response to replay until ``expires_at`` (first request + 24 h).
idempotency_records = sa.Table(
    "idempotency_records",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("idem_key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # "running" or "done"
    sa.Column("owner", sa.Text, nullable=False),  # the claiming request's token; guards complete/release
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("content_type", sa.Text, nullable=True),
    sa.Column("headers", Json, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=True),
    sa.Column("streamed", sa.Boolean, nullable=False),
    sa.Index(None, "expires_at"),
)

# The audit log: appended to, never updated through the API. Paged newest first by (ts, id).
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=True),  # the client address, when there is one
    sa.Column("details", Json, nullable=False),
    sa.Index(None, "ts", "id"),
    sa.Index(None, "actor", "ts"),
    sa.Index(None, "action", "ts"),
    sa.Index(None, "target", "ts"),
)

# Webhook endpoints registered through the admin API; ``secrets`` holds the signing secrets, the
# newest first, each with the time it stops being used (null: current) during a rotation.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("events", Json, nullable=False),  # event types; empty: every event
    sa.Column("secrets", Json, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index(None, "created_at", "id"),
)

# One message to one endpoint, retried until delivered, failed or cancelled. (endpoint, msg_id) is
# the key, so an event emitted twice with the same id (by two workers) is delivered once.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("endpoint_id", sa.Text, primary_key=True),
    sa.Column("msg_id", sa.Text, primary_key=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # pending, delivered, failed, cancelled
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Index(None, "state", "next_attempt_at"),
    sa.Index(None, "endpoint_id", "created_at"),
)
