"""`invoke db.*` (runbook section 11): where the schema is against the running release, its
migrations applied, and a reset that never touches production."""

from __future__ import annotations

from pipelines.operations.common import resolve_target
from pipelines.targets.base import MigrationStatus, Target, TargetError


def status_text(env: str, status: MigrationStatus) -> str:
    pending = ", ".join(status.pending) or "none"
    return (
        f"{env}: schema at {status.current or 'nothing'}, release head {status.head}, "
        f"pending: {pending}"
    )


def db_status(env: str, target: str | Target = "local") -> str:
    operations = resolve_target(target).environment(env).operations
    return status_text(env, operations.migration_status())


def db_migrate(env: str, target: str | Target = "local") -> str:
    status = resolve_target(target).environment(env).operations.migrate()
    return f"{env}: migrated to {status.current}"


def db_reset(env: str, target: str | Target = "local") -> str:
    """Non-production only, whatever the flags say."""
    if env == "production":
        raise TargetError("db.reset refuses production; nothing was changed")
    status = resolve_target(target).environment(env).operations.reset_database()
    return f"{env}: migrated to {status.current}"
