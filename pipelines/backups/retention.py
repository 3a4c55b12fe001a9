"""Retention rules for snapshots, the same on every target (runbook section 6).

- daily: kept `backupRetentionDays` (>= 7) days; weekly: `weeklyBackupRetentionWeeks`
  (>= 5) weeks; safety: like daily;
- pre-deploy: the newest `preDeploySnapshotsKept`;
- manual: never pruned.

Each target adds what only it knows: which snapshot is the newest one that still verifies
(never deleted, whatever its age), and how to delete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.spec import EnvironmentSpec

KINDS = ("pre-deploy", "daily", "weekly", "manual", "safety")
DAY_S = 86_400


def retention_for(spec: EnvironmentSpec, kind: str) -> float | None:
    return {
        "daily": spec.backup_retention_days * DAY_S,
        "weekly": spec.weekly_backup_retention_weeks * 7 * DAY_S,
        "safety": spec.backup_retention_days * DAY_S,
    }.get(kind)


def rule(
    spec: EnvironmentSpec,
    kind: str,
    created_epoch: float,
    now: float,
    *,
    recorded_expiry: float | None = None,
    among_newest_pre_deploy: bool = False,
) -> tuple[bool, str]:
    """Keep or not, and why, for a snapshot that is not the newest verified of its kind.
    The same rules for local snapshots and RDS snapshots."""
    if kind == "manual":
        return True, "manual snapshots are never pruned"
    if kind == "pre-deploy":
        n = spec.pre_deploy_snapshots_kept
        if among_newest_pre_deploy:
            return True, f"one of the newest {n} pre-deploy snapshots"
        return False, f"older than the newest {n} pre-deploy snapshots"
    keep_s = retention_for(spec, kind)
    if keep_s is None:
        return True, f"unknown kind {kind!r}: kept"
    expiry = max(created_epoch + keep_s, recorded_expiry or 0.0)
    days = keep_s / 86_400
    if now < expiry:
        return True, f"within retention ({days:g} days)"
    return False, f"past retention ({days:g} days)"
