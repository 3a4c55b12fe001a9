"""The on-call operations on the aws target: flags from and into task definition revisions,
the S3 ledger, the alarm history in the timeline, and the database tasks.

moto serves ECS's task definitions and services and S3; botocore's Stubber answers the
deployment sequences and CloudWatch's alarm history, which moto does not model.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from infra.names import Names
from infra.spec import defaults
from pipelines import operations
from pipelines.lock import Holding
from pipelines.targets.aws import ecs as aws_ecs
from pipelines.targets.aws.s3 import S3Ledger
from pipelines.targets.aws.target import AwsTarget
from pipelines.targets.base import MigrationStatus, RolloutResult, RolloutState, TargetError
from tests.pipelines.targets.aws.conftest import (
    BUCKET,
    CLUSTER,
    FAMILY,
    OLD_IMAGE,
    REGION,
    SERVICE,
    FakeTime,
    client,
    deployment,
    outputs,
    service,
    task_definition,
    td_arn,
)

pytestmark = pytest.mark.unit

WHERE = {"cluster": CLUSTER, "services": [SERVICE]}
OLD, NEW = 7, 8
BREAKER = "ECS deployment circuit breaker: tasks failed to start."
TAGS = [
    {"key": "team", "value": "api"},
    {"key": "drydock:release", "value": OLD_IMAGE},
    {"key": "drydock:git-sha", "value": "c0ffee"},
    {"key": "drydock:completed-at", "value": "1"},
]


def flagged(revision: int, **variables: str) -> dict[str, Any]:
    """The service's task definition with these plain environment entries."""
    definition = task_definition(FAMILY, revision, OLD_IMAGE)
    definition["containerDefinitions"][0]["environment"] = [
        {"name": k, "value": v} for k, v in variables.items()
    ]
    return definition


def target(fake_time: FakeTime | None = None, **clients: Any) -> AwsTarget:
    ticks = fake_time or FakeTime()
    return AwsTarget(
        {"staging": outputs()},
        spec=defaults("staging"),
        clients=clients,
        poll_s=15.0,
        rollout_timeout_s=600.0,
        sleep=ticks.sleep,
        clock=ticks.clock,
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield s3


# -- flags.list ----------------------------------------------------------------


def serve(ecs: Any, definition: dict[str, Any]) -> None:
    request = {k: v for k, v in definition.items() if k not in {"taskDefinitionArn", "revision"}}
    arn = ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arn, desiredCount=2)


def test_flags_in_force_are_the_defaults_overridden_by_the_current_task_definition() -> None:
    with mock_aws():
        ecs = client("ecs")
        serve(ecs, flagged(1, FLAG_ORDERS_ENABLED="false", OTHER="1"))
        flags = {f["name"]: f for f in operations.list_flags("staging", target(ecs=ecs))}
    assert flags["ORDERS_ENABLED"]["enabled"] is False and flags["ORDERS_ENABLED"]["overridden"]
    assert flags["REGISTRATION_OPEN"]["enabled"] is True
    assert not flags["REGISTRATION_OPEN"]["overridden"]


def test_a_flag_that_is_not_a_boolean_names_the_revision() -> None:
    with mock_aws():
        ecs = client("ecs")
        serve(ecs, flagged(1, FLAG_ORDERS_ENABLED="maybe"))
        with pytest.raises(TargetError, match=r"staging: .*:1: FLAG_ORDERS_ENABLED='maybe'"):
            operations.list_flags("staging", target(ecs=ecs))


# -- flags.set -----------------------------------------------------------------


