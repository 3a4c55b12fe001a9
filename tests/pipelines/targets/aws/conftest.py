"""Shared pieces of the aws target's tests: fake credentials, stack outputs, a fake clock,
and builders of the ECS documents the Stubber answers with.

Nothing here reaches the network: credentials and region are fake, moto serves what it
models, and botocore's Stubber answers the sequences it does not.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.names import Names
from infra.spec import defaults
from pipelines.targets.aws.common import Clients
from pipelines.targets.aws.environment import AwsEnvironment
from pipelines.targets.aws.target import AwsTarget

REGION = "eu-west-1"
ACCOUNT = "123456789012"
REPO = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/drydock-staging"
OLD_IMAGE = f"{REPO}@sha256:{'a' * 64}"
NEW_IMAGE = f"{REPO}@sha256:{'b' * 64}"
CLUSTER = "drydock-staging"
SERVICE = "drydock-staging-api"
FAMILY = "drydock-staging-api"
MIGRATE_FAMILY = "drydock-staging-migrate"
BUCKET = "drydock-staging-backups"
LOG_GROUP = "/drydock/staging/api"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:drydock/staging/app-db-AbCdEf"
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)


def outputs(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "service_url": "https://api.staging.example.com",
        "cluster_name": CLUSTER,
        "service_name": SERVICE,
        "container_name": "api",
        "task_definition_family": FAMILY,
        "migrate_task_definition_family": MIGRATE_FAMILY,
        "task_subnet_ids": ["subnet-0a", "subnet-0b"],
        "task_security_group_id": "sg-0tasks",
        "db_instance_id": "drydock-staging",
        "db_name": "drydock",
        "app_db_secret_arn": SECRET_ARN,
        "backups_bucket": BUCKET,
        "alarm_names": Names("staging").alarms,
        "log_group_name": LOG_GROUP,
    }
    return {**values, **overrides}


def td_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"


def task_definition(
    family: str, revision: int, image: str, container: str = "api"
) -> dict[str, Any]:
    return {
        "taskDefinitionArn": td_arn(family, revision),
        "family": family,
        "revision": revision,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/exec",
        "containerDefinitions": [
            {
                "name": container,
                "image": image,
                "essential": True,
                "secrets": [{"name": "DATABASE_URL", "valueFrom": f"{SECRET_ARN}:url::"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": LOG_GROUP, "awslogs-stream-prefix": container},
                },
            }
        ],
    }


def deployment(
    dep_id: str, revision: int, status: str, state: str, reason: str = ""
) -> dict[str, Any]:
    return {
        "id": dep_id,
        "status": status,
        "taskDefinition": td_arn(FAMILY, revision),
        "desiredCount": 2,
        "runningCount": 2 if state == "COMPLETED" else 1,
        "rolloutState": state,
        "rolloutStateReason": reason or f"ECS deployment {dep_id} {state.lower()}.",
        "createdAt": T0,
    }


def service(
    revision: int, deployments: list[dict[str, Any]], events: list[tuple[str, str]] = ()
) -> dict[str, Any]:
    """A describe_services answer; `events` are (id, message), newest first as ECS gives."""
    return {
        "services": [
            {
                "serviceName": SERVICE,
                "status": "ACTIVE",
                "taskDefinition": td_arn(FAMILY, revision),
                "desiredCount": 2,
                "runningCount": 2,
                "deployments": deployments,
                "events": [
                    {"id": eid, "createdAt": T0, "message": message} for eid, message in events
                ],
                "loadBalancers": [],
            }
        ],
        "failures": [],
    }


@dataclass
class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("DRYDOCK_AWS_OUTPUTS_FILE", raising=False)
    monkeypatch.delenv("DRYDOCK_LEDGER_BUCKET", raising=False)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def client(service_name: str) -> Any:
    return Clients(REGION)(service_name)


def environment(
    clients: dict[str, Any] | None = None,
    fake_time: FakeTime | None = None,
    **output_overrides: Any,
) -> AwsEnvironment:
    ticks = fake_time or FakeTime()
    target = AwsTarget(
        {"staging": outputs(**output_overrides)},
        spec=defaults("staging"),
        clients=clients or {},
        poll_s=15.0,
        rollout_timeout_s=600.0,
        sleep=ticks.sleep,
        clock=ticks.clock,
    )
    return target.environment("staging")
