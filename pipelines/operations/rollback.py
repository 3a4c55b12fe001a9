"""`invoke rollback` (runbook section 8): the code goes back, health-gated; the data never
does by itself. Recorded in the target's ledger, failed or not."""

from __future__ import annotations

from pipelines.ledger import Ledger
from pipelines.operations.common import held, resolve_target
from pipelines.targets.base import Environment, Target, TargetError


def rollback(
    env: str, to_release: str | None, target: str | Target = "local", ledger: Ledger | None = None
) -> str:
    chosen = resolve_target(target)
    environment = chosen.environment(env)
    book = ledger or chosen.ledger()
    with held(chosen, env, f"rollback {env} to {to_release or 'the release before'}"):
        before = environment.current_release()
        result = environment.rollback(to_release)
    book.append(
        "rollback", env, release=result.release, previous=before, ok=result.ok, reason=result.reason
    )
    if not result.ok:
        raise TargetError(
            f"rollback to {result.release} {result.state.value}: {result.reason}; "
            f"{before} keeps serving"
        )
    lines = [
        f"{env}: rolled back from {before} to {result.release} in "
        f"{result.duration_s:.1f} s (health-gated)"
    ]
    lines += schema_warning(environment, result.release)
    return "\n".join(lines)


def schema_warning(environment: Environment, release_id: str) -> list[str]:
    """The code went back across an expand; say so, and how the data would go back too."""
    behind = environment.operations.schema_behind(release_id)
    if behind is None:
        return []
    snapshots = [s for s in environment.backups.list() if s.kind == "pre-deploy"]
    command = (
        environment.restore_command(snapshots[0].id)
        if snapshots
        else f"invoke backup.list --env {environment.name}"
    )
    return [f"{behind}; the data was not touched. If the data must go back too: {command}"]
