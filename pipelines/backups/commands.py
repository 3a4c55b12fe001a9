"""What `invoke backup.*` and `invoke drill.restore` do, on any target: functions that print
and return an exit code. The work is the environment's `backups` capability; this module
reads the arguments, renders the answers and turns the errors into one clear line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.backups.report import REPORTS
from pipelines.targets import get_target
from pipelines.targets.base import (
    ENVIRONMENTS,
    ConfirmationNeeded,
    Environment,
    PruneOutcome,
    RecoveryWindow,
    SnapshotInfo,
    TargetError,
    check_environment_name,
)

OK, FAILED, REFUSED = 0, 1, 2


def environment(name: str, target: str = "local") -> Environment:
    return get_target(target).environment(check_environment_name(name))


def guarded(action: Callable[[], int], what: str) -> int:
    """Run a task body, turning the errors it expects into one clear line and an exit code:
    2 when a confirmation is missing, 1 for any other failure."""
    try:
        return action()
    except ConfirmationNeeded as exc:
        print(f"{what}: {exc}")
        return REFUSED
    except TargetError as exc:
        print(f"{what}: {exc}")
        return FAILED


def snapshot(
    env: str,
    kind: str,
    reason: str = "",
    deploy_id: str = "",
    physical: bool = True,
    target: str = "local",
) -> int:
    def go() -> int:
        taken = environment(env, target).backups.take(
            kind, reason=reason, deploy_id=deploy_id, physical=physical
        )
        print(f"{taken.id}\n  {taken.location}")
        return OK

    return guarded(go, "backup.snapshot")


def _age(epoch: float) -> str:
    seconds = max(0.0, time.time() - epoch)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def _or_dash(value: object) -> str:
    return "-" if value in (None, "") else str(value)


def render_snapshots(snapshots: Sequence[SnapshotInfo]) -> str:
    header = (
        f"{'id':<64} {'kind':<10} {'age':>8} {'status':<10} {'dump MB':>8} {'rows':>10} "
        f"{'physical':>8}  {'expires':<20} {'schema':<8} deploy id"
    )
    lines = [header, "-" * len(header)]
    for s in snapshots:
        size = f"{s.size_bytes / 1e6:.1f}" if s.size_bytes is not None else "-"
        rows = f"{s.rows:,}" if s.rows is not None else "-"
        lines.append(
            f"{s.id:<64} {s.kind or '-':<10} {_age(s.created_epoch):>8} {s.status:<10} "
            f"{size:>8} {rows:>10} {'yes' if s.physical else '-':>8}  "
            f"{s.expires_at or 'by count/never':<20} {_or_dash(s.schema_head):<8} "
            f"{_or_dash(s.deploy_id)}"
        )
    return "\n".join(lines)


def table(env: str, kind: str | None = None, as_json: bool = False, target: str = "local") -> str:
    """The snapshots of `env` (or both environments), newest first."""
    names = ENVIRONMENTS if env in ("", "all") else (check_environment_name(env),)
    found = [s for name in names for s in environment(name, target).backups.list(kind)]
    if as_json:
        return json.dumps([dict(s.record) for s in found], indent=2, default=str)
    if not found:
        aws = " --target aws" if target == "aws" else ""
        return (
            f"no snapshots (take one: invoke backup.snapshot --env {names[0]} --kind manual{aws})"
        )
    return render_snapshots(found)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 100):02d}Z"


def render_window(window: RecoveryWindow) -> str:
    """The point-in-time window of one environment, for people."""
    head = f"point-in-time recovery, {window.environment}"
    if window.earliest is None or window.latest is None:
        return f"{head}: nothing recoverable to a point in time yet ({window.basis})"
    lines = [
        f"{head}: from {_when(window.earliest)} to {_when(window.latest)}",
        f"  ({window.basis})",
    ]
    lines += [f"  GAP: {gap}" for gap in window.gaps]
    return "\n".join(lines)


def windows(env: str, target: str = "local") -> list[RecoveryWindow]:
    names = ENVIRONMENTS if env in ("", "all") else (check_environment_name(env),)
    return [environment(name, target).backups.window() for name in names]


def show(env: str, kind: str | None = None, as_json: bool = False, target: str = "local") -> int:
    def go() -> int:
        print(table(env, kind, as_json, target))
        found = windows(env, target)
        if as_json:
            print(json.dumps([dict(w.record) for w in found], indent=2, default=str))
        else:
            print("\n" + "\n".join(render_window(w) for w in found))
        return OK

    return guarded(go, "backup.list")


def render_prune(outcome: PruneOutcome) -> str:
    mode = "dry run: nothing deleted" if outcome.dry_run else "applied"
    where = f"{outcome.target}, " if outcome.target != "local" else ""
    lines = [f"prune {outcome.environment} ({where}{mode})"]
    verb = "would delete" if outcome.dry_run else "DELETE"
    for item in outcome.items:
        lines.append(f"  {'keep' if item.keep else verb:<12} {item.id:<48} {item.reason}")
    for name in outcome.leftovers:
        lines.append(f"  {verb:<12} {name:<48} partial snapshot left by a crash")
    freed = sum(item.size_bytes for item in outcome.deleted)
    lines.append(
        f"  {len(outcome.kept)} kept, {len(outcome.deleted)} "
        f"{'to delete' if outcome.dry_run else 'deleted'} ({freed / 1e6:.1f} MB of dumps)"
    )
    if outcome.dry_run and (outcome.deleted or outcome.leftovers):
        aws = " --target aws" if outcome.target == "aws" else ""
        lines.append(f"  apply with: invoke backup.prune --env {outcome.environment} --apply{aws}")
    return "\n".join(lines)


def prune(env: str, apply: bool, target: str = "local") -> int:
    """Retention; a dry run for production unless `apply`, applied for staging."""

    def go() -> int:
        dry_run = not apply and env == "production"
        print(render_prune(environment(env, target).backups.prune(dry_run)))
        return OK

    return guarded(go, "backup.prune")


def restore(
    env: str,
    snapshot_id: str,
    into: str,
    yes: bool,
    source: str = "",
    target: str = "local",
    to_time: str = "",
    to_lsn: str = "",
) -> int:
    if to_time or to_lsn:
        return restore_to_point(env, to_time, to_lsn, into, yes, snapshot_id, source, target)

    def go() -> int:
        if not snapshot_id:
            raise TargetError(
                f"--snapshot is required; see invoke backup.list --env {source or env}"
            )
        result = environment(env, target).backups.restore(
            snapshot_id,
            into,
            confirm=yes,
            source=environment(source, target) if source else None,
            log=print,
        )
        where = f"{result.environment}/{result.database}"
        print(f"restored {result.snapshot_id} into {where} in {result.seconds:.1f} s")
        return OK

    return guarded(go, "backup.restore")


def restore_to_point(
    env: str,
    to_time: str,
    to_lsn: str,
    into: str,
    yes: bool,
    snapshot_id: str = "",
    source: str = "",
    target: str = "local",
) -> int:
    """`backup.restore --to-time T` or `--to-lsn L`: a base backup, then WAL replay."""

    def go() -> int:
        if snapshot_id or source:
            raise TargetError(
                "--to-time/--to-lsn pick the base backup themselves: drop --snapshot and "
                "--source (a point-in-time restore is of the environment's own data)"
            )
        if to_time and to_lsn:
            raise TargetError("give --to-time or --to-lsn, not both")
        outcome = environment(env, target).backups.restore_to_point(
            to_time=to_time or None, to_lsn=to_lsn or None, into=into, confirm=yes, log=print
        )
        print(
            f"restored {outcome.environment} to {outcome.point} ({outcome.into}) in "
            f"{outcome.seconds:.1f} s: {outcome.location}; newest transaction in the copy: "
            f"{outcome.recovered_to or 'unknown'}"
        )
        if outcome.into == "scratch":
            print(
                f"  remove it when done: invoke backup.discard --env {env} --id {outcome.id}"
                + (" --target aws" if target == "aws" else "")
            )
        return OK

    return guarded(go, "backup.restore")


def discard(env: str, restore_id: str, target: str = "local") -> int:
    def go() -> int:
        environment(env, target).backups.discard_point_restore(restore_id)
        print(f"removed {restore_id} of {env}")
        return OK

    return guarded(go, "backup.discard")


def daily(env: str, target: str = "local") -> int:
    """The scheduled job (cron or CI): a daily snapshot, then retention applied."""

    def go() -> int:
        backups = environment(env, target).backups
        taken = backups.take("daily", reason="scheduled daily")
        print(f"{taken.id}\n  {taken.location}")
        print(render_prune(backups.prune(dry_run=False)))
        return OK

    return guarded(go, "backup.daily")


def drill(
    env: str, source: str, snapshot_id: str = "", reports: str = "", target: str = "local"
) -> int:
    """The restore drill of `source`'s data: into a scratch database of `env` locally, into
    a temporary instance beside the source's own on AWS."""

    def go() -> int:
        ok = environment(source or env, target).backups.drill(
            environment(env, target),
            snapshot_id or None,
            Path(reports) if reports else REPORTS,
        )
        return OK if ok else FAILED

    return guarded(go, "drill.restore")


def drill_pitr(env: str, reports: str = "", target: str = "local") -> int:
    """The point-in-time recovery drill of `env`: orders written, restored to a moment
    among them beside the live database, verified to the row."""

    def go() -> int:
        ok = environment(env, target).backups.pitr_drill(
            Path(reports) if reports else REPORTS, get_target(target).ledger()
        )
        return OK if ok else FAILED

    return guarded(go, "drill.pitr")
