"""Point-in-time recovery on AWS, against botocore's models (Stubber): the restore request is
private, in the live instance's subnet group, security groups and parameter group; the
window comes from LatestRestorableTime and the retention; the copy is deleted when
discarded, and deleted again when it never became available."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from pipelines.targets.aws import pitr
from pipelines.targets.base import TargetError
from tests.pipelines.targets.aws.backup_fixtures import INSTANCE, REGION, Clock, backups

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

NOW = dt.datetime(2026, 12, 3, 15, 0, tzinfo=dt.UTC)
LATEST = NOW - dt.timedelta(minutes=4)
LIVE: dict[str, Any] = {
    "DBInstanceIdentifier": INSTANCE,
    "DBInstanceClass": "db.t4g.medium",
    "DBInstanceStatus": "available",
    "DBSubnetGroup": {"DBSubnetGroupName": "drydock-production-db"},
    "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0db", "Status": "active"}],
    "DBParameterGroups": [
        {"DBParameterGroupName": "drydock-production-pg18", "ParameterApplyStatus": "in-sync"}
    ],
    "LatestRestorableTime": LATEST,
    "BackupRetentionPeriod": 14,
    "InstanceCreateTime": NOW - dt.timedelta(days=400),
    "PubliclyAccessible": False,
}


@pytest.fixture
def rds(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Stubber]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr("secrets.token_hex", lambda n: "beef")
    client = boto3.client("rds", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def store(client: Any) -> Any:
    return backups({"rds": client}, Clock(now=NOW.timestamp()))


def expect_live(stub: Stubber) -> None:
    stub.add_response(
        "describe_db_instances", {"DBInstances": [LIVE]}, {"DBInstanceIdentifier": INSTANCE}
    )


def test_the_window_runs_from_the_retention_to_the_latest_restorable_time(
    rds: tuple[Any, Stubber],
) -> None:
    client, stub = rds
    expect_live(stub)
    found = pitr.window(store(client))
    assert found["latest"] == LATEST.timestamp()
    assert found["earliest"] == (NOW - dt.timedelta(days=14)).timestamp()


def test_a_restore_goes_beside_the_live_instance_privately_and_is_deleted_after(
    rds: tuple[Any, Stubber],
) -> None:
    client, stub = rds
    target = LATEST - dt.timedelta(minutes=30)
    temporary = f"{INSTANCE}-pitr-20261203t150000-beef"
    expect_live(stub)
    stub.add_response(
        "restore_db_instance_to_point_in_time",
        {"DBInstance": {"DBInstanceIdentifier": temporary}},
        {
            "SourceDBInstanceIdentifier": INSTANCE,
            "TargetDBInstanceIdentifier": temporary,
            "RestoreTime": target,
            "DBInstanceClass": "db.t4g.medium",
            "DBSubnetGroupName": "drydock-production-db",
            "VpcSecurityGroupIds": ["sg-0db"],
            "DBParameterGroupName": "drydock-production-pg18",
            "PubliclyAccessible": False,
            "MultiAZ": False,
            "DeletionProtection": False,
            "AutoMinorVersionUpgrade": False,
            "CopyTagsToSnapshot": False,
            "Tags": ANY,
        },
    )
    copy = {
        "DBInstanceIdentifier": temporary,
        "DBInstanceStatus": "available",
        "Endpoint": {"Address": "copy.internal", "Port": 5432},
        "TagList": [{"Key": pitr.TAG, "Value": "pitr-20261203t150000-beef"}],
    }
    for _ in range(2):  # the waiter, then the endpoint
        stub.add_response(
            "describe_db_instances", {"DBInstances": [copy]}, {"DBInstanceIdentifier": temporary}
        )
    restored = pitr.restore_to_time(store(client), target.isoformat())
    assert restored["instance"] == temporary and restored["endpoint"] == "copy.internal"
    stub.add_response("describe_db_instances", {"DBInstances": [LIVE, copy]}, {})
    stub.add_response(
        "delete_db_instance",
        {"DBInstance": {"DBInstanceIdentifier": temporary}},
        {
            "DBInstanceIdentifier": temporary,
            "SkipFinalSnapshot": True,
            "DeleteAutomatedBackups": True,
        },
    )
    stub.add_client_error(
        "describe_db_instances",
        service_error_code="DBInstanceNotFound",
        expected_params={"DBInstanceIdentifier": temporary},
    )
    pitr.discard(store(client), restored["id"])


def test_a_copy_that_never_becomes_available_is_deleted(rds: tuple[Any, Stubber]) -> None:
    client, stub = rds
    temporary = f"{INSTANCE}-pitr-20261203t150000-beef"
    expect_live(stub)
    stub.add_response(
        "restore_db_instance_to_point_in_time",
        {"DBInstance": {"DBInstanceIdentifier": temporary}},
        {"TargetDBInstanceIdentifier": temporary, "SourceDBInstanceIdentifier": INSTANCE}
        | {k: ANY for k in ("RestoreTime", "DBInstanceClass", "DBSubnetGroupName", "Tags")}
        | {k: ANY for k in ("VpcSecurityGroupIds", "DBParameterGroupName", "MultiAZ")}
        | {k: ANY for k in ("PubliclyAccessible", "DeletionProtection")}
        | {k: ANY for k in ("AutoMinorVersionUpgrade", "CopyTagsToSnapshot")},
    )
    stub.add_response(
        "describe_db_instances",
        {"DBInstances": [{"DBInstanceIdentifier": temporary, "DBInstanceStatus": "failed"}]},
        {"DBInstanceIdentifier": temporary},
    )
    stub.add_response(
        "delete_db_instance",
        {"DBInstance": {"DBInstanceIdentifier": temporary}},
        {
            "DBInstanceIdentifier": temporary,
            "SkipFinalSnapshot": True,
            "DeleteAutomatedBackups": True,
        },
    )
    stub.add_client_error(
        "describe_db_instances",
        service_error_code="DBInstanceNotFound",
        expected_params={"DBInstanceIdentifier": temporary},
    )
    with pytest.raises(TargetError, match="db_instance_available"):
        pitr.restore_to_time(store(client), (LATEST - dt.timedelta(hours=1)).isoformat())


@pytest.mark.parametrize(
    ("when", "says"),
    [
        (NOW + dt.timedelta(hours=1), "in the future"),
        (NOW - dt.timedelta(days=30), "outside the recoverable window"),
        (LATEST + dt.timedelta(minutes=2), "outside the recoverable window"),
    ],
)
def test_targets_outside_the_window_are_refused_before_anything_is_created(
    rds: tuple[Any, Stubber], when: dt.datetime, says: str
) -> None:
    client, stub = rds
    expect_live(stub)
    with pytest.raises(TargetError, match=says) as caught:
        pitr.restore_to_time(store(client), when.isoformat())
    assert "2026-11-19" in str(caught.value)  # the window's start, 14 days back


def test_discard_never_deletes_an_instance_it_did_not_make(rds: tuple[Any, Stubber]) -> None:
    client, stub = rds
    stub.add_response("describe_db_instances", {"DBInstances": [LIVE]}, {})
    with pytest.raises(TargetError, match="nothing deleted"):
        pitr.discard(store(client), "pitr-unknown")
