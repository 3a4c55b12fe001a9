"""The local target's `backups` and `operations` capabilities (see targets/base.py).

Each wraps one environment and turns the local helpers' records and errors into the
protocol's: `SnapshotInfo`, `PruneOutcome`, `RestoreOutcome`, and `TargetError` for anything
the helpers raise as `BackupError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pipelines.targets.base import (
    AlarmTransition,
    ConfirmationNeeded,
    MigrationStatus,
    PointInTimeOutcome,
    PruneItem,
    PruneOutcome,
    RecoveryWindow,
    RestoreOutcome,
    RolloutResult,
    RotationOutcome,
    ServerMetrics,
    SnapshotInfo,
    TargetError,
)
from pipelines.targets.local.backups.manifest import (
    BackupError,
    SnapshotManifest,
    list_snapshots,
)
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.runtime import ALIASES, NAMES
from pipelines.targets.local.secrets import SecretStoreError

if TYPE_CHECKING:
    from pipelines.ledger import Ledger
    from pipelines.targets.base import Environment
    from pipelines.targets.local.contract import LocalEnv

Log = Callable[[str], None]


@contextmanager
def _as_target_errors() -> Iterator[None]:
    from pipelines.targets.local.backups.restore import ConfirmationRequired

    try:
        yield
    except ConfirmationRequired as exc:
        raise ConfirmationNeeded(str(exc)) from None
    except BackupError as exc:
        raise TargetError(str(exc)) from None


def snapshot_info(manifest: SnapshotManifest) -> SnapshotInfo:
    from pipelines.targets.local.backups.snapshot import manifest_dict

    return SnapshotInfo(
        id=manifest.id,
        kind=manifest.kind,
        created_epoch=manifest.created_epoch,
        location=manifest.directory,
        status="verified",
        size_bytes=manifest.size_bytes,
        rows=manifest.rows(),
        physical=bool(manifest.physical),
        expires_at=manifest.expires_at,
        schema_head=manifest.schema_head,
        deploy_id=manifest.deploy_id,
        record=manifest_dict(manifest),
    )


class LocalBackups:
    def __init__(self, env: LocalEnv, log: Log = print) -> None:
        self.env = env
        self.log = log

    def take(
        self, kind: str, reason: str = "", deploy_id: str = "", physical: bool = True
    ) -> SnapshotInfo:
        from pipelines.targets.local.backups.snapshot import take_snapshot

        with _as_target_errors():
            manifest = take_snapshot(
                self.env, kind, reason=reason, deploy_id=deploy_id, physical=physical, log=self.log
            )
        return snapshot_info(manifest)

    def list(self, kind: str | None = None) -> list[SnapshotInfo]:
        with _as_target_errors():
            return [snapshot_info(m) for m in reversed(list_snapshots(self.env, kind))]

    def prune(self, dry_run: bool) -> PruneOutcome:
        from pipelines.targets.local.backups.retention import prune

        with _as_target_errors():
            plan = prune(self.env, dry_run=dry_run)
        return PruneOutcome(
            environment=self.env.name,
            target="local",
            dry_run=dry_run,
            items=[
                PruneItem(d.snapshot.id, d.keep, d.reason, d.snapshot.size_bytes)
                for d in plan.decisions
            ]
            + (
                [
                    PruneItem(
                        f"WAL before {plan.wal.oldest_needed}",
                        False,
                        f"{len(plan.wal.paths)} files no kept base backup "
                        f"(oldest: {plan.wal.by_backup}) needs",
                        plan.wal.size_bytes,
                    )
                ]
                if plan.wal.paths
                else []
            ),
            leftovers=[path.name for path in plan.leftovers],
        )

    def restore(
        self,
        snapshot_id: str,
        into: str,
        *,
        confirm: bool,
        source: Environment | None = None,
        log: Log = print,
    ) -> RestoreOutcome:
        from pipelines.targets.local.backups.restore import restore

        with _as_target_errors():
            result = restore(
                self.env,
                snapshot_id,
                into,
                confirm,
                source=cast("LocalEnv", source) if source is not None else None,
                log=log,
            )
        return RestoreOutcome(
            result.snapshot_id, result.environment, result.database, result.seconds
        )

    def drill(self, into: Environment, snapshot_id: str | None, reports_dir: Path) -> bool:
        """Restore this environment's data into a scratch database of `into`'s cluster."""
        from pipelines.targets.local.backups.drill import run_drill

        with _as_target_errors():
            report = run_drill(
                cast("LocalEnv", into),
                self.env,
                snapshot=snapshot_id,
                reports_dir=reports_dir,
                log=self.log,
            )
        return report.ok

    def window(self) -> RecoveryWindow:
        from pipelines.targets.local.backups.window import recovery_window

        with _as_target_errors():
            found = recovery_window(self.env)
        return RecoveryWindow(
            environment=self.env.name,
            target="local",
            earliest=found.earliest,
            latest=found.latest,
            gaps=[gap.describe() for gap in found.gaps],
            basis=f"base backups in the snapshots, WAL streamed to {found.archive}",
            record=found.to_json(),
        )

    def restore_to_point(
        self,
        *,
        to_time: str | None = None,
        to_lsn: str | None = None,
        into: str = "scratch",
        confirm: bool = False,
        log: Log = print,
    ) -> PointInTimeOutcome:
        from pipelines.targets.local.backups.pitr import restore_to_point
        from pipelines.targets.local.backups.pitr_replace import replace_from_point
        from pipelines.targets.local.backups.restore import INTO

        with _as_target_errors():
            if into not in INTO:
                raise BackupError(f"--into must be scratch or replace, not {into!r}")
            if into == "replace":
                copy, swapped = replace_from_point(
                    self.env, to_time=to_time, to_lsn=to_lsn, confirm=confirm, log=log
                )
                location = f"{self.env.name}/{swapped.database}"
                seconds = copy.seconds + swapped.seconds
            else:
                copy = restore_to_point(self.env, to_time=to_time, to_lsn=to_lsn, log=log)
                location = f"postgresql://127.0.0.1:{copy.port}/{copy.database}"
                seconds = copy.seconds
                FileLedger().append(
                    "pitr-restore",
                    self.env.name,
                    id=copy.id,
                    into="scratch",
                    point=copy.target,
                    base_backup=copy.backup_id,
                    recovered_to=copy.recovered_to,
                    location=location,
                    seconds=copy.seconds,
                )
        return PointInTimeOutcome(
            id=copy.id,
            environment=self.env.name,
            point=copy.target,
            into=into,
            location=location,
            seconds=round(seconds, 3),
            recovered_to=copy.recovered_to,
            record=copy.to_json(),
        )

    def discard_point_restore(self, restore_id: str) -> None:
        from pipelines.targets.local.backups.pitr import discard_restore

        with _as_target_errors():
            discard_restore(self.env, restore_id)

    def pitr_drill(self, reports_dir: Path, ledger: Ledger, log: Log = print) -> bool:
        from pipelines.targets.local.backups.pitr_drill import run_pitr_drill

        return run_pitr_drill(self.env, reports_dir=reports_dir, log=log, ledger=ledger).ok


class LocalOperations:
    def __init__(self, env: LocalEnv) -> None:
        self.env = env

    def flags(self) -> dict[str, bool]:
        """As the running replicas report them, through the load balancer."""
        import httpx

        token = self.env.secrets.get(NAMES.metrics)
        try:
            response = httpx.get(
                f"{self.env.url}/api/_internal/flags",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise TargetError(
                f"{self.env.name}: reading the flags from {self.env.url} failed ({exc}); is it "
                f"up? (invoke env.status --env {self.env.name})"
            ) from None
        return {flag["name"]: bool(flag["enabled"]) for flag in response.json()["flags"]}

    flag_change = "a rolling restart"

    def set_flags(self, flags: Mapping[str, bool]) -> RolloutResult:
        desired = self.env.desired() or {}
        return self.env.restart(flags={**desired.get("flags", {}), **flags})

    def _running_artifact(self) -> str | None:
        """The release that serves: the stable one, not a desired one a rollout reversed."""
        stable = self.env.observed().get("stable") or {}
        desired = self.env.desired() or {}
        artifact = (stable or desired).get("release", {}).get("artifact")
        return str(artifact) if artifact else None

    def migration_status(self) -> MigrationStatus:
        return self.env.database.migration_status(self._running_artifact())

    def migrate(self) -> MigrationStatus:
        return self.env.database.migrate(self._running_artifact())

    def reset_database(self) -> MigrationStatus:
        self.env.database.reset()
        return self.migrate()

    def schema_behind(self, release_id: str) -> str | None:
        artifacts = {r["id"]: r["artifact"] for r in self.env.history()}
        artifact = artifacts.get(release_id)
        if artifact is None:
            return None
        status = self.env.database.migration_status(artifact)
        if status.current == status.head:
            return None
        return (
            f"the schema stays at {status.current}, ahead of {release_id}'s {status.head} by "
            "expand revisions it serves on"
        )

    def alarm_transitions(self, since: float) -> list[AlarmTransition]:
        path = self.env.layout.alarms / "history.jsonl"
        found = []
        for line in _json_lines(path):
            at = datetime.fromisoformat(line["timestamp"]).timestamp()
            if at >= since:
                found.append(
                    AlarmTransition(
                        at, line["alarm"], line["old_state"], line["new_state"], line["reason"]
                    )
                )
        return found

    def server_metrics(self, start: float, end: float) -> list[ServerMetrics]:
        """Each of the agent monitor's scrapes in the window (every period / 5 seconds)."""
        from pipelines.targets.local.server_metrics import read

        return read(self.env.layout.alarms / "datapoints.jsonl", start, end)

    def rotate_secret(self, name: str, compromised: bool = False) -> RotationOutcome:
        """Runbook section 12: a new value in the store, the replicas rolled onto it. For the
        signing key, see `targets/signing_keys.py`; for the other secrets nothing verifies
        against an old value, so the previous version is history only (compromise: none)."""
        from pipelines.targets.local.rotation import rotate

        try:
            return rotate(self.env, ALIASES.get(name, name), compromised)
        except SecretStoreError as exc:
            raise TargetError(f"{self.env.name}: {exc}") from None

    def log_files(self) -> Sequence[Path]:
        layout = self.env.layout
        return sorted(
            [
                *layout.logs.glob("*.log"),
                layout.lb / "access.log",
                *self.env.cluster().log_dir.glob("*.json"),
            ],
            key=lambda p: p.name,
        )


def _json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
