"""refresh tokens: when their session began

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
# "expand" (additive: old code still serves on it) or "contract" (drops, renames, narrows or
# tightens; deployable once production runs code past the expand it completes). Step 3 checks
# it against the SQL. See docs/RUNBOOK.md, "Changing the schema".
# Nullable without a default: the release before writes NULL here, and this code then takes
# the family's oldest issued_at as its start (security/refresh.py).
phase = "expand"


def upgrade() -> None:
    # ADD COLUMN is instant but takes an exclusive lock: give up rather than queue every
    # login and refresh behind a long transaction (the migration can simply run again).
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '30s'")
    op.add_column(
        "refresh_tokens",
        sa.Column("session_started_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("refresh_tokens", "session_started_at")
