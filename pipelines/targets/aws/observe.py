"""What the environment looked like over a window, from CloudWatch: the ALB's metrics, the
alarm states and the error lines the service logged. The inputs of deploy step 7.

The counts and p95 are read the way the SLO alarms read them (`infra/alarms.py`): error
rate = (ELB 5xx + target 5xx) / requests. One period spans the whole window, so the p95
CloudWatch returns is the p95 of every request in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipelines.targets.base import Observation, ServerMetrics, TargetError

ELB = "AWS/ApplicationELB"
# The service logs JSON lines whose `level` is lower case (service/logs.py).
ERROR_LOG_FILTER = '{ ($.level = "error") || ($.level = "critical") }'
APP_LOG_STREAM_PREFIX = "api/"  # the migrate task logs under "migrate/"


@dataclass(frozen=True)
class Dimensions:
    load_balancer: str  # app/<name>/<id>, the ALB ARN's suffix
    target_group: str | None  # targetgroup/<name>/<id>

    def of(self, with_target_group: bool) -> list[dict[str, str]]:
        dims = [{"Name": "LoadBalancer", "Value": self.load_balancer}]
        if with_target_group and self.target_group:
            dims.append({"Name": "TargetGroup", "Value": self.target_group})
        return dims


def arn_suffix(arn: str, marker: str) -> str:
    """`app/name/id` from an ALB ARN (marker ':loadbalancer/'), `targetgroup/name/id` from
    a target group ARN (marker ':'): the values CloudWatch uses as dimensions."""
    if marker == ":":
        return arn.rsplit(":", 1)[-1]
    return arn.split(marker, 1)[1]


def derive_dimensions(service: Mapping[str, Any], elbv2: Any) -> Dimensions:
    """The dimensions of the service's target group and its load balancer."""
    balancers = [lb for lb in service.get("loadBalancers", []) if lb.get("targetGroupArn")]
    if not balancers:
        raise TargetError(
            f"service {service.get('serviceName')} has no load balancer: no ALB metrics to read"
        )
    group_arn = balancers[0]["targetGroupArn"]
    groups = elbv2.describe_target_groups(TargetGroupArns=[group_arn])["TargetGroups"]
    lb_arns = groups[0].get("LoadBalancerArns", []) if groups else []
    if not lb_arns:
        raise TargetError(f"target group {group_arn} is attached to no load balancer")
    return Dimensions(arn_suffix(lb_arns[0], ":loadbalancer/"), arn_suffix(group_arn, ":"))


def metric_queries(dims: Dimensions, period: int) -> list[dict[str, Any]]:
    def query(qid: str, name: str, stat: str, with_target_group: bool) -> dict[str, Any]:
        return {
            "Id": qid,
            "MetricStat": {
                "Metric": {
                    "Namespace": ELB,
                    "MetricName": name,
                    "Dimensions": dims.of(with_target_group),
                },
                "Period": period,
                "Stat": stat,
            },
            "ReturnData": True,
        }

    # ELB-generated 5xx have no target group: they happen before one is chosen.
    return [
        query("p95", "TargetResponseTime", "p95", True),
        query("requests", "RequestCount", "Sum", True),
        query("target5xx", "HTTPCode_Target_5XX_Count", "Sum", True),
        query("elb5xx", "HTTPCode_ELB_5XX_Count", "Sum", False),
    ]


def period_for(window_s: float) -> int:
    """One period over the whole window, in whole minutes as CloudWatch requires."""
    return max(60, 60 * math.ceil(window_s / 60))


def metric_results(
    cloudwatch: Any, dims: Dimensions, start: datetime, end: datetime, period: int
) -> Iterator[Mapping[str, Any]]:
    """Every MetricDataResult of the four queries, page after page."""
    token: str | None = None
    while True:
        request: dict[str, Any] = {
            "MetricDataQueries": metric_queries(dims, period),
            "StartTime": start,
            "EndTime": end,
            "ScanBy": "TimestampAscending",
        }
        if token:
            request["NextToken"] = token
        response = cloudwatch.get_metric_data(**request)
        yield from response.get("MetricDataResults", [])
        token = response.get("NextToken")
        if not token:
            return


