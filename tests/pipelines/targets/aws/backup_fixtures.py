"""Shared pieces of the AWS backup tests: fake credentials and a moto account holding the
environment's RDS instance and backups bucket, and the ECS answers the Stubber gives for a
one-off backup task (moto runs no containers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from infra.spec import defaults
from pipelines.targets.aws.backups import CONTAINER, ENTRY_POINT, AwsBackups

REGION, ACCOUNT = "eu-west-1", "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/drydock-production@sha256:{'c' * 64}"
INSTANCE, BUCKET, CLUSTER = "drydock-production", "drydock-production-backups", "drydock-production"
MIGRATE, BACKUP = "drydock-production-migrate", "drydock-production-backup"
DAY = 86_400.0
OUTPUTS = {
    "cluster_name": CLUSTER,
    "migrate_task_definition_family": MIGRATE,
    "task_subnet_ids": ["subnet-0a", "subnet-0b"],
    "task_security_group_id": "sg-0tasks",
    "db_instance_id": INSTANCE,
    "db_name": "drydock",
    "backups_bucket": BUCKET,
    "log_group_name": "/drydock/production/api",
}


@dataclass
class Clock:
    now: float = field(default_factory=time.time)
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def moto_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """moto clients for rds, s3 and ecs, with the live instance and the bucket made."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    with mock_aws():
        clients = {name: boto3.client(name, region_name=REGION) for name in ("rds", "s3", "ecs")}
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}"
            )["Subnet"]["SubnetId"]
            for i, z in enumerate("ab")
        ]
        group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
        clients["rds"].create_db_subnet_group(
            DBSubnetGroupName="drydock-production-db",
            DBSubnetGroupDescription="private",
            SubnetIds=subnets,
        )
        clients["rds"].create_db_instance(
            DBInstanceIdentifier=INSTANCE,
            DBInstanceClass="db.t4g.medium",
            Engine="postgres",
            EngineVersion="18.1",
            MasterUsername="drydock_admin",
            MasterUserPassword="not-the-real-one",
            AllocatedStorage=50,
            StorageEncrypted=True,
            DBSubnetGroupName="drydock-production-db",
            VpcSecurityGroupIds=[group],
            PubliclyAccessible=False,
        )
        clients["s3"].create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield clients


def backups(clients: dict[str, Any], clock: Clock | None = None, **outputs: Any) -> AwsBackups:
    ticks = clock or Clock()
    return AwsBackups(
        "production",
        {**OUTPUTS, **outputs},
        clients.__getitem__,
        defaults("production"),
        lambda: IMAGE,
        poll_s=1.0,
        timeout_s=60.0,
        sleep=ticks.sleep,
        now=lambda: ticks.now,
        log=lambda _: None,
    )


def tags_of(rds: Any, snapshot_id: str) -> dict[str, str]:
    arn = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"][0][
        "DBSnapshotArn"
    ]
    return {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]}


def migrate_definition() -> dict[str, Any]:
    return {
        "taskDefinitionArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{MIGRATE}:4",
        "family": MIGRATE,
        "revision": 4,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/migrate-exec",
        "containerDefinitions": [
            {
                "name": CONTAINER,
                "image": IMAGE,
                "secrets": [{"name": "DB_ADMIN_PASSWORD", "valueFrom": "arn:secret:master"}],
                "entryPoint": ["python", "-m", "pipelines.targets.aws.migrate_task"],
            }
        ],
    }


BACKUP_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{BACKUP}:1"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/abc123"


def expect_task(stub: Stubber, command: list[str], exit_code: int | None) -> None:
    """A first run: the backup family does not exist yet and is registered from migrate."""
    stub.add_client_error(
        "describe_task_definition",
        service_error_code="ClientException",
        service_message="Unable to describe task definition.",
        expected_params={"taskDefinition": BACKUP, "include": ["TAGS"]},
    )
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": migrate_definition(), "tags": []},
        {"taskDefinition": MIGRATE, "include": ["TAGS"]},
    )
    registered = migrate_definition()
    registered.pop("taskDefinitionArn")
    registered.pop("revision")
    registered["family"] = BACKUP
    registered["containerDefinitions"][0]["entryPoint"] = ENTRY_POINT
    registered["tags"] = [
        {"key": "drydock:purpose", "value": "backups and restore drills"},
        {"key": "drydock:release", "value": IMAGE},
    ]
    stub.add_response(
        "register_task_definition",
        {"taskDefinition": {"taskDefinitionArn": BACKUP_ARN, "family": BACKUP, "revision": 1}},
        registered,
    )
    stub.add_response(
        "run_task",
        {"tasks": [{"taskArn": TASK_ARN, "lastStatus": "PROVISIONING"}], "failures": []},
        {
            "cluster": CLUSTER,
            "taskDefinition": BACKUP_ARN,
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": f"drydock-backup-{command[0]}",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-0a", "subnet-0b"],
                    "securityGroups": ["sg-0tasks"],
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": ANY,
        },
    )
    stopped = {
        "tasks": [
            {
                "taskArn": TASK_ARN,
                "lastStatus": "STOPPED",
                "stoppedReason": "Essential container in task exited",
                "containers": [{"name": CONTAINER, "exitCode": exit_code}],
            }
        ],
        "failures": [],
    }
    where = {"cluster": CLUSTER, "tasks": [TASK_ARN]}
    stub.add_response("describe_tasks", stopped, where)  # the tasks_stopped waiter
    stub.add_response("describe_tasks", stopped, where)


def capture_overrides(ecs: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def keep(params: dict[str, Any], **_: Any) -> None:
        seen.append(params["overrides"]["containerOverrides"][0])

    ecs.meta.events.register("provide-client-params.ecs.RunTask", keep)
    return seen
