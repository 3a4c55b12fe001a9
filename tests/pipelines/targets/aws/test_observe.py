"""Observation from CloudWatch. get_metric_data with a p95 and JSON log filters are beyond
moto, so those answers come from the Stubber; the ALB dimensions are derived from moto's
ECS and ELBv2, and alarm states read from moto's CloudWatch."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.stub import Stubber
from moto import mock_aws

from infra.names import Names
from pipelines.targets.aws.observe import ERROR_LOG_FILTER, Dimensions, alarm_states
from tests.pipelines.targets.aws.conftest import (
    CLUSTER,
    LOG_GROUP,
    REGION,
    SERVICE,
    client,
    environment,
)

pytestmark = pytest.mark.unit
END = dt.datetime(2025, 3, 1, 12, 10, tzinfo=dt.UTC).timestamp()
LB = "app/drydock-staging/50dc6c495c0c9188"
TG = "targetgroup/drydock-staging-tg/73e2d6bc24d8a067"
ALARMS = Names("staging").alarms


def metric_request(
    token: str | None = None, period: int = 600, start: float = END - 600
) -> dict[str, Any]:
    def query(qid: str, name: str, stat: str, tg: bool) -> dict[str, Any]:
        dims = [{"Name": "LoadBalancer", "Value": LB}]
        if tg:
            dims.append({"Name": "TargetGroup", "Value": TG})
        return {
            "Id": qid,
            "MetricStat": {
                "Metric": {
                    "Namespace": "AWS/ApplicationELB",
                    "MetricName": name,
                    "Dimensions": dims,
                },
                "Period": period,
                "Stat": stat,
            },
            "ReturnData": True,
        }

    request: dict[str, Any] = {
        "MetricDataQueries": [
            query("p95", "TargetResponseTime", "p95", True),
            query("requests", "RequestCount", "Sum", True),
            query("target5xx", "HTTPCode_Target_5XX_Count", "Sum", True),
            query("elb5xx", "HTTPCode_ELB_5XX_Count", "Sum", False),
        ],
        "StartTime": dt.datetime.fromtimestamp(start, dt.UTC),
        "EndTime": dt.datetime.fromtimestamp(END, dt.UTC),
        "ScanBy": "TimestampAscending",
    }
    if token:
        request["NextToken"] = token
    return request


def results(**values: list[float]) -> list[dict[str, Any]]:
    return [{"Id": k, "Values": v, "StatusCode": "Complete"} for k, v in values.items()]


def test_observe_reads_metrics_alarms_and_error_logs(fake_time: Any) -> None:
    cloudwatch, logs = client("cloudwatch"), client("logs")
    with Stubber(cloudwatch) as cw, Stubber(logs) as lg:
        cw.add_response(
            "get_metric_data",
            {"MetricDataResults": results(p95=[0.21], requests=[1200.0]), "NextToken": "n1"},
            metric_request(),
        )
        cw.add_response(
            "get_metric_data",
            {"MetricDataResults": results(target5xx=[4.0], elb5xx=[2.0], p95=[])},
            metric_request("n1"),
        )
        cw.add_response(
            "describe_alarms",
            {
                "MetricAlarms": [
                    {"AlarmName": ALARMS["error_rate"], "StateValue": "ALARM"},
                    {"AlarmName": ALARMS["latency_p95"], "StateValue": "OK"},
                ]
            },
            {"AlarmNames": list(ALARMS.values())},
        )
        window = {
            "logGroupName": LOG_GROUP,
            "logStreamNamePrefix": "api/",
            "startTime": int((END - 600) * 1000),
            "endTime": int(END * 1000),
            "filterPattern": ERROR_LOG_FILTER,
        }
        event = {"message": '{"level":"error"}', "timestamp": 1}
        lg.add_response("filter_log_events", {"events": [event] * 3, "nextToken": "l1"}, window)
        lg.add_response("filter_log_events", {"events": [event]}, {**window, "nextToken": "l1"})
        env = environment(
            {"cloudwatch": cloudwatch, "logs": logs},
            load_balancer_arn_suffix=LB,
            target_group_arn_suffix=TG,
        )
        seen = env.observe(600, end=END)
        cw.assert_no_pending_responses()
        lg.assert_no_pending_responses()
    assert (seen.requests, seen.errors_5xx, seen.p95_s) == (1200, 6, 0.21)
    assert seen.error_rate == pytest.approx(0.005)
    assert seen.alarms_in_alarm == (ALARMS["error_rate"],)
    assert seen.error_log_lines == 4


def test_dimensions_are_derived_from_the_service_when_not_exported() -> None:
    with mock_aws():
        ec2, elbv2, ecs = client("ec2"), client("elbv2"), client("ecs")
        vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.40.{i}.0/24", AvailabilityZone=f"{REGION}{z}"
            )["Subnet"]["SubnetId"]
            for i, z in ((1, "a"), (2, "b"))
        ]
        lb = elbv2.create_load_balancer(Name="drydock-staging", Subnets=subnets)["LoadBalancers"][0]
        tg = elbv2.create_target_group(
            Name="drydock-staging-tg", Protocol="HTTP", Port=8000, VpcId=vpc, TargetType="ip"
        )["TargetGroups"][0]
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )
        ecs.create_cluster(clusterName=CLUSTER)
        arn = ecs.register_task_definition(
            family="f", containerDefinitions=[{"name": "api", "image": "i", "memory": 512}]
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(
            cluster=CLUSTER,
            serviceName=SERVICE,
            taskDefinition=arn,
            desiredCount=1,
            loadBalancers=[
                {
                    "targetGroupArn": tg["TargetGroupArn"],
                    "containerName": "api",
                    "containerPort": 8000,
                }
            ],
        )
        dims = environment({"ecs": ecs, "elbv2": elbv2}).dimensions()
    assert dims == Dimensions(
        lb["LoadBalancerArn"].split(":loadbalancer/")[1], tg["TargetGroupArn"].rsplit(":", 1)[1]
    )
    assert dims.load_balancer.startswith("app/drydock-staging/")
    assert dims.target_group and dims.target_group.startswith("targetgroup/drydock-staging-tg/")


def test_alarm_states_from_cloudwatch() -> None:
    with mock_aws():
        cloudwatch = client("cloudwatch")
        for name in ALARMS.values():
            cloudwatch.put_metric_alarm(
                AlarmName=name,
                MetricName="m",
                Namespace="n",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=1,
                ComparisonOperator="GreaterThanThreshold",
            )
        cloudwatch.set_alarm_state(
            AlarmName=ALARMS["availability"], StateValue="ALARM", StateReason="test"
        )
        states = alarm_states(cloudwatch, ALARMS.values())
    assert states[ALARMS["availability"]] == "ALARM"
    assert {s for n, s in states.items() if n != ALARMS["availability"]} == {
        "OK"
    }  # moto starts alarms at OK


def test_a_window_ending_now_waits_for_cloudwatch_to_catch_up(fake_time: Any) -> None:
    import time

    cloudwatch, logs = client("cloudwatch"), client("logs")
    with Stubber(cloudwatch) as cw, Stubber(logs) as lg:
        cw.add_response("get_metric_data", {"MetricDataResults": []}, None)
        cw.add_response("describe_alarms", {"MetricAlarms": []}, None)
        lg.add_response("filter_log_events", {"events": []}, None)
        env = environment(
            {"cloudwatch": cloudwatch, "logs": logs},
            fake_time,
            load_balancer_arn_suffix=LB,
        )
        seen = env.observe(60, end=time.time() - 30)
    assert seen.requests == 0 and seen.p95_s is None and seen.error_rate == 0.0
    [waited] = fake_time.sleeps
    assert env.metric_lag_s - 31 < waited <= env.metric_lag_s - 30


def minute(n: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(END - 600 + 60 * n, dt.UTC)


def test_server_metrics_are_the_albs_minutes_through_the_operations_capability() -> None:
    """Per minute: RequestCount / 60, (target + ELB 5xx) / RequestCount, the targets' p95;
    a minute without requests has neither a rate of errors nor a p95."""
    cloudwatch = client("cloudwatch")
    with Stubber(cloudwatch) as cw:
        cw.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {"Id": "p95", "Timestamps": [minute(0), minute(1)], "Values": [0.2, 0.3]},
                    {
                        "Id": "requests",
                        "Timestamps": [minute(0), minute(1), minute(2)],
                        "Values": [600.0, 1200.0, 0.0],
                    },
                ],
                "NextToken": "n1",
            },
            # the window's start is floored to its minute, as CloudWatch aligns periods
            metric_request(period=60, start=END - 600),
        )
        cw.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {"Id": "target5xx", "Timestamps": [minute(1)], "Values": [4.0]},
                    {"Id": "elb5xx", "Timestamps": [minute(1)], "Values": [2.0]},
                ]
            },
            metric_request("n1", period=60, start=END - 600),
        )
        env = environment(
            {"cloudwatch": cloudwatch}, load_balancer_arn_suffix=LB, target_group_arn_suffix=TG
        )
        points = env.operations.server_metrics(END - 570, END)
        cw.assert_no_pending_responses()
    assert [(p.at, p.period_s) for p in points] == [
        (minute(n).timestamp() + 60, 60.0) for n in range(3)
    ]
    assert [p.requests_per_s for p in points] == [10.0, 20.0, 0.0]
    assert [p.error_rate for p in points] == [0.0, pytest.approx(0.005), None]
    assert [p.p95_s for p in points] == [0.2, 0.3, None]


def test_server_metrics_say_what_failed_when_cloudwatch_refuses() -> None:
    from pipelines.targets.base import TargetError

    cloudwatch = client("cloudwatch")
    with Stubber(cloudwatch) as cw:
        cw.add_client_error(
            "get_metric_data", "AccessDenied", "not authorized to get_metric_data", 403
        )
        env = environment(
            {"cloudwatch": cloudwatch}, load_balancer_arn_suffix=LB, target_group_arn_suffix=TG
        )
        with pytest.raises(TargetError, match="reading the service's metrics"):
            env.operations.server_metrics(END - 600, END)
