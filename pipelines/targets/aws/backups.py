"""Backups and the restore drill on AWS (runbook section 6), with boto3.

- RDS snapshots: `create_db_snapshot` tagged with kind, deploy id, environment, reason and
  the date retention keeps it until, then the `db_snapshot_available` waiter; listing and
  pruning apply the same rules as the local target (`pipelines.backups.retention.rule`),
  plus what drills tag on the snapshots they use and verify (`retention.py`).
- Logical dumps: a one-off Fargate task (`python -m pipelines.targets.aws.backup_task dump`)
  writes the dump and its fingerprint to the backups bucket through presigned PUT URLs, so
  the task itself needs no S3 permission and the image no boto3.
- The drill: the newest snapshot is restored into a temporary instance beside the live one
  (`restore_db_instance_from_db_snapshot`, carrying the drill's tags, private, same subnet
  group and security groups), waited for, given a one-time master password, verified by a
  one-off task (`backup_task drill`), and deleted whatever happened.

The task definition is a copy of the `migrate` family's newest revision (it alone carries
the master credentials) under the family `<prefix>-backup`, with this module's entry point.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from infra import outputs as out
from infra.spec import EnvironmentSpec
from pipelines.backups.retention import KINDS
from pipelines.targets.aws import retention
from pipelines.targets.aws.common import ClientFactory, client_error, error_code
from pipelines.targets.aws.database import snapshot_identifier, snapshot_record, tag_value
from pipelines.targets.aws.ecs import describe_revision, register_with_image
from pipelines.targets.aws.retention import AwsPrunePlan, epoch, iso
from pipelines.targets.base import TargetError

CONTAINER = "migrate"
ENTRY_POINT = ["python", "-m", "pipelines.targets.aws.backup_task"]
Log = Callable[[str], None]


class Outputs(Protocol):
    """Stack outputs: a plain mapping, or the target's checked `StackOutputs`."""

    def __getitem__(self, key: str) -> Any: ...

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass
class TaskResult:
    task_arn: str
    exit_code: int | None
    stopped_reason: str


