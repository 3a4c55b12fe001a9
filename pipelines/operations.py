"""On-call operations: rollback (runbook section 8), flags (section 9), database (section 11)
and the incident timeline (section 8's postmortem)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipelines.ledger import FileLedger, Ledger
from pipelines.targets import get_target
from pipelines.targets.base import TargetError
from pipelines.targets.local.environment import LocalEnvironment

FLAG_VALUES = {"true": True, "false": False}


def local(env: str) -> LocalEnvironment:
    environment = get_target("local").environment(env)
    assert isinstance(environment, LocalEnvironment)
    return environment


def rollback(
    env: str, to_release: str | None, target: str = "local", ledger: Ledger | None = None
) -> str:
    environment = get_target(target).environment(env)
    before = environment.current_release()
    result = environment.rollback(to_release)
    (ledger or FileLedger()).append(
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


def list_flags(env: str) -> list[dict[str, Any]]:
    """The flags in force, as the running replicas report them."""
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


def set_flags(env: str, assignments: list[str], ledger: Ledger | None = None) -> str:
    from service.flags import REGISTRY

    known = {flag.name for flag in REGISTRY}
    changes: dict[str, bool] = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        name = name.strip().upper().removeprefix("FLAG_")
        if name not in known:
            raise TargetError(f"unknown flag {name!r}; known: {', '.join(sorted(known))}")
        if value.strip().lower() not in FLAG_VALUES:
            raise TargetError(f"{assignment!r}: the value must be true or false")
        changes[name] = FLAG_VALUES[value.strip().lower()]
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
    applied = ", ".join(f"{k}={'true' if v else 'false'}" for k, v in changes.items())
    return f"{env}: {applied} applied by a rolling restart in {result.duration_s:.1f} s"


def db_status(env: str) -> str:
    environment = local(env)
    artifact = (environment.desired() or {}).get("release", {}).get("artifact")
    status = environment.database.migration_status(artifact)
    pending = ", ".join(status.pending) or "none"
    return (
        f"{env}: schema at {status.current or 'nothing'}, release head {status.head}, "
        f"pending: {pending}"
    )


def db_migrate(env: str) -> str:
    environment = local(env)
    artifact = (environment.desired() or {}).get("release", {}).get("artifact")
    status = environment.database.migrate(artifact)
    return f"{env}: migrated to {status.current}"


def db_reset(env: str) -> str:
    """Non-production only, whatever the flags say (runbook section 11)."""
    if env == "production":
        raise TargetError("db.reset refuses production; nothing was changed")
    environment = local(env)
    environment.database.reset()
    return db_migrate(env)


def parse_since(since: str) -> float:
    units = {"m": 60, "h": 3600, "d": 86400}
    if since and since[-1] in units and since[:-1].isdigit():
        return time.time() - int(since[:-1]) * units[since[-1]]
    try:
        parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise TargetError(
            f"--since {since!r}: use an ISO time (2026-11-28T09:00) or an age like 30m, 6h, 2d"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def timeline(env: str, since: str, ledger: Ledger | None = None) -> str:
    start = parse_since(since)
    events: list[tuple[float, str, str]] = []
    for entry in (ledger or FileLedger()).entries(env):
        if entry["at"] < start:
            continue
        events.append((entry["at"], entry["kind"], _describe(entry)))
    history = local(env).layout.alarms / "history.jsonl"
    for line in _lines(history):
        at = datetime.fromisoformat(line["timestamp"]).timestamp()
        if at >= start:
            events.append(
                (
                    at,
                    "alarm",
                    f"{line['alarm']} {line['old_state']} -> "
                    f"{line['new_state']}: {line['reason'][:160]}",
                )
            )
    events.sort()
    header = [
        f"## Timeline: {env} since {_iso(start)}",
        "",
        "| time (UTC) | event | detail |",
        "|---|---|---|",
    ]
    rows = [f"| {_iso(at)} | {kind} | {detail.replace('|', '/')} |" for at, kind, detail in events]
    return "\n".join(header + (rows or ["| | | nothing recorded in this window |"])) + "\n"


def _describe(entry: dict[str, Any]) -> str:
    kind = entry["kind"]
    outcome = "ok" if entry.get("ok", True) else "FAILED"
    if kind == "deploy":
        step = f" at step {entry['failed_step']}" if entry.get("failed_step") else ""
        return f"deploy {entry.get('release')} {outcome}{step} by {entry.get('who')}"
    if kind == "rollback":
        return f"rollback {entry.get('previous')} -> {entry.get('release')} {outcome}"
    if kind == "flag":
        return f"flags {entry.get('changes')} {outcome} by {entry.get('who')}"
    detail = {k: v for k, v in entry.items() if k not in {"at", "at_iso", "kind", "env"}}
    return f"{kind} {json.dumps(detail, default=str)[:200]}"


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


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
