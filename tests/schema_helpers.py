"""Revisions written into a copy of `service/migrations`, never into the real one: the
tests of step 3, of readiness across schema changes, and of releases with a migration."""

from __future__ import annotations

import shutil
from pathlib import Path

from service.migrate import MIGRATIONS

REVISION = '''"""{message}

Revision ID: {rev}
Revises: {down}
Create Date: 2026-12-03 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None
{phase_line}


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''

# A nullable column, then its removal: the smallest expand and its contract.
ADD_NOTE = 'op.add_column("items", sa.Column("note", sa.Text(), nullable=True))'
DROP_NOTE = 'op.drop_column("items", "note")'


def copy_migrations(destination: Path) -> Path:
    shutil.copytree(MIGRATIONS, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def revision_text(
    body: str, phase: str | None = "expand", rev: str = "0002", down: str = "0001"
) -> str:
    indented = "\n".join(f"    {line}" for line in body.strip().splitlines())
    return REVISION.format(
        message=f"test revision {rev}",
        rev=rev,
        down=down,
        phase_line=f'phase = "{phase}"' if phase else "",
        body=indented,
    )


def add_revision(
    migrations: Path,
    body: str,
    phase: str | None = "expand",
    rev: str = "0002",
    down: str = "0001",
) -> Path:
    path = migrations / "versions" / f"{rev}_test.py"
    path.write_text(revision_text(body, phase, rev, down))
    return path
