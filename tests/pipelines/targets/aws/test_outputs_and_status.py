"""Stack outputs (injected, from a file, or from Pulumi with a clear message when its CLI
is missing), lazy imports, and status() over ECS, CloudWatch and RDS."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.names import Names
from pipelines.targets import get_target
from pipelines.targets.aws.common import OUTPUTS_FILE_ENV, file_outputs
from pipelines.targets.aws.target import AwsTarget
from pipelines.targets.base import Environment, Health, Target, TargetError
from tests.pipelines.targets.aws.conftest import (
    CLUSTER,
    FAMILY,
    NEW_IMAGE,
    OLD_IMAGE,
    REGION,
    SERVICE,
    T0,
    client,
    deployment,
    environment,
    outputs,
    service,
    task_definition,
    td_arn,
)

pytestmark = pytest.mark.unit
ALARM = Names("staging").alarms["latency_p95"]


def test_get_target_aws_is_the_aws_target_and_speaks_the_protocol() -> None:
    target = get_target("aws")
    assert isinstance(target, AwsTarget) and isinstance(target, Target)
    assert isinstance(environment(), Environment)


def test_importing_the_target_loads_neither_boto3_nor_pulumi() -> None:
    code = (
        "import sys, pipelines.targets.aws.environment, pipelines.targets\n"
        "pipelines.targets.get_target('aws').environment('staging')\n"
        "heavy = {'boto3', 'botocore', 'pulumi'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_outputs_from_a_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "staging.json").write_text(json.dumps(outputs()))
    monkeypatch.setenv(OUTPUTS_FILE_ENV, str(tmp_path / "{env}.json"))
    assert AwsTarget().environment("staging").outputs["cluster_name"] == CLUSTER
    (tmp_path / "all.json").write_text(json.dumps({"production": outputs(cluster_name="p")}))
    assert file_outputs(tmp_path / "all.json", "production")["cluster_name"] == "p"
    with pytest.raises(TargetError, match="cannot read stack outputs"):
        file_outputs(tmp_path / "missing.json", "staging")


def test_missing_outputs_say_how_to_create_them() -> None:
    with pytest.raises(TargetError, match=r"lacks the outputs cluster_name.*infra.up"):
        _ = environment(cluster_name="").outputs


def test_without_the_pulumi_cli_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(TargetError) as failure:
        _ = AwsTarget().environment("staging").outputs
    message = str(failure.value)
    assert "curl -fsSL https://get.pulumi.com | sh" in message and OUTPUTS_FILE_ENV in message


def test_pulumi_outputs_are_read_through_the_automation_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from pipelines import infra_ops

    cli = tmp_path / "bin" / "pulumi"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", str(cli.parent))
    asked: list[str] = []

    def select(stack: str, _: Path) -> Any:
        asked.append(stack)
        values = {k: SimpleNamespace(value=v, secret=False) for k, v in outputs().items()}
        return SimpleNamespace(outputs=lambda: values)

    monkeypatch.setattr(infra_ops, "select_stack", select)
    assert AwsTarget().environment("production").outputs["service_name"] == SERVICE
    assert asked == ["production"]


def test_down_is_pulumi_destroy() -> None:
    with pytest.raises(TargetError, match="pulumi destroy --stack staging"):
        environment().down()


def test_status_reports_tasks_deployments_alarms_and_the_database() -> None:
    ecs = client("ecs")
    where = {"cluster": CLUSTER, "services": [SERVICE]}
    answer = service(
        8,
        [
            deployment("ecs-svc/new", 8, "PRIMARY", "IN_PROGRESS"),
            deployment("ecs-svc/old", 7, "ACTIVE", "COMPLETED"),
        ],
    )
    answer["services"][0]["runningCount"] = 1
    tasks = [
        {
            "taskArn": f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/{i}",
            "lastStatus": last,
            "healthStatus": health,
            "startedAt": T0 + dt.timedelta(seconds=i),
            "containers": [{"name": "api", "image": image, "imageDigest": image.split("@")[1]}],
        }
        for i, (last, health, image) in enumerate(
            [("RUNNING", "HEALTHY", OLD_IMAGE), ("PENDING", "UNKNOWN", NEW_IMAGE)]
        )
    ]
    with mock_aws(), Stubber(ecs) as stub:
        stub.add_response("describe_services", answer, where)
        stub.add_response(
            "list_tasks",
            {"taskArns": [t["taskArn"] for t in tasks]},
            {"cluster": CLUSTER, "serviceName": SERVICE},
        )
        stub.add_response(
            "describe_tasks",
            {"tasks": tasks},
            {"cluster": CLUSTER, "tasks": [t["taskArn"] for t in tasks]},
        )
        stub.add_response("describe_services", answer, where)
        stub.add_response(
            "describe_task_definition",
            {"taskDefinition": task_definition(FAMILY, 8, NEW_IMAGE)},
            {"taskDefinition": td_arn(FAMILY, 8), "include": ["TAGS"]},
        )
        client("rds").create_db_instance(
            DBInstanceIdentifier="drydock-staging",
            DBInstanceClass="db.t4g.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="drydock_admin",
            MasterUserPassword="not-a-real-password",
        )
        cloudwatch = client("cloudwatch")
        cloudwatch.put_metric_alarm(
            AlarmName=ALARM,
            MetricName="TargetResponseTime",
            Namespace="AWS/ApplicationELB",
            ExtendedStatistic="p95",
            Period=60,
            EvaluationPeriods=5,
            Threshold=0.4,
            ComparisonOperator="GreaterThanThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="slow")
        reuse = Names("staging").security_alarms["refresh_reused"]
        cloudwatch.put_metric_alarm(
            AlarmName=reuse,
            MetricName="refresh_reused",
            Namespace="drydock/staging/security-events",
            Statistic="Sum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=5,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        cloudwatch.set_alarm_state(AlarmName=reuse, StateValue="ALARM", StateReason="spike")
        security = {"refresh_reused": reuse}
        status = environment({"ecs": ecs}, security_alarm_names=security).status()
    assert status.target == "aws" and status.release == NEW_IMAGE
    assert [r.health for r in status.replicas] == [Health.READY, Health.STARTING]
    assert status.ready_replicas == 1 and status.desired_replicas == 2
    assert status.database["status"] == "available"
    assert status.alarms == {ALARM: "ALARM", reuse: "ALARM"}
    assert f"alarm {ALARM} is in ALARM" in status.problems
    assert f"alarm {reuse} is in ALARM" in status.problems
    assert "1 of 2 tasks running" in status.problems
    assert any("deployment is in progress" in p for p in status.problems)
    assert not status.up
    assert [p.name for p in status.processes][2:] == [
        f"deployment {FAMILY}:8",
        f"deployment {FAMILY}:7",
    ]
