"""The environment's RDS PostgreSQL as the pipeline sees it: migrations run as one-off ECS
tasks, and pre-deploy snapshots.

The database is reachable only inside the VPC, so Alembic runs there: a Fargate task of the
`migrate` family (the only task that sees the master credentials), on the task subnets with
no public IP. Its container runs `python -m pipelines.targets.aws.migrate_task`, which prints
the migration status as one marked JSON line that is read back from CloudWatch Logs.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infra import outputs as out
from pipelines.targets.aws.common import (
    ClientFactory,
    StackOutputs,
    aws_errors,
    client_error,
    timestamp,
)
from pipelines.targets.aws.ecs import describe_revision, register_with_image, release_tags
from pipelines.targets.aws.migrate_task import STATUS_MARKER
from pipelines.targets.base import MigrationStatus, TargetError

MIGRATE_CONTAINER = "migrate"
ENTRY_POINT = ["python", "-m", "pipelines.targets.aws.migrate_task"]


@dataclass(frozen=True)
class TaskRun:
    task_arn: str
    exit_code: int
    log_group: str
    log_stream: str
    lines: tuple[str, ...]


class AwsDatabase:
    def __init__(
        self,
        env: str,
        outputs: StackOutputs,
        clients: ClientFactory,
        current_image: Callable[[], str],
        poll_s: float = 6.0,
        timeout_s: float = 1800.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.env = env
        self.outputs = outputs
        self.clients = clients
        self.current_image = current_image
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.sleep = sleep

    # -- migrations --------------------------------------------------------------

    @aws_errors("reading the migration status")
    def migration_status(self, artifact: str | None = None) -> MigrationStatus:
        """Where the database is against the migrations in `artifact` (an image URI;
        default: the image the service runs)."""
        return self._status_from(self.run_task(["status"], artifact))

    @aws_errors("migrating")
    def migrate(
        self, artifact: str | None = None, environment: Mapping[str, str] | None = None
    ) -> MigrationStatus:
        """Upgrade to the head of `artifact`'s migrations, in a one-off task of that image
        (with `environment` added to the container's, e.g. the first admin's)."""
        return self._status_from(self.run_task(["upgrade"], artifact, environment))

    def _status_from(self, run: TaskRun) -> MigrationStatus:
        for line in reversed(run.lines):
            if STATUS_MARKER not in line:
                continue
            try:
                doc = json.loads(line.split(STATUS_MARKER, 1)[1])
                return MigrationStatus.from_dict(doc)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the log driver: an earlier one may be whole
        raise TargetError(
            f"{self.env}: the migrate task {run.task_arn} printed no status line; read "
            f"`aws logs get-log-events --log-group-name {run.log_group} --log-stream-name "
            f"{run.log_stream}`"
        )

    def task_definition(self, image: str) -> str:
        """A revision of the migrate family running `image` with our entry point: the
        newest one if it already does, else a new one copied from it."""
        ecs = self.clients("ecs")
        family = self.outputs[out.MIGRATE_TASK_DEFINITION_FAMILY]
        revision, definition = describe_revision(ecs, family, MIGRATE_CONTAINER)
        container = next(
            c for c in definition["containerDefinitions"] if c["name"] == MIGRATE_CONTAINER
        )
        if revision.image == image and container.get("entryPoint") == ENTRY_POINT:
            return revision.arn
        tags = release_tags(revision, image)
        return register_with_image(ecs, definition, MIGRATE_CONTAINER, image, tags, ENTRY_POINT)

    def run_task(
        self,
        command: list[str],
        image: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> TaskRun:
        """Run the migrate container with `command`, wait for it to stop, check its exit
        code. A failure raises TargetError with the reason and where its log is."""
        ecs = self.clients("ecs")
        cluster = self.outputs[out.CLUSTER_NAME]
        task_definition = self.task_definition(image or self.current_image())
        override: dict[str, Any] = {"name": MIGRATE_CONTAINER, "command": command}
        if environment:
            override["environment"] = [{"name": k, "value": v} for k, v in environment.items()]
        response = ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition,
            launchType="FARGATE",
            count=1,
            startedBy=f"drydock-{command[0]}",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": list(self.outputs[out.TASK_SUBNET_IDS]),
                    "securityGroups": [self.outputs[out.TASK_SECURITY_GROUP_ID]],
                    "assignPublicIp": "DISABLED",
                }
            },
            overrides={"containerOverrides": [override]},
        )
        if not response.get("tasks"):
            failures = "; ".join(
                f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '')}".strip()
                for f in response.get("failures", [])
            )
            raise TargetError(f"{self.env}: ECS did not start the migrate task: {failures}")
        task_arn = response["tasks"][0]["taskArn"]
        from botocore.exceptions import WaiterError

        try:
            ecs.get_waiter("tasks_stopped").wait(
                cluster=cluster,
                tasks=[task_arn],
                WaiterConfig={
                    "Delay": max(1, round(self.poll_s)),
                    "MaxAttempts": max(1, math.ceil(self.timeout_s / max(self.poll_s, 1))),
                },
            )
        except WaiterError as exc:
            raise TargetError(
                f"{self.env}: the migrate task {task_arn} did not stop within "
                f"{self.timeout_s:g} s ({exc}); it may still be running: "
                f"`aws ecs describe-tasks --cluster {cluster} --tasks {task_arn}`"
            ) from None
        task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
        group, stream = self._log_location(task_definition, task_arn)
        container: dict[str, Any] = next(
            (c for c in task.get("containers", []) if c.get("name") == MIGRATE_CONTAINER), {}
        )
        code = container.get("exitCode")
        if code != 0:
            why = task.get("stoppedReason", "no reason given")
            detail = f"; container: {container['reason']}" if container.get("reason") else ""
            raise TargetError(
                f"{self.env}: the migrate task `{' '.join(command)}` failed with exit code "
                f"{code if code is not None else 'none (the container never ran)'}: {why}"
                f"{detail}; read its log: `aws logs get-log-events --log-group-name {group} "
                f"--log-stream-name {stream}`"
            )
        return TaskRun(task_arn, 0, group, stream, tuple(self._log_lines(group, stream)))

    def _log_location(self, task_definition: str, task_arn: str) -> tuple[str, str]:
        # awslogs names a stream <prefix>/<container>/<task id>.
        definition = self.clients("ecs").describe_task_definition(taskDefinition=task_definition)
        container = next(
            c
            for c in definition["taskDefinition"]["containerDefinitions"]
            if c["name"] == MIGRATE_CONTAINER
        )
        options = container.get("logConfiguration", {}).get("options", {})
        group = options.get("awslogs-group", self.outputs[out.LOG_GROUP_NAME])
        prefix = options.get("awslogs-stream-prefix", MIGRATE_CONTAINER)
        return group, f"{prefix}/{MIGRATE_CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"

    def _log_lines(self, group: str, stream: str, attempts: int = 5) -> list[str]:
        """The task's log; CloudWatch Logs may lag the task's stop by a few seconds."""
        logs = self.clients("logs")
        lines: list[str] = []
        for attempt in range(attempts):
            lines, token = [], None
            try:
                while True:
                    request: dict[str, Any] = {
                        "logGroupName": group,
                        "logStreamName": stream,
                        "startFromHead": True,
                    }
                    if token:
                        request["nextToken"] = token
                    page = logs.get_log_events(**request)
                    lines += [e["message"] for e in page.get("events", [])]
                    if page.get("nextForwardToken") in (None, token):
                        break
                    token = page["nextForwardToken"]
            except client_error():
                lines = []
            if any(STATUS_MARKER in line for line in lines) or attempt == attempts - 1:
                return lines
            self.sleep(self.poll_s)
        return lines

    # -- connection --------------------------------------------------------------

    @aws_errors("reading the app database secret")
    def url(self, role: str = "app") -> str:
        """The app role's URL from its secret; it resolves only inside the VPC."""
        if role != "app":
            raise TargetError(
                f"{self.env}: only the app role's URL is handed out; the master credentials "
                "stay with the migrate task"
            )
        secret = self.clients("secretsmanager").get_secret_value(
            SecretId=self.outputs[out.APP_DB_SECRET_ARN]
        )
        return str(json.loads(secret["SecretString"])["url"])

    # -- snapshots ---------------------------------------------------------------

    @aws_errors("taking a snapshot")
    def snapshot(self, kind: str, deploy_id: str = "", reason: str = "") -> dict[str, Any]:
        """A manual RDS snapshot, tagged with what it is for, waited until available."""
        rds = self.clients("rds")
        instance = self.outputs[out.DB_INSTANCE_ID]
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        snapshot_id = snapshot_identifier(instance, kind, deploy_id or stamp, uuid.uuid4().hex[:6])
        tags = {"kind": kind, "deploy-id": deploy_id, "environment": self.env, "reason": reason}
        rds.create_db_snapshot(
            DBSnapshotIdentifier=snapshot_id,
            DBInstanceIdentifier=instance,
            Tags=[{"Key": k, "Value": tag_value(v)} for k, v in tags.items() if v],
        )
        from botocore.exceptions import WaiterError

        try:
            rds.get_waiter("db_snapshot_available").wait(
                DBSnapshotIdentifier=snapshot_id,
                WaiterConfig={
                    "Delay": max(1, round(self.poll_s * 5)),
                    "MaxAttempts": max(1, math.ceil(self.timeout_s / max(self.poll_s * 5, 1))),
                },
            )
        except WaiterError as exc:
            raise TargetError(
                f"{self.env}: snapshot {snapshot_id} is not available after "
                f"{self.timeout_s:g} s ({exc}); nothing was migrated or rolled out"
            ) from None
        return self.describe_snapshot(snapshot_id)

    def describe_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        rds = self.clients("rds")
        try:
            found = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
        except client_error() as exc:
            raise TargetError(f"{self.env}: no snapshot {snapshot_id}: {exc}") from None
        return snapshot_record(found[0], rds)

    @aws_errors("listing snapshots")
    def snapshots(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Manual snapshots of this environment's instance, newest first."""
        rds = self.clients("rds")
        records = []
        for page in rds.get_paginator("describe_db_snapshots").paginate(
            DBInstanceIdentifier=self.outputs[out.DB_INSTANCE_ID], SnapshotType="manual"
        ):
            records += [snapshot_record(s, rds) for s in page.get("DBSnapshots", [])]
        records = [r for r in records if kind is None or r.get("kind") == kind]
        return sorted(records, key=lambda r: r.get("created_at") or "", reverse=True)

    @aws_errors("verifying a snapshot")
    def verify_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """A snapshot a restore can rely on: available, of this instance, encrypted, sized."""
        record = self.describe_snapshot(snapshot_id)
        problems = restore_problems(record, self.outputs[out.DB_INSTANCE_ID])
        if problems:
            raise TargetError(
                f"{self.env}: snapshot {snapshot_id} fails checks: {'; '.join(problems)}"
            )
        return {**record, "verified": True}


def restore_problems(record: Mapping[str, Any], instance: str) -> list[str]:
    """Why a restore could not rely on the snapshot; empty when it passes the checks."""
    problems = []
    if record["status"] != "available":
        problems.append(f"status is {record['status']}")
    if record["instance"] != instance:
        problems.append(f"taken from {record['instance']}, not this environment")
    if not record["allocated_storage_gb"]:
        problems.append("it has no storage")
    if not record["encrypted"]:
        problems.append("it is not encrypted")
    return problems


def snapshot_identifier(instance: str, kind: str, label: str, suffix: str) -> str:
    """RDS rules: letters, digits and single hyphens, a letter first, at most 255."""
    raw = f"{instance}-{kind}-{label}-{suffix}".lower()
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw)).strip("-")
    return ("s" + cleaned if not cleaned[:1].isalpha() else cleaned)[:255].rstrip("-")