def test_a_flag_revision_changes_the_flag_entries_and_nothing_else() -> None:
    with mock_aws():
        ecs = client("ecs")
        definition = flagged(0, OTHER="1", FLAG_ORDERS_ENABLED="true")
        request = {k: v for k, v in definition.items() if k not in {"taskDefinitionArn"}}
        request.pop("revision")
        arn = ecs.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
        _, before = aws_ecs.describe_revision(ecs, arn, "api")
        wanted = {"FLAG_ORDERS_ENABLED": "false", "FLAG_REGISTRATION_OPEN": "false"}
        new_arn = aws_ecs.register_with_environment(ecs, before, "api", wanted, {})
        _, after = aws_ecs.describe_revision(ecs, new_arn, "api")
    [old], [new] = before["containerDefinitions"], after["containerDefinitions"]
    assert aws_ecs.container_environment(after, "api") == {"OTHER": "1", **wanted}
    assert new["secrets"] == old["secrets"]  # still valueFrom ARNs, never values
    assert {k: v for k, v in new.items() if k != "environment"} == {
        k: v for k, v in old.items() if k != "environment"
    }


def read_current(stub: Stubber, definition: dict[str, Any]) -> None:
    stub.add_response(
        "describe_services",
        service(OLD, [deployment("ecs-svc/old", OLD, "PRIMARY", "COMPLETED")], [("e0", "old")]),
        WHERE,
    )
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": definition, "tags": TAGS},
        {"taskDefinition": td_arn(FAMILY, OLD), "include": ["TAGS"]},
    )


def start_flag_deploy(stub: Stubber) -> None:
    """Read the flags, read the revision again, register the flagged copy, update."""
    current = flagged(OLD, OTHER="1", FLAG_ORDERS_ENABLED="true")
    read_current(stub, current)
    read_current(stub, current)
    expected = {
        k: copy.deepcopy(v)
        for k, v in current.items()
        if k not in {"taskDefinitionArn", "revision"}
    }
    expected["containerDefinitions"][0]["environment"] = [
        {"name": "OTHER", "value": "1"},
        {"name": "FLAG_ORDERS_ENABLED", "value": "false"},
    ]
    expected["tags"] = TAGS[:3]  # the old completion mark is not carried over
    stub.add_response(
        "register_task_definition", {"taskDefinition": flagged(NEW, OTHER="1")}, expected
    )
    stub.add_response(
        "update_service",
        {
            "service": service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS")])[
                "services"
            ][0]
        },
        {
            "cluster": CLUSTER,
            "service": SERVICE,
            "taskDefinition": td_arn(FAMILY, NEW),
            "forceNewDeployment": False,
        },
    )


def set_orders_off(s3: Any, setup: Any, fake_time: FakeTime) -> str | TargetError:
    """flags.set ORDERS_ENABLED=false against the stubbed sequence: its message or error."""
    ecs = client("ecs")
    ledger = S3Ledger(BUCKET, client=s3)
    with Stubber(ecs) as stub:
        setup(stub)
        try:
            message: str | TargetError = operations.set_flags(
                "staging", ["orders_enabled=False"], ledger, target(fake_time, ecs=ecs, s3=s3)
            )
        except TargetError as exc:
            message = exc
        stub.assert_no_pending_responses()
    return message


def test_set_flags_rolls_out_a_revision_watched_like_a_release_and_records_it(
    s3: Any, fake_time: FakeTime
) -> None:
    def setup(stub: Stubber) -> None:
        start_flag_deploy(stub)
        in_progress = [
            deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS"),
            deployment("ecs-svc/old", OLD, "ACTIVE", "COMPLETED"),
        ]
        stub.add_response("describe_services", service(NEW, in_progress), WHERE)
        done = service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "COMPLETED")])
        stub.add_response("describe_services", done, WHERE)
        stub.add_response("tag_resource", {}, {"resourceArn": td_arn(FAMILY, NEW), "tags": ANY})

    message = set_orders_off(s3, setup, fake_time)
    assert message == (
        "staging: ORDERS_ENABLED=false applied by a new task definition revision, rolled out "
        "in 15.0 s"
    )
    assert fake_time.sleeps == [15.0]
    [record] = S3Ledger(BUCKET, client=s3).entries("staging")
    assert record["kind"] == "flag" and record["ok"] is True
    assert record["changes"] == {"ORDERS_ENABLED": False} and record["release"] == OLD_IMAGE


