"""The AWS path of backups and drills: RDS snapshots, retention and the drill's temporary
instance against moto; the one-off ECS tasks (which moto cannot run) with botocore's
Stubber, checking the exact `register_task_definition` and `run_task` requests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from infra.spec import defaults
from pipelines.targets import aws_drill
from pipelines.targets.aws_backups import CONTAINER, ENTRY_POINT, AwsBackups
from pipelines.targets.base import TargetError

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]
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


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
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


def test_snapshot_is_tagged_and_waited_for(aws: dict[str, Any]) -> None:
    record = backups(aws).create_snapshot("pre-deploy", reason="deploy 7", deploy_id="d-0007")
    assert record["status"] == "available" and record["instance"] == INSTANCE
    assert record["kind"] == "pre-deploy" and record["deploy_id"] == "d-0007"
    tags = tags_of(aws["rds"], record["id"])
    assert tags["kind"] == "pre-deploy" and tags["deploy-id"] == "d-0007"
    assert tags["environment"] == "production" and tags["reason"] == "deploy 7"
    daily = backups(aws).create_snapshot("daily")
    assert "retain-until" in tags_of(aws["rds"], daily["id"])
    with pytest.raises(TargetError, match="unknown snapshot kind 'hourly'"):
        backups(aws).create_snapshot("hourly")


def test_prune_applies_the_spec_and_keeps_the_newest_of_each_kind(aws: dict[str, Any]) -> None:
    spec = defaults("production")
    clock = Clock()
    b = backups(aws, clock)
    daily = [b.create_snapshot("daily")["id"] for _ in range(2)]
    pre = [b.create_snapshot("pre-deploy", deploy_id=f"d{i}")["id"] for i in range(12)]
    manual = b.create_snapshot("manual")["id"]
    assert [r["id"] for r in b.list_snapshots("daily")] == list(reversed(daily))
    clock.now += (spec.backup_retention_days + 1) * DAY
    plan = b.prune()
    deleting = {snapshot for snapshot, _ in plan.delete}
    assert plan.dry_run and plan.deleted == []
    assert daily[0] in deleting and daily[1] not in deleting  # the newest daily stays
    kept = spec.pre_deploy_snapshots_kept
    assert deleting & set(pre) == set(pre[: len(pre) - kept])
    assert manual not in deleting
    assert len(b.list_snapshots()) == 15  # a dry run deletes nothing
    applied = b.prune(dry_run=False)
    assert set(applied.deleted) == deleting
    assert {r["id"] for r in b.list_snapshots()} == {daily[1], manual, *pre[-kept:]}


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
                "entryPoint": ["python", "-m", "pipelines.targets.aws_migrate"],
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


def test_logical_dump_runs_a_one_off_task_that_writes_to_the_bucket(aws: dict[str, Any]) -> None:
    clock = Clock(now=1_750_000_000.0)
    b = backups(aws, clock)
    dump_id = f"production-weekly-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(clock.now))}"
    manifest = {"id": dump_id, "size_bytes": 1234, "sha256": "ab" * 32, "fingerprint": {"x": 1}}
    aws["s3"].put_object(  # what the task uploads through its presigned URL
        Bucket=BUCKET, Key=f"dumps/production/{dump_id}/manifest.json", Body=json.dumps(manifest)
    )
    seen = capture_overrides(aws["ecs"])
    with Stubber(aws["ecs"]) as stub:
        expect_task(stub, ["dump", "--id", dump_id], exit_code=0)
        result = b.logical_dump(reason="weekly")
        stub.assert_no_pending_responses()
    assert result["location"] == f"s3://{BUCKET}/dumps/production/{dump_id}/"
    assert result["sha256"] == "ab" * 32 and "fingerprint" not in result
    override = seen[0]
    assert override["name"] == CONTAINER and override["command"] == ["dump", "--id", dump_id]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert set(env) == {"DUMP_PUT_URL", "MANIFEST_PUT_URL"}
    assert f"dumps/production/{dump_id}/dump.pgdump" in env["DUMP_PUT_URL"]
    assert "Signature" in env["DUMP_PUT_URL"]


def test_failed_dump_task_is_reported_with_its_reason(aws: dict[str, Any]) -> None:
    with Stubber(aws["ecs"]) as stub:
        expect_task(stub, ["dump"], exit_code=3)
        with pytest.raises(TargetError, match=r"the dump task .* failed \(exit 3\): Essential"):
            backups(aws).logical_dump()


@pytest.fixture
def drill_id(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("secrets.token_hex", lambda n: "beef")
    return "beef"


def run_drill(
    aws: dict[str, Any], report: dict[str, Any] | None, exit_code: int, tmp: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    clock = Clock(now=1_750_000_000.0)
    b = backups(aws, clock)
    snapshot = b.create_snapshot("weekly")
    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime(clock.now))
    drill_id = f"drill-{stamp}-beef"
    if report is not None:
        aws["s3"].put_object(
            Bucket=BUCKET,
            Key=f"drills/production/{drill_id}/report.json",
            Body=json.dumps(report),
        )
    seen = capture_overrides(aws["ecs"])
    with Stubber(aws["ecs"]) as stub:
        expect_task(stub, ["drill"], exit_code=exit_code)
        result = b.drill(reports=tmp)
    assert result["snapshot"]["id"] == snapshot["id"]
    return result, seen


@pytest.mark.usefixtures("drill_id")
def test_drill_restores_a_tagged_temporary_instance_verifies_and_deletes_it(
    aws: dict[str, Any], tmp_path: Any
) -> None:
    verification = {"ok": True, "rpo_s": 42.0, "tables": 9, "rds_copy_mismatches": []}
    result, seen = run_drill(aws, verification, 0, tmp_path)
    assert result["ok"] is True, result
    assert result["rpo_s"] == 42.0 and result["rto_s"] is not None
    temporary = result["temporary_instance"]
    assert temporary.startswith(f"{INSTANCE}-drill-")
    command = seen[0]["command"]
    assert command[:2] == ["drill", "--id"] and "--copy-host" in command
    env = {e["name"]: e["value"] for e in seen[0]["environment"]}
    assert set(env) == {"COPY_ADMIN_PASSWORD", "DUMP_PUT_URL", "MANIFEST_PUT_URL", "REPORT_PUT_URL"}
    remaining = aws["rds"].describe_db_instances()["DBInstances"]
    assert [i["DBInstanceIdentifier"] for i in remaining] == [INSTANCE], "temporary instance left"
    saved = json.loads((tmp_path / f"{result['id']}.json").read_text())
    assert saved["ok"] is True and (tmp_path / "history.jsonl").exists()


@pytest.mark.usefixtures("drill_id")
def test_drill_carries_its_tags_and_stays_private(aws: dict[str, Any]) -> None:
    b = backups(aws)
    live = aws["rds"].describe_db_instances(DBInstanceIdentifier=INSTANCE)["DBInstances"][0]
    tags = {"drydock:drill": "drill-x", "drydock:purpose": "restore-drill"}
    request = aws_drill.restore_request(b, live, "snap-1", f"{INSTANCE}-drill-x", tags)
    assert request["PubliclyAccessible"] is False and request["DeletionProtection"] is False
    assert request["DBSubnetGroupName"] == live["DBSubnetGroup"]["DBSubnetGroupName"]
    assert {"Key": "drydock:drill", "Value": "drill-x"} in request["Tags"]
    aws["rds"].create_db_snapshot(DBSnapshotIdentifier="snap-1", DBInstanceIdentifier=INSTANCE)
    aws["rds"].restore_db_instance_from_db_snapshot(**request)
    arn = aws["rds"].describe_db_instances(DBInstanceIdentifier=f"{INSTANCE}-drill-x")[
        "DBInstances"
    ][0]["DBInstanceArn"]
    carried = {
        t["Key"]: t["Value"] for t in aws["rds"].list_tags_for_resource(ResourceName=arn)["TagList"]
    }
    assert carried["drydock:drill"] == "drill-x"


@pytest.mark.usefixtures("drill_id")
def test_drill_fails_loudly_on_a_mismatch_and_still_deletes_the_instance(
    aws: dict[str, Any], tmp_path: Any
) -> None:
    verification = {
        "ok": False,
        "rpo_s": 30.0,
        "rds_copy_mismatches": [],
        "logical_mismatches": ["table public.items: 299 rows in the copy, 300 in the source"],
        "restore_errors": [],
    }
    result, _ = run_drill(aws, verification, 1, tmp_path)
    assert result["ok"] is False
    assert "table public.items: 299 rows in the copy, 300 in the source" in result["failure"]
    assert len(aws["rds"].describe_db_instances()["DBInstances"]) == 1


@pytest.mark.usefixtures("drill_id")
def test_drill_without_a_report_names_the_task_exit(aws: dict[str, Any], tmp_path: Any) -> None:
    result, _ = run_drill(aws, None, 137, tmp_path)
    assert result["ok"] is False
    assert (
        "the verification task exited 137: Essential container in task exited" in result["failure"]
    )
    assert len(aws["rds"].describe_db_instances()["DBInstances"]) == 1


def test_drill_without_snapshots_says_how_to_take_one(aws: dict[str, Any], tmp_path: Any) -> None:
    with Stubber(aws["rds"]) as stub:
        stub.add_response(
            "describe_db_snapshots", {"DBSnapshots": []}, {"DBInstanceIdentifier": INSTANCE}
        )
        result = backups(aws).drill(reports=tmp_path)
    assert result["ok"] is False
    assert f"{INSTANCE} has no available snapshot to drill" in result["failure"]
    assert "invoke backup.snapshot --env production" in result["failure"]


def test_tasks_reach_rds_through_the_aws_target(
    aws: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from pipelines import backup_ops

    outputs = {
        **OUTPUTS,
        "service_name": "drydock-production-api",
        "container_name": "api",
        "task_definition_family": "drydock-production-api",
    }
    (tmp_path / "outputs.json").write_text(json.dumps({"production": outputs}))
    monkeypatch.setenv("DRYDOCK_AWS_OUTPUTS_FILE", str(tmp_path / "outputs.json"))
    assert backup_ops.snapshot("production", "manual", reason="by hand", target="aws") == 0
    taken = capsys.readouterr().out.splitlines()[-2]
    assert backup_ops.show("production", target="aws") == 0
    listed = capsys.readouterr().out
    assert taken in listed and "manual" in listed
    assert backup_ops.prune("production", apply=False, target="aws") == 0
    assert "prune production (aws, dry run: nothing deleted)" in capsys.readouterr().out
    assert backup_ops.show("production", target="gcp") == 1
    assert "--target must be local or aws, not 'gcp'" in capsys.readouterr().out
