"""The CloudWatch dashboard body: the runbook's SLOs and the database limits, with thresholds."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.names import Names
from infra.spec import EnvironmentSpec

ELB = "AWS/ApplicationELB"


def dashboard_body(
    spec: EnvironmentSpec,
    lb_suffix: pulumi.Input[str],
    tg_suffix: pulumi.Input[str],
    db_identifier: pulumi.Input[str],
    alarm_arns: list[pulumi.Output[str]],
) -> pulumi.Output[str]:
    n = Names(spec.stack)
    period = spec.alarm_period_seconds
    lb = ["LoadBalancer", lb_suffix]
    db = ["DBInstanceIdentifier", db_identifier]

    def graph(title: str, metrics: list[Any], x: int, y: int, **extra: Any) -> dict[str, Any]:
        return {
            "type": "metric",
            "x": x,
            "y": y,
            "width": 8,
            "height": 6,
            "properties": {
                "title": title,
                "region": spec.region,
                "period": period,
                "view": "timeSeries",
                "metrics": metrics,
                **extra,
            },
        }

    def line(label: str, value: float) -> dict[str, Any]:
        return {"horizontal": [{"label": label, "value": value}]}

    widgets = [
        graph(
            f"p95 latency (SLO < {spec.slo_latency_p95_seconds}s)",
            [[ELB, "TargetResponseTime", *lb, {"stat": "p95"}]],
            0,
            0,
            annotations=line("SLO", spec.slo_latency_p95_seconds),
        ),
        graph(
            f"5xx error rate % (SLO < {spec.slo_error_rate_percent}%)",
            [
                [ELB, "HTTPCode_ELB_5XX_Count", *lb, {"id": "e", "stat": "Sum", "visible": False}],
                [
                    ELB,
                    "HTTPCode_Target_5XX_Count",
                    *lb,
                    {"id": "t", "stat": "Sum", "visible": False},
                ],
                [ELB, "RequestCount", *lb, {"id": "r", "stat": "Sum", "visible": False}],
                [{"expression": "100 * (FILL(e, 0) + FILL(t, 0)) / r", "label": "5xx %"}],
            ],
            8,
            0,
            annotations=line("SLO", spec.slo_error_rate_percent),
        ),
        graph(
            f"Healthy vs desired tasks (availability {spec.slo_availability_percent}%)",
            [
                [ELB, "HealthyHostCount", "TargetGroup", tg_suffix, *lb, {"stat": "Minimum"}],
                [
                    "ECS/ContainerInsights",
                    "DesiredTaskCount",
                    "ClusterName",
                    n.cluster,
                    "ServiceName",
                    n.service,
                    {"stat": "Maximum"},
                ],
            ],
            16,
            0,
        ),
        graph(
            "Database CPU %",
            [["AWS/RDS", "CPUUtilization", *db]],
            0,
            6,
            annotations=line("alarm", spec.db_cpu_alarm_percent),
        ),
        graph(
            "Database free storage (bytes)",
            [["AWS/RDS", "FreeStorageSpace", *db, {"stat": "Minimum"}]],
            8,
            6,
        ),
        graph(
            "Database connections",
            [["AWS/RDS", "DatabaseConnections", *db, {"stat": "Maximum"}]],
            16,
            6,
            annotations=line("alarm", spec.db_connections_alarm),
        ),
        {
            "type": "alarm",
            "x": 0,
            "y": 12,
            "width": 24,
            "height": 3,
            "properties": {"title": "Alarms", "alarms": alarm_arns},
        },
    ]
    return pulumi.Output.json_dumps({"widgets": widgets})