def test_set_flags_rolled_back_by_ecs_fails_and_the_previous_flags_keep_serving(
    s3: Any, fake_time: FakeTime
) -> None:
    def setup(stub: Stubber) -> None:
        start_flag_deploy(stub)
        back = [
            deployment("ecs-svc/back", OLD, "PRIMARY", "IN_PROGRESS"),
            deployment("ecs-svc/new", NEW, "ACTIVE", "FAILED", BREAKER),
        ]
        stub.add_response("describe_services", service(OLD, back), WHERE)
        settled = service(OLD, [deployment("ecs-svc/back", OLD, "PRIMARY", "COMPLETED")])
        stub.add_response("describe_services", settled, WHERE)

    error = set_orders_off(s3, setup, fake_time)
    assert isinstance(error, TargetError)
    assert "circuit breaker" in str(error) and BREAKER in str(error)
    assert str(error).endswith("the previous flags keep serving")
    [record] = S3Ledger(BUCKET, client=s3).entries("staging")
    assert record["kind"] == "flag" and record["ok"] is False and BREAKER in record["reason"]


def test_set_flags_already_in_force_deploys_nothing(s3: Any, fake_time: FakeTime) -> None:
    def setup(stub: Stubber) -> None:
        read_current(stub, flagged(OLD, FLAG_ORDERS_ENABLED="false"))

    message = set_orders_off(s3, setup, fake_time)
    assert message == "staging: ORDERS_ENABLED=false already in force; nothing was deployed"
    assert S3Ledger(BUCKET, client=s3).entries() == []


@pytest.mark.parametrize(
    ("assignments", "error"),
    [
        (["NOPE=false"], "unknown flag 'NOPE'"),
        (["ORDERS_ENABLED=maybe"], "true or false"),
        ([], "no flag"),
    ],
)
def test_set_flags_checks_its_input_before_touching_aws(assignments: list[str], error: str) -> None:
    # No outputs, clients or credentials are given: any AWS call would fail differently.
    with pytest.raises(TargetError, match=error):
        operations.set_flags("staging", assignments, None, "aws")


# -- rollback, database --------------------------------------------------------


class Rolling:
    """An environment whose rollback returns a set result."""

    def __init__(self, result: RolloutResult) -> None:
        self.result = result

    def current_release(self) -> str:
        return "r2"

    def rollback(self, to_release: str | None) -> RolloutResult:
        return self.result

    @property
    def operations(self) -> Rolling:
        return self  # the rolled-back release's schema note

    def schema_behind(self, release_id: str) -> None:
        return None


@pytest.mark.parametrize("ok", [True, False])
def test_rollback_on_aws_is_recorded_in_the_s3_ledger(
    s3: Any, monkeypatch: pytest.MonkeyPatch, ok: bool
) -> None:
    monkeypatch.setenv("DRYDOCK_LEDGER_BUCKET", BUCKET)
    aws = target(s3=s3)
    state = RolloutState.COMPLETED if ok else RolloutState.ROLLED_BACK
    result = RolloutResult(state, "r1", "r2", "the reason", 42.0)
    real = aws.environment  # production's, for the ledger's clients
    taken: list[str] = []

    @contextmanager
    def lock(name: str, purpose: str) -> Iterator[Holding]:
        with real(name).lock().held(purpose) as held:  # the S3 lock, in moto
            taken.append(f"{name}: {purpose}")
            yield held

    monkeypatch.setattr(
        aws, "environment", lambda name: Rolling(result) if name == "staging" else real(name)
    )
    monkeypatch.setattr(aws, "lock", lock)
    if ok:
        assert "rolled back from r2 to r1 in 42.0 s" in operations.rollback("staging", None, aws)
    else:
        with pytest.raises(TargetError, match="the reason; r2 keeps serving"):
            operations.rollback("staging", None, aws)
    assert taken == ["staging: rollback staging to the release before"]
    [record] = S3Ledger(BUCKET, client=s3).entries("staging")
    assert record["kind"] == "rollback" and record["ok"] is ok
    assert (record["release"], record["previous"]) == ("r1", "r2")


