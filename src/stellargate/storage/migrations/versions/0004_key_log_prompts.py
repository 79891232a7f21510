"""Keys carry a prompt-logging switch (issue #7); every existing key starts with it off.

Revision ID: 0004_key_log_prompts
Revises: 0003_platform
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_key_log_prompts"
down_revision: str | None = "0003_platform"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # The server default fills the rows that exist (NOT NULL needs a value) and keeps logging off
    # for keys written by an older gateway still running beside this one during a rolling upgrade.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("log_prompts", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("log_prompts")