def metric_values(
    cloudwatch: Any, dims: Dimensions, start: datetime, end: datetime, period: int
) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    for result in metric_results(cloudwatch, dims, start, end, period):
        values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
    return values


SERIES_PERIOD_S = 60  # the ALB's metrics come per minute


def server_metrics(
    cloudwatch: Any, dims: Dimensions, start: float, end: float, period: int = SERIES_PERIOD_S
) -> list[ServerMetrics]:
    """The ALB's view per period over [start, end]: requests per second, (ELB + target 5xx)
    / requests, and the targets' p95, one point at the end of each period."""
    series: dict[str, dict[float, float]] = {}
    for result in metric_results(
        cloudwatch,
        dims,
        datetime.fromtimestamp(start - start % period, UTC),
        datetime.fromtimestamp(end, UTC),
        period,
    ):
        found = series.setdefault(result["Id"], {})
        stamps, values = result.get("Timestamps", []), result.get("Values", [])
        found.update((s.timestamp(), float(v)) for s, v in zip(stamps, values, strict=True))
    requests, p95 = series.get("requests", {}), series.get("p95", {})
    points = []
    for begins in sorted(set().union(*series.values()) if series else ()):
        count = requests.get(begins)
        errors = series.get("target5xx", {}).get(begins, 0.0) + series.get("elb5xx", {}).get(
            begins, 0.0
        )
        points.append(
            ServerMetrics(
                at=begins + period,
                period_s=float(period),
                requests_per_s=None if count is None else count / period,
                error_rate=errors / count if count else None,
                p95_s=p95.get(begins),
            )
        )
    return points


def alarm_states(cloudwatch: Any, names: Iterable[str]) -> dict[str, str]:
    """CloudWatch alarm name -> state (OK, ALARM, INSUFFICIENT_DATA)."""
    wanted, states = list(names), {}
    for start in range(0, len(wanted), 100):  # AlarmNames takes at most 100
        paginator = cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNames=wanted[start : start + 100]):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states[alarm["AlarmName"]] = alarm["StateValue"]
    return states


def error_log_lines(logs: Any, group: str, start: datetime, end: datetime) -> int:
    count, token = 0, None
    while True:
        request: dict[str, Any] = {
            "logGroupName": group,
            "logStreamNamePrefix": APP_LOG_STREAM_PREFIX,
            "startTime": int(start.timestamp() * 1000),
            "endTime": int(end.timestamp() * 1000),
            "filterPattern": ERROR_LOG_FILTER,
        }
        if token:
            request["nextToken"] = token
        response = logs.filter_log_events(**request)
        count += len(response.get("events", []))
        token = response.get("nextToken")
        if not token:
            return count


def observe(
    cloudwatch: Any,
    logs: Any,
    dims: Dimensions,
    alarm_names: Iterable[str],
    log_group: str,
    window_s: float,
    end: float,
) -> Observation:
    until = datetime.fromtimestamp(end, UTC)
    since = datetime.fromtimestamp(end - window_s, UTC)
    values = metric_values(cloudwatch, dims, since, until, period_for(window_s))
    latencies = values.get("p95", [])
    states = alarm_states(cloudwatch, alarm_names)
    return Observation(
        window_s=window_s,
        requests=round(sum(values.get("requests", []))),
        errors_5xx=round(sum(values.get("target5xx", [])) + sum(values.get("elb5xx", []))),
        # Two periods only when the window straddles a period boundary: keep the worse.
        p95_s=max(latencies) if latencies else None,
        alarms_in_alarm=tuple(sorted(name for name, state in states.items() if state == "ALARM")),
        error_log_lines=error_log_lines(logs, log_group, since, until),
    )
