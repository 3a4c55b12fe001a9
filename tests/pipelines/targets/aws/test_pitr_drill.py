"""The point-in-time drill on AWS: RDS under botocore's Stubber (moto has no restore to a
time), the one-off verification task's ECS calls under the Stubber too (moto runs no
containers), the bucket, the presigned URLs and the ledger in moto's S3.

The orders come from a recorded ledger: writing them through the API is the shared code the
local drill runs against a real environment (test_pitr_drill_e2e.py); what is proven here is
the AWS sequence around them: restore request private in the live instance's subnet group,
security groups and parameter group -> waits -> task run -> verdict read -> delete."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipelines.backups.pitr_orders import Acked, OrderLedger
from pipelines.targets.aws import pitr, pitr_drill
from pipelines.targets.aws.s3 import S3Ledger
from pipelines.targets.base import TargetError
from tests.pipelines.targets.aws.backup_fixtures import (
    BUCKET,
    INSTANCE,
    REGION,
    Clock,
    backups,
    capture_overrides,
    expect_task,
    moto_account,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

NOW = dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC)
T = NOW - dt.timedelta(minutes=1)
RESTORE_ID = "pitr-20261203t150000-beef"  # made at NOW, when RDS is already past T
COPY = f"{INSTANCE}-{RESTORE_ID}"
LATE_ID = "pitr-20261203t150001-beef"  # made a poll (1 s) later, when RDS had to catch up
LATE_COPY = f"{INSTANCE}-{LATE_ID}"
DRILL_ID = "pitr-drill-20261203T150000Z-beef"
VERDICT_KEY = f"drills/production/{DRILL_ID}/verdict.json"
LEDGER_KEY = f"drills/production/{DRILL_ID}/ledger.json"


def live(latest: dt.datetime) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": INSTANCE,
        "DBInstanceClass": "db.t4g.medium",
        "DBInstanceStatus": "available",
        "DBSubnetGroup": {"DBSubnetGroupName": "drydock-production-db"},
        "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0db", "Status": "active"}],
        "DBParameterGroups": [
            {"DBParameterGroupName": "drydock-production-pg18", "ParameterApplyStatus": "in-sync"}
        ],
        "LatestRestorableTime": latest,
        "BackupRetentionPeriod": 14,
        "InstanceCreateTime": NOW - dt.timedelta(days=400),
        "PubliclyAccessible": False,
    }


def available(copy: str) -> dict[str, Any]:
    return {
        "DBInstanceIdentifier": copy,
        "DBInstanceStatus": "available",
        "Endpoint": {"Address": "copy.internal", "Port": 5432},
    }


@dataclass
class RecordedOrders:
    """The writing side's answer: three orders, two before T, and what cleanup was asked."""

    book: OrderLedger = field(
        default_factory=lambda: OrderLedger(
            T.timestamp(),
            7,
            9,
            tuple(
                Acked(i, T.timestamp() + dt_s - 0.1, T.timestamp() + dt_s, 7, (("S", 1, 7),))
                for i, dt_s in ((1, -5.0), (2, -2.0), (3, 3.0))
            ),
        )
    )
    cleaned: list[str] = field(default_factory=list)

    def write(
        self, before_s: float, after_s: float, quiet_s: float
    ) -> tuple[OrderLedger, list[str]]:
        return self.book, []

    def cleanup(self) -> list[str]:
        self.cleaned.append("done")
        return ["/api/admin/users/7: 204", "/api/inventory/9: 204"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setattr("secrets.token_hex", lambda n: "beef")
    yield from moto_account(monkeypatch)


@pytest.fixture
def calls(aws: dict[str, Any]) -> list[str]:
    """Every AWS operation in the order the drill made it, across rds, ecs and s3."""
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    for name in ("rds", "ecs", "s3"):
        aws[name].meta.events.register(f"after-call.{name}", record)
    return seen


def expect_restore(stub: Stubber, archived_late: bool = False) -> str:
    """RDS behind T once (or not), then past it; the restore; the copy available."""
    restore_id, copy = (LATE_ID, LATE_COPY) if archived_late else (RESTORE_ID, COPY)
    if archived_late:
        stub.add_response(
            "describe_db_instances",
            {"DBInstances": [live(T - dt.timedelta(minutes=4))]},
            {"DBInstanceIdentifier": INSTANCE},
        )
    for _ in range(2):  # archived past T, then the restore's own window check
        stub.add_response(
            "describe_db_instances",
            {"DBInstances": [live(T + dt.timedelta(seconds=5))]},
            {"DBInstanceIdentifier": INSTANCE},
        )
    stub.add_response(
        "restore_db_instance_to_point_in_time",
        {"DBInstance": {"DBInstanceIdentifier": copy}},
        {
            "SourceDBInstanceIdentifier": INSTANCE,
            "TargetDBInstanceIdentifier": copy,
            "RestoreTime": T,
            "DBInstanceClass": "db.t4g.medium",
            "DBSubnetGroupName": "drydock-production-db",
            "VpcSecurityGroupIds": ["sg-0db"],
            "DBParameterGroupName": "drydock-production-pg18",
            "PubliclyAccessible": False,
            "MultiAZ": False,
            "DeletionProtection": False,
            "AutoMinorVersionUpgrade": False,
            "CopyTagsToSnapshot": False,
            "Tags": [
                {"Key": pitr.TAG, "Value": restore_id},
                {"Key": "drydock:purpose", "Value": "pitr-drill"},
                {"Key": "environment", "Value": "production"},
                {"Key": "drydock:restore-time", "Value": "2026-12-03T14:59:00Z"},
            ],
        },
    )
    for _ in range(2):  # the waiter, then the endpoint
        stub.add_response(
            "describe_db_instances",
            {"DBInstances": [available(copy)]},
            {"DBInstanceIdentifier": copy},
        )
    return copy


def expect_password_and_settle(stub: Stubber, copy: str = COPY) -> None:
    stub.add_response(
        "modify_db_instance",
        {"DBInstance": {"DBInstanceIdentifier": copy}},
        {
            "DBInstanceIdentifier": copy,
            "MasterUserPassword": ANY,
            "ManageMasterUserPassword": False,
            "ApplyImmediately": True,
        },
    )
    stub.add_response(
        "describe_db_instances", {"DBInstances": [available(copy)]}, {"DBInstanceIdentifier": copy}
    )


def expect_delete(stub: Stubber, copy: str = COPY) -> None:
    stub.add_response(
        "delete_db_instance",
        {"DBInstance": {"DBInstanceIdentifier": copy}},
        {"DBInstanceIdentifier": copy, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True},
    )
    stub.add_client_error(
        "describe_db_instances",
        service_error_code="DBInstanceNotFound",
        expected_params={"DBInstanceIdentifier": copy},
    )


def answer_as_the_task(
    aws: dict[str, Any], verdict: dict[str, Any] | None, calls: list[str] | None = None
) -> list[dict[str, Any]]:
    """As the task starts: the ledger it will read, and the verdict it would upload (these
    calls are the task's, not the drill's, so they are taken out of `calls`)."""
    books: list[dict[str, Any]] = []
    s3 = boto3.client("s3", region_name=REGION)

    def started(**_: Any) -> None:
        before = len(calls) if calls is not None else 0
        body = s3.get_object(Bucket=BUCKET, Key=LEDGER_KEY)["Body"].read()
        books.append(json.loads(body))
        if verdict is not None:
            s3.put_object(Bucket=BUCKET, Key=VERDICT_KEY, Body=json.dumps(verdict))
        if calls is not None:
            del calls[before:]

    aws["ecs"].meta.events.register("provide-client-params.ecs.RunTask", started)
    return books


def drill(aws: dict[str, Any], tmp: Path, orders: RecordedOrders) -> Any:
    clock = Clock(now=NOW.timestamp())
    ledger = S3Ledger(BUCKET, client=aws["s3"])
    return pitr_drill.run(backups(aws, clock), orders, tmp, ledger), ledger


PASSED = {
    "ok": True,
    "orders_written": 3,
    "orders_expected": 2,
    "orders_in_copy": 2,
    "mismatches": [],
    "newest_write": "2026-12-03T14:58:58.000Z",
    "rpo_s": 2.0,
    "first_answer_at": NOW.timestamp() + 95,
}


def test_the_drill_restores_privately_verifies_in_the_vpc_and_deletes_the_copy(
    aws: dict[str, Any], calls: list[str], tmp_path: Path
) -> None:
    orders = RecordedOrders()
    books = answer_as_the_task(aws, PASSED, calls)
    overrides = capture_overrides(aws["ecs"])
    with Stubber(aws["rds"]) as rds, Stubber(aws["ecs"]) as ecs:
        copy = expect_restore(rds, archived_late=True)
        expect_password_and_settle(rds, copy)
        expect_task(ecs, ["pitr-verify"], exit_code=0)
        expect_delete(rds, copy)
        report, ledger = drill(aws, tmp_path, orders)
        rds.assert_no_pending_responses()
        ecs.assert_no_pending_responses()
    assert report.ok, report.summary()
    key = [
        "RestoreDBInstanceToPointInTime",
        "ModifyDBInstance",
        "PutObject",  # the ledger
        "RunTask",
        "GetObject",  # the verdict
        "DeleteDBInstance",
        "PutObject",  # the ledger entry
    ]
    assert [c for c in calls if c in key] == key
    assert calls.count("DescribeDBInstances") == 7  # behind, past, window, 2 waits, settled, gone
    # The task was pointed at the copy, with the ledger the drill wrote and a one-time password.
    [override] = overrides
    assert override["command"][:3] == ["pitr-verify", "--id", DRILL_ID]
    assert override["command"][3:] == ["--copy-host", "copy.internal", "--copy-port", "5432"]
    env = {e["name"]: e["value"] for e in override["environment"]}
    assert set(env) == {"COPY_ADMIN_PASSWORD", "LEDGER_GET_URL", "VERDICT_PUT_URL"}
    assert LEDGER_KEY in env["LEDGER_GET_URL"] and VERDICT_KEY in env["VERDICT_PUT_URL"]
    assert books == [orders.book.to_json()]
    # Measured and written next to the weekly drill's report.
    assert report.point == "2026-12-03T14:59:00.000Z" and report.archive_catch_up_s == 1.0
    assert (report.orders_written, report.orders_expected, report.orders_in_copy) == (3, 2, 2)
    assert report.rpo_s == 2.0 and report.rto_s is not None
    # The task answered 95 s after NOW; the restore was requested 1 s after NOW (one poll).
    assert report.restore["first_answer_s"] == 94.0
    assert report.cleanup == [
        f"{LATE_COPY}: deleted",
        "/api/admin/users/7: 204",
        "/api/inventory/9: 204",
    ]
    saved = json.loads((tmp_path / f"{DRILL_ID}.json").read_text())
    assert saved["ok"] is True and saved["target"] == "aws"
    markdown = (tmp_path / f"{DRILL_ID}.md").read_text()
    assert f"| copy instance | {LATE_COPY} |" in markdown
    assert "| RTO (restore request to the copy available with its password set) |" in markdown
    history = (tmp_path / "pitr-history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["id"] == DRILL_ID
    [entry] = ledger.entries(env="production", kind="pitr-drill")
    assert entry["ok"] is True and entry["rpo_s"] == 2.0 and entry["target"] == "aws"


def test_mismatches_fail_the_drill_by_name_and_the_copy_is_still_deleted(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    verdict = {
        **PASSED,
        "ok": False,
        "orders_in_copy": 3,
        "mismatches": ["order 3 (started 2026-12-03T14:59:02.900Z, after T) is in the copy"],
    }
    answer_as_the_task(aws, verdict)
    with Stubber(aws["rds"]) as rds, Stubber(aws["ecs"]) as ecs:
        expect_restore(rds)
        expect_password_and_settle(rds)
        expect_task(ecs, ["pitr-verify"], exit_code=1)
        expect_delete(rds)
        report, _ = drill(aws, tmp_path, RecordedOrders())
        rds.assert_no_pending_responses()
    assert not report.ok
    assert report.problems() == verdict["mismatches"]
    assert report.cleanup[0] == f"{COPY}: deleted"


def test_a_fault_after_the_restore_deletes_the_copy_and_says_what_stopped(
    aws: dict[str, Any], calls: list[str], tmp_path: Path
) -> None:
    orders = RecordedOrders()
    with Stubber(aws["rds"]) as rds:
        expect_restore(rds)
        rds.add_client_error(
            "modify_db_instance",
            service_error_code="InvalidDBInstanceState",
            service_message="Instance is not in available state",
        )
        expect_delete(rds)
        report, ledger = drill(aws, tmp_path, orders)
        rds.assert_no_pending_responses()
    assert not report.ok and "InvalidDBInstanceState" in report.failure
    assert "RunTask" not in calls and "DeleteDBInstance" in calls
    assert report.cleanup[0] == f"{COPY}: deleted" and orders.cleaned == ["done"]
    assert ledger.entries(env="production", kind="pitr-drill")[0]["ok"] is False


def test_a_task_that_writes_no_verdict_fails_with_its_exit(
    aws: dict[str, Any], tmp_path: Path
) -> None:
    answer_as_the_task(aws, None)
    with Stubber(aws["rds"]) as rds, Stubber(aws["ecs"]) as ecs:
        expect_restore(rds)
        expect_password_and_settle(rds)
        expect_task(ecs, ["pitr-verify"], exit_code=137)
        expect_delete(rds)
        report, _ = drill(aws, tmp_path, RecordedOrders())
    assert not report.ok
    assert report.failure == (
        "the verification task wrote no verdict; it exited 137: Essential container in task exited"
    )


def test_rds_that_never_archives_past_t_restores_nothing(
    aws: dict[str, Any], calls: list[str], tmp_path: Path
) -> None:
    orders = RecordedOrders()
    with Stubber(aws["rds"]) as rds:
        for _ in range(3):
            rds.add_response(
                "describe_db_instances",
                {"DBInstances": [live(T - dt.timedelta(minutes=4))]},
                {"DBInstanceIdentifier": INSTANCE},
            )
        store = backups(aws, Clock(now=NOW.timestamp()))
        report = pitr_drill.run(
            store, orders, tmp_path, S3Ledger(BUCKET, client=aws["s3"]), catch_up_timeout_s=1.5
        )
    assert not report.ok
    assert "RDS had not archived past T = 2026-12-03T14:59:00.000Z after 1.5 s" in report.failure
    assert "nothing was restored" in report.failure
    assert "RestoreDBInstanceToPointInTime" not in calls and orders.cleaned == ["done"]


def test_a_stack_without_a_service_url_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    from tests.pipelines.targets.aws.conftest import environment

    with pytest.raises(TargetError, match="no service URL output") as refused:
        environment(service_url="").backups.pitr_drill(tmp_path, S3Ledger(BUCKET, client=None))
    assert "invoke infra.up --stack staging" in str(refused.value)
    assert "Nothing was created" in str(refused.value)
    assert list(tmp_path.iterdir()) == []
