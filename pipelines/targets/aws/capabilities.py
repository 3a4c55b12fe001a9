"""The aws target's `backups` and `operations` capabilities (see targets/base.py).

Backups are tagged manual RDS snapshots and a temporary-instance drill; flags are
`FLAG_<NAME>` entries of the app container, so a change is a new task definition revision
rolled out and watched like a release; alarm transitions come from CloudWatch's history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import outputs as out
from pipelines.targets.aws import ecs as ecs_ops
from pipelines.targets.aws.backups import AwsBackups
from pipelines.targets.aws.common import aws_errors
from pipelines.targets.aws.retention import epoch
from pipelines.targets.base import (
    AlarmTransition,
    FaultUnavailable,
    PointInTimeOutcome,
    PruneItem,
    PruneOutcome,
    RecoveryWindow,
    Release,
    RotationOutcome,
    ServerMetrics,
    SnapshotInfo,
    TargetError,
)

if TYPE_CHECKING:
    from pipelines.ledger import Ledger
    from pipelines.targets.aws.contract import AwsEnv
    from pipelines.targets.base import Environment, MigrationStatus, RestoreOutcome, RolloutResult

Log = Callable[[str], None]


def snapshot_info(record: Mapping[str, Any]) -> SnapshotInfo:
    return SnapshotInfo(
        id=str(record["id"]),
        kind=str(record.get("kind") or ""),
        created_epoch=epoch(record.get("created_at")),
        location=str(record.get("arn", "")),
        status=str(record.get("status", "")),
        deploy_id=str(record.get("deploy_id") or ""),
        record=dict(record),
    )


class AwsBackupCapability:
    def __init__(self, env: AwsEnv, log: Log = print) -> None:
        self.env = env
        self.store = AwsBackups(
            env.name,
            env.outputs,
            env.clients,
            env.spec,
            env.database.current_image,
            log=log,
        )

    @property
    def name(self) -> str:  # how aws_errors names it
        return self.env.name

    @aws_errors("taking a snapshot")
    def take(
        self, kind: str, reason: str = "", deploy_id: str = "", physical: bool = True
    ) -> SnapshotInfo:
        return snapshot_info(self.store.create_snapshot(kind, reason=reason, deploy_id=deploy_id))

    @aws_errors("listing snapshots")
    def list(self, kind: str | None = None) -> list[SnapshotInfo]:
        return [snapshot_info(record) for record in self.store.list_snapshots(kind)]

    @aws_errors("pruning snapshots")
    def prune(self, dry_run: bool) -> PruneOutcome:
        plan = self.store.prune(dry_run=dry_run)
        return PruneOutcome(
            environment=self.env.name,
            target="aws",
            dry_run=dry_run,
            items=[PruneItem(i, True, r) for i, r in plan.keep]
            + [PruneItem(i, False, r) for i, r in plan.delete],
        )

    def restore(self, snapshot_id: str, into: str, **options: Any) -> RestoreOutcome:
        """A managed database is not swapped by a task: restoring beside the live instance
        and switching over is a person's call (runbook section 8)."""
        raise TargetError(
            f"backup.restore does not run on the aws target; restore beside the live instance "
            f"with `{self.env.restore_command(snapshot_id)}` and switch over as runbook "
            "section 8 says; nothing was changed"
        )

    def drill(self, into: Environment, snapshot_id: str | None, reports_dir: Path) -> bool:
        """A temporary instance beside this environment's own (`into` plays no part on AWS)."""
        from pipelines.targets.aws import drill

        report = drill.run(self.store, snapshot_id, reports_dir)
        return bool(report["ok"])

    @aws_errors("reading the recoverable window")
    def window(self) -> RecoveryWindow:
        from pipelines.targets.aws import pitr

        found = pitr.window(self.store)
        return RecoveryWindow(
            environment=self.env.name,
            target="aws",
            earliest=found["earliest"],
            latest=found["latest"],
            basis=(
                f"RDS automated backups of {found['instance']}: LatestRestorableTime, "
                f"{found['backup_retention_days']} days kept"
            ),
            record={k: v for k, v in found.items() if k != "live"},
        )

    @aws_errors("restoring to a point in time")
    def restore_to_point(
        self,
        *,
        to_time: str | None = None,
        to_lsn: str | None = None,
        into: str = "scratch",
        confirm: bool = False,
        log: Log = print,
    ) -> PointInTimeOutcome:
        """Beside the live instance only: switching over to it is a person's call."""
        from pipelines.targets.aws import pitr

        if into != "scratch":
            raise TargetError(
                "on the aws target a point-in-time restore goes beside the live instance "
                "(--into scratch); switch over to it as runbook section 8 says. Nothing was "
                "changed"
            )
        if to_lsn or not to_time:
            raise TargetError("RDS restores to a time: use --to-time (ISO 8601), not --to-lsn")
        restored = pitr.restore_to_time(self.store, to_time)
        return PointInTimeOutcome(
            id=restored["id"],
            environment=self.env.name,
            point=restored["point"],
            into="scratch",
            location=f"{restored['instance']} ({restored['endpoint']})",
            seconds=restored["seconds"],
            record=restored,
        )

    def pitr_drill(self, reports_dir: Path, ledger: Ledger, log: Log = print) -> bool:
        """Orders through the service URL, the copy restored to T beside the live instance,
        verified to the row by a one-off task inside the VPC, deleted (`pitr_drill.py`)."""
        from pipelines.backups.pitr_orders import ApiOrders
        from pipelines.targets.aws import pitr_drill

        url = self.env.url
        if not url:
            raise TargetError(
                f"{self.env.name}: the stack has no service URL output ({out.SERVICE_URL}), so "
                f"no order can be written; run `invoke infra.up --stack {self.env.name}` first. "
                "Nothing was created"
            )
        image = self.store.image

        def credentials() -> tuple[str, str]:
            release = Release(id=image(), version="", git_sha="", artifact=image(), created_at="")
            return self.env.smoke_credentials(release)

        self.store.log = log
        orders = ApiOrders(url, credentials, log=log)
        return pitr_drill.run(self.store, orders, reports_dir, ledger).ok

    @aws_errors("deleting a point-in-time copy")
    def discard_point_restore(self, restore_id: str) -> None:
        from pipelines.targets.aws import pitr

        pitr.discard(self.store, restore_id)


