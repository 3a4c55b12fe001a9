"""What `invoke backup.*` and `invoke drill.restore` do, as functions that print and return
an exit code. Every failure says what went wrong, where, and what to do next."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines import backup_ops_aws, backups
from pipelines.backup_restore import ConfirmationRequired
from pipelines.backups import BackupError
from pipelines.drill_report import REPORTS
from pipelines.targets.base import TargetError, check_environment_name
from pipelines.targets.local.environment import LocalEnvironment

OK, FAILED, REFUSED = 0, 1, 2


def _env(name: str) -> LocalEnvironment:
    return LocalEnvironment(check_environment_name(name))


def guarded(action: Callable[[], int], what: str) -> int:
    """Run a task body, turning the errors it expects into one clear line and exit 1."""
    try:
        return action()
    except (BackupError, TargetError) as exc:
        print(f"{what}: {exc}")
        return FAILED


def check_target(target: str) -> None:
    if target not in ("local", "aws"):
        raise TargetError(f"--target must be local or aws, not {target!r}")


def snapshot(
    env: str,
    kind: str,
    reason: str = "",
    deploy_id: str = "",
    physical: bool = True,
    target: str = "local",
) -> int:
    def go() -> int:
        check_target(target)
        if target == "aws":
            return backup_ops_aws.snapshot(env, kind, reason, deploy_id)
        manifest = backups.take_snapshot(
            _env(env), kind, reason=reason, deploy_id=deploy_id, physical=physical, log=print
        )
        print(f"{manifest.id}\n  {manifest.path}")
        return OK

    return guarded(go, "backup.snapshot")


def _age(epoch: float) -> str:
    seconds = max(0.0, time.time() - epoch)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def table(env: str, kind: str | None = None, as_json: bool = False) -> str:
    """The snapshots of `env` (or both environments), newest first."""
    rows: list[dict[str, Any]] = []
    names = ("staging", "production") if env in ("", "all") else (check_environment_name(env),)
    for name in names:
        rows += [
            backups.manifest_dict(m) for m in reversed(backups.list_snapshots(_env(name), kind))
        ]
    if as_json:
        return json.dumps(rows, indent=2, default=str)
    if not rows:
        return f"no snapshots (take one: invoke backup.snapshot --env {names[0]} --kind manual)"
    header = (
        f"{'id':<46} {'kind':<10} {'age':>8} {'dump MB':>8} {'rows':>10} {'physical':>8}  "
        f"{'expires':<20} schema head"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        physical = "yes" if row.get("physical") else "-"
        lines.append(
            f"{row['id']:<46} {row['kind']:<10} {_age(row['created_epoch']):>8} "
            f"{row['size_bytes'] / 1e6:>8.1f} {row['rows']:>10,} {physical:>8}  "
            f"{row['expires_at'] or 'by count/never':<20} {row['schema_head'] or '-'}"
        )
    return "\n".join(lines)


def show(env: str, kind: str | None = None, as_json: bool = False, target: str = "local") -> int:
    def go() -> int:
        check_target(target)
        if target == "aws":
            print(backup_ops_aws.table(env, kind, as_json))
        else:
            print(table(env, kind, as_json))
        return OK

    return guarded(go, "backup.list")


def prune(env: str, apply: bool, target: str = "local") -> int:
    """Retention; a dry run for production unless `apply`, applied for staging."""

    def go() -> int:
        check_target(target)
        dry_run = not apply and env == "production"
        if target == "aws":
            return backup_ops_aws.prune(env, dry_run)
        environment = _env(env)
        print(backups.prune(environment, dry_run=dry_run).render())
        return OK

    return guarded(go, "backup.prune")


def restore(env: str, snapshot_id: str, into: str, yes: bool, source: str = "") -> int:
    def go() -> int:
        if not snapshot_id:
            raise BackupError(
                f"--snapshot is required; see invoke backup.list --env {source or env}"
            )
        result = backups.restore(
            _env(env),
            snapshot_id,
            into,
            confirm=yes,
            source=_env(source) if source else None,
            log=print,
        )
        where = f"{result.environment}/{result.database}"
        print(f"restored {result.snapshot_id} into {where} in {result.seconds:.1f} s")
        return OK

    try:
        return go()
    except ConfirmationRequired as exc:
        print(f"backup.restore: {exc}")
        return REFUSED
    except (BackupError, TargetError) as exc:
        print(f"backup.restore: {exc}")
        return FAILED


def daily(env: str) -> int:
    """The scheduled job (cron or CI): a daily snapshot, then retention applied."""

    def go() -> int:
        environment = _env(env)
        manifest = backups.take_snapshot(environment, "daily", reason="scheduled daily", log=print)
        print(f"{manifest.id}\n  {manifest.path}")
        print(backups.prune(environment, dry_run=False).render())
        return OK

    return guarded(go, "backup.daily")


def drill(
    env: str, source: str, snapshot_id: str = "", reports: str = "", target: str = "local"
) -> int:
    def go() -> int:
        from pipelines import drills

        check_target(target)
        if target == "aws":  # a temporary instance beside the source's own
            return backup_ops_aws.drill(source or env, snapshot_id)

        report = drills.run_drill(
            _env(env),
            _env(source or env),
            snapshot=snapshot_id or None,
            reports_dir=Path(reports) if reports else REPORTS,
        )
        return OK if report.ok else FAILED

    return guarded(go, "drill.restore")