class AwsBackups:
    def __init__(
        self,
        env: str,
        outputs: Outputs,
        clients: ClientFactory,
        spec: EnvironmentSpec,
        image: Callable[[], str],
        *,
        poll_s: float = 15.0,
        timeout_s: float = 3600.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        log: Log = print,
    ) -> None:
        self.env, self.outputs, self.clients, self.spec = env, outputs, clients, spec
        self.image = image
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self.sleep, self.now, self.log = sleep, now, log

    @property
    def instance(self) -> str:
        return str(self.outputs[out.DB_INSTANCE_ID])

    @property
    def bucket(self) -> str:
        return str(self.outputs[out.BACKUPS_BUCKET])

    def _waiter(self, name: str, client: Any, **kwargs: Any) -> None:
        from botocore.exceptions import WaiterError

        delay = max(1, round(self.poll_s))
        try:
            client.get_waiter(name).wait(
                **kwargs,
                WaiterConfig={
                    "Delay": delay,
                    "MaxAttempts": max(1, math.ceil(self.timeout_s / delay)),
                },
            )
        except WaiterError as exc:
            raise TargetError(f"{self.env}: waiting for {name} ({kwargs}) failed: {exc}") from None

    # -- RDS snapshots -----------------------------------------------------------

    def create_snapshot(self, kind: str, reason: str = "", deploy_id: str = "") -> dict[str, Any]:
        if kind not in KINDS:
            raise TargetError(f"unknown snapshot kind {kind!r}; choose one of {', '.join(KINDS)}")
        rds = self.clients("rds")
        now = self.now()
        snapshot_id = snapshot_identifier(
            self.instance,
            kind,
            deploy_id or time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)),
            secrets.token_hex(3),
        )
        keep = {
            "daily": self.spec.backup_retention_days,
            "weekly": 7 * self.spec.weekly_backup_retention_weeks,
        }
        tags = {
            "kind": kind,
            "deploy-id": deploy_id,
            "environment": self.env,
            "reason": reason,
            "retain-until": iso(now + keep[kind] * 86_400) if kind in keep else "",
        }
        self.log(f"{self.env}: creating RDS snapshot {snapshot_id} of {self.instance}")
        rds.create_db_snapshot(
            DBSnapshotIdentifier=snapshot_id,
            DBInstanceIdentifier=self.instance,
            Tags=[{"Key": k, "Value": tag_value(v)} for k, v in tags.items() if v],
        )
        self._waiter("db_snapshot_available", rds, DBSnapshotIdentifier=snapshot_id)
        found = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"][0]
        return snapshot_record(found, rds)

    def list_snapshots(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Manual snapshots of the instance, newest first (automated ones are RDS's own)."""
        rds = self.clients("rds")
        records: list[dict[str, Any]] = []
        for page in rds.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=self.instance, SnapshotType="manual"
        ):
            records += [snapshot_record(s, rds) for s in page.get("DBSnapshots", [])]
        records = [r for r in records if kind is None or r.get("kind") == kind]
        return sorted(records, key=lambda r: epoch(r["created_at"]), reverse=True)

    def prune(self, dry_run: bool = True, kinds: Collection[str] = KINDS) -> AwsPrunePlan:
        """Retention from the spec over the snapshots of `kinds` (see retention.py for what
        always stays). Each snapshot is described again just before it is deleted, so one
        a drill has started on since the listing is kept."""
        now = self.now()
        result = retention.plan(
            self.list_snapshots(), self.spec, self.instance, now, environment=self.env, kinds=kinds
        )
        result.dry_run = dry_run
        if dry_run:
            return result
        rds = self.clients("rds")
        for snapshot_id, reason in list(result.delete):
            found = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
            held = retention.drill_in_progress(snapshot_record(found[0], rds), self.now())
            if held:
                result.delete.remove((snapshot_id, reason))
                result.keep.append((snapshot_id, held))
                continue
            self.log(f"{self.env}: deleting snapshot {snapshot_id}: {reason}")
            rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot_id)
            result.deleted.append(snapshot_id)
        return result

    # -- one-off tasks -------------------------------------------------------------

    def task_definition(self) -> str:
        """The `<prefix>-backup` revision running the current image, registered if needed."""
        ecs = self.clients("ecs")
        migrate = str(self.outputs[out.MIGRATE_TASK_DEFINITION_FAMILY])
        family = migrate.removesuffix("-migrate") + "-backup"
        image = self.image()
        try:
            revision, definition = describe_revision(ecs, family, CONTAINER)
            container = next(
                c for c in definition["containerDefinitions"] if c["name"] == CONTAINER
            )
            if revision.image == image and container.get("entryPoint") == ENTRY_POINT:
                return revision.arn
        except client_error() as exc:
            if error_code(exc) not in ("ClientException", "InvalidParameterException"):
                raise
        _, definition = describe_revision(ecs, migrate, CONTAINER)
        copy = {**definition, "family": family}
        tags = {"drydock:purpose": "backups and restore drills", "drydock:release": image}
        return register_with_image(ecs, copy, CONTAINER, image, tags, ENTRY_POINT)

    def run_task_request(
        self, command: list[str], environment: Mapping[str, str]
    ) -> dict[str, Any]:
        """The `ecs.run_task` call: private subnets, no public IP, the backup container's
        command and (non-secret or one-time) environment."""
        return {
            "cluster": self.outputs[out.CLUSTER_NAME],
            "taskDefinition": self.task_definition(),
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": f"drydock-backup-{command[0]}",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.outputs[out.TASK_SUBNET_IDS]),
                    "securityGroups": [self.outputs[out.TASK_SECURITY_GROUP_ID]],
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": {
                "containerOverrides": [
                    {
                        "name": CONTAINER,
                        "command": command,
                        "environment": [{"name": k, "value": v} for k, v in environment.items()],
                    }
                ]
            },
        }

    def run_task(self, command: list[str], environment: Mapping[str, str]) -> TaskResult:
        ecs = self.clients("ecs")
        request = self.run_task_request(command, environment)
        response = ecs.run_task(**request)
        if not response.get("tasks"):
            failures = "; ".join(
                f"{f.get('arn', '')} {f.get('reason', '')}" for f in response.get("failures", [])
            )
            raise TargetError(f"{self.env}: ECS did not start the backup task: {failures}")
        task_arn = response["tasks"][0]["taskArn"]
        self._waiter("tasks_stopped", ecs, cluster=request["cluster"], tasks=[task_arn])
        task = ecs.describe_tasks(cluster=request["cluster"], tasks=[task_arn])["tasks"][0]
        container: dict[str, Any] = next(
            (c for c in task.get("containers", []) if c.get("name") == CONTAINER), {}
        )
        return TaskResult(task_arn, container.get("exitCode"), task.get("stoppedReason", ""))

    def _put_url(self, key: str, expires_s: float) -> str:
        return str(
            self.clients("s3").generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(expires_s)
            )
        )

    def logical_dump(self, reason: str = "") -> dict[str, Any]:
        """The week's logical dump, by a one-off task, into s3://<bucket>/dumps/<env>/<id>/."""
        dump_id = f"{self.env}-weekly-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(self.now()))}"
        prefix = f"dumps/{self.env}/{dump_id}"
        expires = self.timeout_s + 600
        result = self.run_task(
            ["dump", "--id", dump_id],
            {
                "DUMP_PUT_URL": self._put_url(f"{prefix}/dump.pgdump", expires),
                "MANIFEST_PUT_URL": self._put_url(f"{prefix}/manifest.json", expires),
            },
        )
        if result.exit_code != 0:
            raise TargetError(
                f"{self.env}: the dump task {result.task_arn} failed (exit {result.exit_code}): "
                f"{result.stopped_reason}; its log is in {self.outputs.get(out.LOG_GROUP_NAME)}"
            )
        body = self.clients("s3").get_object(Bucket=self.bucket, Key=f"{prefix}/manifest.json")[
            "Body"
        ]
        manifest: dict[str, Any] = json.loads(body.read())
        manifest.pop("fingerprint", None)
        return {**manifest, "reason": reason, "location": f"s3://{self.bucket}/{prefix}/"}
