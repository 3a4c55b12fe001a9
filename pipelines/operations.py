"""On-call operations: rollback (runbook section 8), flags (section 9), database (section 11)
and the incident timeline (section 8's postmortem). Each takes a target: the local one is
handled here, the aws one in pipelines/operations_aws.py."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines.ledger import FileLedger, Ledger
from pipelines.operations_common import (
    alarm_event,
    flag_text,
    ledger_events,
    parse_flag_changes,
    parse_since,
    render_timeline,
    status_text,
)
from pipelines.targets import TARGETS, get_target
from pipelines.targets.base import Target, TargetError
from pipelines.targets.local.environment import LocalEnvironment


def local(env: str) -> LocalEnvironment:
    environment = get_target("local").environment(env)
    assert isinstance(environment, LocalEnvironment)
    return environment


def on_aws(target: str) -> bool:
    if target not in TARGETS:
        raise TargetError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    return target == "aws"


def rollback(
    env: str, to_release: str | None, target: str | Target = "local", ledger: Ledger | None = None
) -> str:
    """Roll back and record it in the target's ledger (S3 on AWS), failed or not."""
    from pipelines.deploy import ledger_for

    chosen = get_target(target) if isinstance(target, str) else target
    environment = chosen.environment(env)
    before = environment.current_release()
    result = environment.rollback(to_release)
    (ledger or ledger_for(chosen)).append(
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


def schema_warning(environment: Any, release_id: str) -> list[str]:
    """The code went back; if the schema had moved since that release, say how to restore."""
    if not isinstance(environment, LocalEnvironment):
        return []
    artifacts = {r["id"]: r["artifact"] for r in environment.history()}
    artifact = artifacts.get(release_id)
    if artifact is None:
        return []
    status = environment.database.migration_status(artifact)
    if status.current == status.head:
        return []
    from pipelines import backups

    snapshots = [s for s in backups.list_snapshots(environment) if s.kind == "pre-deploy"]
    command = (
        environment.restore_command(snapshots[-1].id)
        if snapshots
        else f"invoke backup.list --env {environment.name}"
    )
    return [
        f"the schema is at {status.current} but {release_id} expects {status.head}: the "
        f"data was not touched. If the data must go back too: {command}"
    ]


def list_flags(env: str, target: str = "local") -> list[dict[str, Any]]:
    """The flags in force: as the running replicas report them, or on AWS as the service's
    current task definition sets them."""
    if on_aws(target):
        from pipelines import operations_aws

        return operations_aws.list_flags(env)
    import httpx

    from pipelines.targets.local.runtime import NAMES

    environment = local(env)
    token = environment.secrets.get(NAMES.metrics)
    response = httpx.get(
        f"{environment.url}/api/_internal/flags",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json()["flags"])


def flags_table(env: str, target: str = "local") -> str:
    lines = []
    for flag in list_flags(env, target):
        state = "on " if flag["enabled"] else "off"
        mark = " (overridden)" if flag["overridden"] else ""
        lines.append(f"{flag['name']:<28} {state}{mark:<13} {flag['description']}")
    return "\n".join(lines)


def set_flags(
    env: str, assignments: list[str], ledger: Ledger | None = None, target: str = "local"
) -> str:
    if on_aws(target):
        from pipelines import operations_aws

        return operations_aws.set_flags(env, assignments, ledger=ledger)
    changes = parse_flag_changes(assignments)
    environment = local(env)
    desired = environment.desired() or {}
    flags = {**desired.get("flags", {}), **changes}
    result = environment.restart(flags=flags)
    (ledger or FileLedger()).append(
        "flag", env, changes=changes, ok=result.ok, release=result.release, reason=result.reason
    )
    if not result.ok:
        raise TargetError(
            f"flag change not applied: {result.reason}; the previous flags keep serving"
        )
    return f"{env}: {flag_text(changes)} applied by a rolling restart in {result.duration_s:.1f} s"


def db_status(env: str, target: str = "local") -> str:
    if on_aws(target):
        from pipelines import operations_aws

        return operations_aws.db_status(env)
    environment = local(env)
    artifact = (environment.desired() or {}).get("release", {}).get("artifact")
    return status_text(env, environment.database.migration_status(artifact))


def db_migrate(env: str, target: str = "local") -> str:
    if on_aws(target):
        from pipelines import operations_aws

        return operations_aws.db_migrate(env)
    environment = local(env)
    artifact = (environment.desired() or {}).get("release", {}).get("artifact")
    status = environment.database.migrate(artifact)
    return f"{env}: migrated to {status.current}"


def db_reset(env: str, target: str = "local") -> str:
    """Non-production only, whatever the flags say (runbook section 11)."""
    if env == "production":
        raise TargetError("db.reset refuses production; nothing was changed")
    if on_aws(target):
        from pipelines import operations_aws

        return operations_aws.db_reset(env)
    environment = local(env)
    environment.database.reset()
    return db_migrate(env)


def timeline(env: str, since: str, ledger: Ledger | None = None, target: str = "local") -> str:
    if on_aws(target):
        from pipelines import operations_aws

        return operations_aws.timeline(env, since, ledger=ledger)
    start = parse_since(since)
    events = ledger_events(ledger or FileLedger(), env, start)
    for line in _lines(local(env).layout.alarms / "history.jsonl"):
        at = datetime.fromisoformat(line["timestamp"]).timestamp()
        if at >= start:
            events.append(
                alarm_event(at, line["alarm"], line["old_state"], line["new_state"], line["reason"])
            )
    return render_timeline(env, start, events)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