def tag_value(value: str) -> str:
    """Within what RDS accepts in a tag value (letters, digits, spaces, _.:/=+-@)."""
    return re.sub(r"[^\w .:/=+\-@]", " ", value)[:256]


def snapshot_record(snapshot: Mapping[str, Any], rds: Any) -> dict[str, Any]:
    tags = {t["Key"]: t["Value"] for t in snapshot.get("TagList", [])}
    if not tags and snapshot.get("DBSnapshotArn"):
        listed = rds.list_tags_for_resource(ResourceName=snapshot["DBSnapshotArn"])
        tags = {t["Key"]: t["Value"] for t in listed.get("TagList", [])}
    return {
        "id": snapshot["DBSnapshotIdentifier"],
        "arn": snapshot.get("DBSnapshotArn", ""),
        "instance": snapshot.get("DBInstanceIdentifier", ""),
        "status": snapshot.get("Status", ""),
        "created_at": timestamp(snapshot.get("SnapshotCreateTime")),
        "allocated_storage_gb": snapshot.get("AllocatedStorage", 0),
        "encrypted": bool(snapshot.get("Encrypted")),
        "engine_version": snapshot.get("EngineVersion", ""),
        "kind": tags.get("kind", ""),
        "deploy_id": tags.get("deploy-id", ""),
        "environment": tags.get("environment", ""),
        "reason": tags.get("reason", ""),
        "tags": tags,  # what drills mark (pipelines/targets/aws/retention.py)
    }
