"""Revisions written into a copy of `service/migrations`, never into the real one: the
tests of step 3, of readiness across schema changes, and of releases with a migration."""

from __future__ import annotations

import shutil
from pathlib import Path

from alembic.script import ScriptDirectory

from service.migrate import MIGRATIONS, alembic_config, expected_head


def _oldest_serving(revision: str) -> str:
    """The `serves_from` that migrating to `revision` records (see service/migrate.py):
    back through expand revisions to the first contract, or to the first revision."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    down = script.down_revision if isinstance(script.down_revision, str) else None
    if getattr(script.module, "phase", None) == "expand" and down is not None:
        return _oldest_serving(down)
    return revision


# Test revisions go on top of the real head, whatever it is: the next two ids after it. An
# expand on HEAD is served by code as old as HEAD_SERVES_FROM.
HEAD = expected_head()
HEAD_SERVES_FROM = _oldest_serving(HEAD)
NEXT_REV = f"{int(HEAD) + 1:04d}"
LATER_REV = f"{int(HEAD) + 2:04d}"

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
    body: str, phase: str | None = "expand", rev: str = NEXT_REV, down: str = HEAD
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
    rev: str = NEXT_REV,
    down: str = HEAD,
) -> Path:
    path = migrations / "versions" / f"{rev}_test.py"
    path.write_text(revision_text(body, phase, rev, down))
    return path
