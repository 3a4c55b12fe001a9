"""Retention of local snapshots, from the spec (runbook section 6).

- daily: kept `backupRetentionDays` (>= 7) days; weekly: `weeklyBackupRetentionWeeks`
  (>= 5) weeks; safety: like daily;
- pre-deploy: the newest `preDeploySnapshotsKept`;
- manual: never pruned;
- the newest snapshot of each kind that still verifies is never deleted, whatever its age;
- `.partial-*` directories older than an hour are leftovers of a crash and go;
- a base backup whose deletion would open a gap in point-in-time recovery is kept, and WAL
  is kept from the oldest kept base backup on (wal_retention.py).

An expiry is the later of the one recorded at creation and the one today's spec gives, so
raising a retention setting never shortens what was promised.
"""

from __future__ import annotations

import calendar
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.backups.retention import KINDS, rule
from pipelines.ledger import Ledger
from pipelines.targets.local.backups.manifest import (
    PARTIAL,
    BackupError,
    SnapshotManifest,
    backups_dir,
    list_snapshots,
    tree_size,
    verify_snapshot,
)
from pipelines.targets.local.backups.wal_retention import (
    WalPrune,
    delete_wal,
    guard_chain,
    plan_wal,
)
from pipelines.targets.local.backups.window import recovery_window
from pipelines.targets.local.ledger import FileLedger

if TYPE_CHECKING:
    from pipelines.targets.local.contract import LocalEnv

LEFTOVER_AGE_S = 3600


@dataclass(frozen=True)
class PruneDecision:
    snapshot: SnapshotManifest
    keep: bool
    reason: str


@dataclass
class PrunePlan:
    environment: str
    dry_run: bool
    decisions: list[PruneDecision] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    wal: WalPrune = field(default_factory=lambda: WalPrune(None, None))

    @property
    def delete(self) -> list[SnapshotManifest]:
        return [d.snapshot for d in self.decisions if not d.keep]

    @property
    def keep(self) -> list[SnapshotManifest]:
        return [d.snapshot for d in self.decisions if d.keep]

    def render(self) -> str:
        mode = "dry run: nothing deleted" if self.dry_run else "applied"
        lines = [f"prune {self.environment} ({mode})"]
        for decision in self.decisions:
            verb = "keep  " if decision.keep else ("DELETE" if not self.dry_run else "would delete")
            lines.append(f"  {verb:<12} {decision.snapshot.id:<48} {decision.reason}")
        for path in self.leftovers:
            verb = "DELETE" if not self.dry_run else "would delete"
            lines.append(f"  {verb:<12} {path.name:<48} partial snapshot left by a crash")
        if self.wal.paths:
            verb = "DELETE" if not self.dry_run else "would delete"
            lines.append(
                f"  {verb:<12} {'WAL before ' + str(self.wal.oldest_needed):<48} "
                f"{len(self.wal.paths)} files no kept base backup needs"
            )
        freed = sum(d.snapshot.size_bytes for d in self.decisions if not d.keep)
        lines.append(
            f"  {len(self.keep)} kept, {len(self.delete)} "
            f"{'to delete' if self.dry_run else 'deleted'} ({freed / 1e6:.1f} MB of dumps)"
        )
        if self.dry_run and (self.delete or self.leftovers):
            lines.append(f"  apply with: invoke backup.prune --env {self.environment} --apply")
        return "\n".join(lines)


def plan(env: LocalEnv, now: float | None = None) -> PrunePlan:
    """What retention keeps and deletes now; reads only."""
    now = time.time() if now is None else now
    result = PrunePlan(env.name, dry_run=True)
    protected: dict[str, str] = {}
    for kind in KINDS:
        failures: list[str] = []
        for manifest in reversed(list_snapshots(env, kind)):
            try:
                verify_snapshot(manifest, physical=False)
            except BackupError as exc:
                failures.append(str(exc))
                continue
            note = f" ({len(failures)} newer fail verification)" if failures else ""
            protected[manifest.id] = f"newest verified {kind} snapshot{note}"
            break
    pre_deploy_kept = {
        m.id for m in list_snapshots(env, "pre-deploy")[-env.spec.pre_deploy_snapshots_kept :]
    }
    for manifest in list_snapshots(env):
        result.decisions.append(_decide(env, manifest, now, protected, pre_deploy_kept))
    result.decisions = guard_chain(recovery_window(env), result.decisions)
    result.wal = plan_wal(env, {d.snapshot.id for d in result.decisions if d.keep})
    root = backups_dir(env)
    if root.is_dir():
        result.leftovers = sorted(
            p
            for p in root.iterdir()
            if p.name.startswith(PARTIAL) and now - p.stat().st_mtime > LEFTOVER_AGE_S
        )
    return result


def parse_iso(value: str) -> float:
    return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))


def _decide(
    env: LocalEnv,
    manifest: SnapshotManifest,
    now: float,
    protected: dict[str, str],
    pre_deploy_kept: set[str],
) -> PruneDecision:
    if manifest.id in protected:
        return PruneDecision(manifest, True, protected[manifest.id])
    keep, reason = rule(
        env.spec,
        manifest.kind,
        manifest.created_epoch,
        now,
        recorded_expiry=parse_iso(manifest.expires_at) if manifest.expires_at else None,
        among_newest_pre_deploy=manifest.id in pre_deploy_kept,
    )
    return PruneDecision(manifest, keep, reason)


def prune(
    env: LocalEnv, dry_run: bool, *, now: float | None = None, ledger: Ledger | None = None
) -> PrunePlan:
    """Apply retention. With `dry_run` nothing is deleted and the plan says what would be."""
    result = plan(env, now)
    result.dry_run = dry_run
    if dry_run:
        return result
    for manifest in result.delete:
        size = manifest.size_bytes + (tree_size(manifest.base) if manifest.base.exists() else 0)
        # The manifest goes first: a crash mid-delete leaves an unlisted leftover, never a
        # listed snapshot with missing files.
        (manifest.path / "manifest.json").unlink(missing_ok=True)
        shutil.rmtree(manifest.path, ignore_errors=True)
        result.deleted.append(manifest.id)
        (ledger or FileLedger()).append(
            "snapshot-pruned", env.name, id=manifest.id, snapshot_kind=manifest.kind, bytes=size
        )
    for path in result.leftovers:
        shutil.rmtree(path, ignore_errors=True)
    if result.wal.paths:
        freed = result.wal.size_bytes
        delete_wal(result.wal)
        (ledger or FileLedger()).append(
            "wal-pruned",
            env.name,
            files=len(result.wal.paths),
            bytes=freed,
            oldest_kept=result.wal.oldest_needed,
            needed_by=result.wal.by_backup,
        )
    return result