class Database:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def migration_status(self) -> MigrationStatus:
        self.calls.append("status")
        return MigrationStatus("0001", "0002", ("0002",))

    def migrate(self) -> MigrationStatus:
        self.calls.append("upgrade")
        return MigrationStatus("0002", "0002", ())


def test_db_status_and_migrate_go_through_the_environments_database() -> None:
    aws = target()
    database = Database()
    aws.environment("staging").__dict__["database"] = database  # the cached property's slot
    assert operations.db_status("staging", aws) == (
        "staging: schema at 0001, release head 0002, pending: 0002"
    )
    assert operations.db_migrate("staging", aws) == "staging: migrated to 0002"
    assert database.calls == ["status", "upgrade"]


def test_db_reset_on_aws_refuses_production_and_says_how_staging_is_reset() -> None:
    with pytest.raises(TargetError, match="refuses production"):
        operations.db_reset("production", "aws")
    with pytest.raises(TargetError) as refused:
        operations.db_reset("staging", "aws")
    text = str(refused.value)
    assert "not dropped by a task" in text and "snapshot" in text
    assert "invoke infra.up --stack staging" in text and text.endswith("nothing was changed")
    with pytest.raises(TargetError, match="unknown target 'gcp'"):
        operations.db_reset("staging", "gcp")


# -- incident.timeline ---------------------------------------------------------


def history_item(alarm: str, at: datetime, old: str, new: str, reason: str) -> dict[str, Any]:
    data = {"oldState": {"stateValue": old}, "newState": {"stateValue": new, "stateReason": reason}}
    return {
        "AlarmName": alarm,
        "AlarmType": "MetricAlarm",
        "Timestamp": at,
        "HistoryItemType": "StateUpdate",
        "HistorySummary": f"Alarm updated from {old} to {new}",
        "HistoryData": json.dumps(data),
    }


def test_timeline_merges_the_s3_ledger_and_the_alarm_history_in_time_order(s3: Any) -> None:
    ledger = S3Ledger(BUCKET, client=s3)
    now = time.time()
    old = {"at": now - 7200, "kind": "deploy", "env": "staging", "release": "r0", "ok": True}
    s3.put_object(Bucket=BUCKET, Key="ledger/staging/old.json", Body=json.dumps(old).encode())
    ledger.append("deploy", "staging", release="r1", ok=True, failed_step=None)
    ledger.append("snapshot", "production", id="elsewhere")
    cloudwatch = client("cloudwatch")
    alarms = sorted(Names("staging").alarms.values())
    error_rate = Names("staging").alarms["error_rate"]
    with Stubber(cloudwatch) as stub:
        for name in alarms:
            items = []
            if name == error_rate:
                items = [
                    history_item(name, datetime.fromtimestamp(now - 60, UTC), "OK", "ALARM", "x|y"),
                    history_item(name, datetime.fromtimestamp(now + 60, UTC), "ALARM", "OK", "ok"),
                ]
            stub.add_response(
                "describe_alarm_history",
                {"AlarmHistoryItems": items},
                {"AlarmName": name, "HistoryItemType": "StateUpdate", "StartDate": ANY},
            )
        text = operations.timeline("staging", "1h", ledger, target(cloudwatch=cloudwatch))
        stub.assert_no_pending_responses()
    assert text.startswith("## Timeline: staging since")
    rows = [line for line in text.splitlines() if line.startswith("| 2")]
    assert [row.split(" | ")[1] for row in rows] == ["alarm", "deploy", "alarm"]
    assert f"{error_rate} OK -> ALARM: x/y" in rows[0]
    assert "deploy r1 ok" in rows[1] and f"{error_rate} ALARM -> OK" in rows[2]
    assert "r0" not in text and "elsewhere" not in text
