"""Migrations as a one-off ECS task (Stubber: moto runs no containers): the task is placed
on the private subnets with no public IP, its exit code decides, a failure names the
stopped reason and the log stream to read, and the status comes back from its log."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from pipelines.targets.aws.database import ENTRY_POINT
from pipelines.targets.aws.migrate_task import STATUS_MARKER
from pipelines.targets.base import Release, TargetError
from tests.pipelines.targets.aws.conftest import (
    CLUSTER,
    LOG_GROUP,
    MIGRATE_FAMILY,
    NEW_IMAGE,
    REGION,
    FakeTime,
    client,
    environment,
    task_definition,
    td_arn,
)

pytestmark = pytest.mark.unit
TASK = f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/0123456789abcdef"
STREAM = "migrate/migrate/0123456789abcdef"
STATUS = {"current": "0007", "head": "0007", "pending": []}


def migrate_definition() -> dict[str, Any]:
    definition = task_definition(MIGRATE_FAMILY, 3, NEW_IMAGE, "migrate")
    definition["containerDefinitions"][0]["entryPoint"] = ENTRY_POINT
    return definition


def task(exit_code: int | None, reason: str = "Essential container in task exited") -> Any:
    container: dict[str, Any] = {"name": "migrate", "lastStatus": "STOPPED"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    else:
        container["reason"] = "CannotPullContainerError: pull access denied"
    return {
        "tasks": [
            {
                "taskArn": TASK,
                "lastStatus": "STOPPED",
                "stoppedReason": reason,
                "containers": [container],
            }
        ],
        "failures": [],
    }


def run_until_stopped(
    stub: Stubber, command: list[str], exit_code: int | None, with_environment: bool = False
) -> None:
    """The calls of one task run; `with_environment`: its override carries variables too."""
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": migrate_definition()},
        {"taskDefinition": MIGRATE_FAMILY, "include": ["TAGS"]},
    )
    stub.add_response(
        "run_task",
        {"tasks": [{"taskArn": TASK, "lastStatus": "PROVISIONING"}], "failures": []},
        {
            "cluster": CLUSTER,
            "taskDefinition": td_arn(MIGRATE_FAMILY, 3),
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": f"drydock-{command[0]}",
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-0a", "subnet-0b"],
                    "securityGroups": ["sg-0tasks"],
                    "assignPublicIp": "DISABLED",
                }
            },
            "overrides": ANY
            if with_environment
            else {"containerOverrides": [{"name": "migrate", "command": command}]},
        },
    )
    where = {"cluster": CLUSTER, "tasks": [TASK]}
    stub.add_response("describe_tasks", task(exit_code), where)  # the tasks_stopped waiter
    stub.add_response("describe_tasks", task(exit_code), where)
    stub.add_response(
        "describe_task_definition",
        {"taskDefinition": migrate_definition()},
        {"taskDefinition": td_arn(MIGRATE_FAMILY, 3)},
    )


def log_page(stub: Stubber, token: str | None, lines: list[str], next_token: str) -> None:
    expected: dict[str, Any] = {
        "logGroupName": LOG_GROUP,
        "logStreamName": STREAM,
        "startFromHead": True,
    }
    if token:
        expected["nextToken"] = token
    stub.add_response(
        "get_log_events",
        {
            "events": [{"timestamp": 1, "message": m, "ingestionTime": 1} for m in lines],
            "nextForwardToken": next_token,
        },
        expected,
    )


def sent_overrides(ecs: Any) -> list[dict[str, Any]]:
    """Every container override the code under test hands to run_task."""
    sent: list[dict[str, Any]] = []
    ecs.meta.events.register(
        "provide-client-params.ecs.RunTask",
        lambda params, **_: sent.append(params["overrides"]["containerOverrides"][0]),
    )
    return sent


def test_migrate_runs_the_task_and_reads_the_status_from_its_log(fake_time: FakeTime) -> None:
    ecs, logs = client("ecs"), client("logs")
    with mock_aws(), Stubber(ecs) as ecs_stub, Stubber(logs) as logs_stub:
        run_until_stopped(ecs_stub, ["upgrade"], 0, with_environment=True)
        log_page(logs_stub, None, ["INFO Running upgrade 0006 -> 0007"], "f/1")
        log_page(logs_stub, "f/1", [], "f/1")
        # CloudWatch Logs lags: the marker line arrives on the second look.
        log_page(logs_stub, None, ["INFO Running upgrade 0006 -> 0007"], "f/1")
        log_page(logs_stub, "f/1", [STATUS_MARKER + json.dumps(STATUS)], "f/2")
        log_page(logs_stub, "f/2", [], "f/2")
        release = Release(id=NEW_IMAGE, version="", git_sha="", artifact=NEW_IMAGE, created_at="")
        clients = {"ecs": ecs, "logs": logs, "secretsmanager": client("secretsmanager")}
        status = environment(clients, fake_time).migrate(release)
        ecs_stub.assert_no_pending_responses()
        logs_stub.assert_no_pending_responses()
    assert status.up_to_date and status.head == "0007"
    assert fake_time.sleeps == [15.0]


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [(3, "exit code 3: Essential container"), (None, "never ran.*CannotPullContainerError")],
)
def test_a_failed_task_names_its_reason_and_its_log(exit_code: int | None, expected: str) -> None:
    ecs = client("ecs")
    with Stubber(ecs) as stub:
        run_until_stopped(stub, ["upgrade"], exit_code)
        with pytest.raises(TargetError, match=expected) as failure:
            environment({"ecs": ecs}).database.migrate(NEW_IMAGE)
    assert f"--log-group-name {LOG_GROUP} --log-stream-name {STREAM}" in str(failure.value)


def test_a_task_ecs_cannot_place_is_a_target_error() -> None:
    ecs = client("ecs")
    with Stubber(ecs) as stub:
        stub.add_response(
            "describe_task_definition",
            {"taskDefinition": migrate_definition()},
            {"taskDefinition": MIGRATE_FAMILY, "include": ["TAGS"]},
        )
        stub.add_response(
            "run_task",
            {"tasks": [], "failures": [{"arn": "x", "reason": "RESOURCE:ENI"}]},
            None,
        )
        with pytest.raises(TargetError, match="did not start the migrate task: x RESOURCE:ENI"):
            environment({"ecs": ecs}).database.migration_status(NEW_IMAGE)


def test_smoke_admin_password_never_travels_in_the_overrides() -> None:
    from service.security.passwords import verify_password

    ecs, logs = client("ecs"), client("logs")
    sent: dict[str, Any] = {}
    ecs.meta.events.register(
        "provide-client-params.ecs.RunTask", lambda params, **_: sent.update(params)
    )
    with mock_aws(), Stubber(ecs) as stub, Stubber(logs) as logs_stub:
        run_until_stopped(stub, ["ensure-admin"], 0, with_environment=True)
        log_page(logs_stub, None, [STATUS_MARKER + json.dumps(STATUS)], "f/1")
        log_page(logs_stub, "f/1", [], "f/1")
        env = environment({"ecs": ecs, "logs": logs, "secretsmanager": client("secretsmanager")})
        release = Release(id=NEW_IMAGE, version="", git_sha="", artifact=NEW_IMAGE, created_at="")
        email, password = env.smoke_credentials(release)
        assert env.smoke_credentials(release) == (email, password)  # one task per environment
        stub.assert_no_pending_responses()
    [override] = sent["overrides"]["containerOverrides"]
    assert override["command"] == ["ensure-admin", email]
    [variable] = override["environment"]
    assert variable["name"] == "ADMIN_PASSWORD_HASH" and password not in json.dumps(sent)
    assert verify_password(variable["value"], password)


def test_each_migration_makes_sure_of_the_first_admin_with_one_stored_password() -> None:
    """The first admin's password is generated into Secrets Manager once; each migrate task
    gets the address and an argon2 hash of that same password, never the password."""
    from service.security.passwords import verify_password

    ecs, logs = client("ecs"), client("logs")
    sent = sent_overrides(ecs)
    with mock_aws(), Stubber(ecs) as stub, Stubber(logs) as logs_stub:
        secrets = client("secretsmanager")
        env = environment({"ecs": ecs, "logs": logs, "secretsmanager": secrets})
        release = Release(id=NEW_IMAGE, version="", git_sha="", artifact=NEW_IMAGE, created_at="")
        for _ in range(2):  # two deploys
            run_until_stopped(stub, ["upgrade"], 0, with_environment=True)
            log_page(logs_stub, None, [STATUS_MARKER + json.dumps(STATUS)], "f/1")
            log_page(logs_stub, "f/1", [], "f/1")
            env.migrate(release)
        stub.assert_no_pending_responses()
        password = secrets.get_secret_value(SecretId="drydock/staging/admin")["SecretString"]
    assert len(sent) == 2
    for override in sent:
        assert override["command"] == ["upgrade"]
        variables = {v["name"]: v["value"] for v in override["environment"]}
        assert variables["ADMIN_EMAIL"] == env.spec.admin_email
        assert verify_password(variables["ADMIN_PASSWORD_HASH"], password)
        assert password not in json.dumps(override)


def test_a_refused_first_admin_fails_the_migration_and_says_where_to_read_why() -> None:
    ecs = client("ecs")
    with mock_aws(), Stubber(ecs) as stub:
        run_until_stopped(stub, ["upgrade"], 3, with_environment=True)
        env = environment({"ecs": ecs, "secretsmanager": client("secretsmanager")})
        release = Release(id=NEW_IMAGE, version="", git_sha="", artifact=NEW_IMAGE, created_at="")
        with pytest.raises(TargetError, match="`upgrade` failed with exit code 3") as failure:
            env.migrate(release)
    assert f"--log-stream-name {STREAM}" in str(failure.value)