class AwsOperations:
    def __init__(self, env: AwsEnv) -> None:
        self.env = env

    @property
    def name(self) -> str:  # how aws_errors names it
        return self.env.name

    @aws_errors("reading the flags")
    def flags(self) -> dict[str, bool]:
        """The registry's defaults overridden by the service's current task definition."""
        from service.flags import FlagError, resolve_flags

        ecs, outputs = self.env.clients("ecs"), self.env.outputs
        service = ecs_ops.describe_service(
            ecs, outputs[out.CLUSTER_NAME], outputs[out.SERVICE_NAME]
        )
        container = outputs[out.CONTAINER_NAME]
        _, definition = ecs_ops.describe_revision(ecs, service["taskDefinition"], container)
        try:
            return resolve_flags(ecs_ops.container_environment(definition, container))
        except FlagError as exc:
            raise TargetError(f"{self.env.name}: {service['taskDefinition']}: {exc}") from None

    flag_change = "a new task definition revision, rolled out"

    def set_flags(self, flags: Mapping[str, bool]) -> RolloutResult:
        variables = {f"FLAG_{name}": "true" if on else "false" for name, on in flags.items()}
        return self.env.reconfigure(variables)

    def migration_status(self) -> MigrationStatus:
        """Against the migrations of the image the service runs, from a one-off ECS task."""
        return self.env.database.migration_status()

    def migrate(self) -> MigrationStatus:
        return self.env.database.migrate()

    def reset_database(self) -> MigrationStatus:
        """Never on AWS: dropping a managed database is not a task's job."""
        env = self.env.name
        raise TargetError(
            f"db.reset does not run on the aws target: a managed RDS database is not dropped "
            f"by a task. Reset {env} by restoring a snapshot (`invoke backup.list --env {env} "
            f"--target aws`, then the `aws rds restore-db-instance-from-db-snapshot` command of "
            f"runbook section 8; `invoke backup.restore` is local only) or by re-creating the "
            f"stack (`invoke infra.up --stack {env} --image <ecr-uri>@sha256:<digest> --yes`); "
            f"nothing was changed"
        )

    def schema_behind(self, release_id: str) -> str | None:
        return None  # an image's migrations are read by a one-off task; not done for a note

    @aws_errors("reading the alarm history")
    def alarm_transitions(self, since: float) -> list[AlarmTransition]:
        """The state transitions of the stack's alarms since `since`."""
        cloudwatch = self.env.clients("cloudwatch")
        start = datetime.fromtimestamp(since, UTC)
        found: list[AlarmTransition] = []
        outputs = self.env.outputs
        names = {*outputs.alarm_names.values(), *outputs.security_alarm_names.values()}
        for name in sorted(names):
            pages = cloudwatch.get_paginator("describe_alarm_history").paginate(
                AlarmName=name, HistoryItemType="StateUpdate", StartDate=start
            )
            for page in pages:
                found += [_transition(item) for item in page.get("AlarmHistoryItems", [])]
        return [event for event in found if event.at >= since]

    @aws_errors("reading the service's metrics")
    def server_metrics(self, start: float, end: float) -> list[ServerMetrics]:
        """The ALB's metrics per minute (CloudWatch's `get_metric_data`)."""
        from pipelines.targets.aws.observe import server_metrics

        return server_metrics(self.env.clients("cloudwatch"), self.env.dimensions(), start, end)

    @aws_errors("rotating the signing key")
    def rotate_secret(self, name: str, compromised: bool = False) -> RotationOutcome:
        """The signing key in Secrets Manager, then a new revision of the service rolled out,
        since tasks read their secrets when they start (`targets/signing_keys.py`)."""
        from pipelines.targets.aws.rotation import rotate_signing_key

        return rotate_signing_key(self.env, name, compromised)

    def log_files(self) -> Sequence[Path]:
        raise TargetError(
            f"{self.env.name}: the service's logs are in CloudWatch Logs "
            f"({self.env.outputs.get(out.LOG_GROUP_NAME, 'the stack log group')}), not in files"
        )


