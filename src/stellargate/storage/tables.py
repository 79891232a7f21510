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
