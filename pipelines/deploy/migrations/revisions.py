"""The revisions of a migrations directory, oldest first, with the phase each declares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MigrationCheckError(RuntimeError):
    """The migrations cannot be checked (several heads, a broken revision...)."""


@dataclass(frozen=True)
class RevisionInfo:
    revision: str
    down_revision: str | None
    description: str
    path: str
    phase: str | None  # `phase = "expand" | "contract"` in the revision module


def default_migrations() -> Path:
    from service.migrate import MIGRATIONS

    return MIGRATIONS


def _script_directory(migrations: Path) -> Any:
    from alembic.script import ScriptDirectory

    from service.migrate import alembic_config

    config = alembic_config()
    config.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(config)


def revisions(migrations: Path) -> list[RevisionInfo]:
    """Every revision, oldest first. More than one head is an error: merge them first."""
    script = _script_directory(migrations)
    heads = script.get_heads()
    if len(heads) > 1:
        raise MigrationCheckError(
            f"{migrations} has {len(heads)} heads ({', '.join(heads)}); "
            "merge them with `alembic merge` before deploying"
        )
    found = []
    for rev in reversed(list(script.walk_revisions())):
        down = rev.down_revision
        found.append(
            RevisionInfo(
                revision=str(rev.revision),
                down_revision=str(down) if isinstance(down, str) else None,
                description=str(rev.doc).strip(),
                path=str(rev.path),
                phase=declared_phase(rev.module),
            )
        )
    return found


def declared_phase(module: Any) -> str | None:
    phase = getattr(module, "phase", None)
    return phase if isinstance(phase, str) else None