def _transition(item: Mapping[str, Any]) -> AlarmTransition:
    """One history item; its HistoryData is JSON with the old and new states."""
    try:
        data = json.loads(item.get("HistoryData") or "{}")
        old, new = data["oldState"]["stateValue"], data["newState"]["stateValue"]
        reason = str(data["newState"].get("stateReason", ""))
    except (ValueError, KeyError, TypeError):
        old, new, reason = "?", "?", str(item.get("HistorySummary", ""))
    at = item["Timestamp"]
    stamp = at.timestamp() if isinstance(at, datetime) else float(at)
    return AlarmTransition(stamp, str(item.get("AlarmName", "")), old, new, reason)


class AwsFaults:
    """Game days run on the local target. On AWS the same faults (stop an ECS task, reboot
    RDS with failover, block a task's network) belong to AWS Fault Injection Service
    experiments with stop conditions on the alarms, which this stack does not define yet."""

    kinds: tuple[str, ...] = ()

    def __init__(self, env: AwsEnv) -> None:
        self.env = env

    def inject(self, kind: str) -> str:
        raise FaultUnavailable(
            f"{self.env.name}: game days run on the local target only; on AWS, fault "
            f"{kind!r} needs an AWS FIS experiment template, which this stack does not "
            "define. Run `invoke gameday` (local) instead."
        )

    def heal(self, kind: str) -> str:
        return ""
