"""Alarms: an SNS topic, one CloudWatch alarm per SLO (runbook §3) and per database limit,
a dashboard of the same numbers, and alarms on security-event spikes (`SecurityAlarms`).

Each alarm states what missing data means, because "no data" is the normal state of some
metrics (no traffic: no latency samples) and the failure state of others (no healthy hosts).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.dashboard import dashboard_body
from infra.load_balancer import LoadBalancer
from infra.names import Names
from infra.spec import EnvironmentSpec

GIB = 1024**3
# The alarms a bad release trips: ECS rolls a deployment back when one of them fires.
DEPLOYMENT_ALARMS = ("latency_p95", "error_rate")


class Alarms(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    names: pulumi.Output[dict[str, str]]
    deployment_alarm_names: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        load_balancer: LoadBalancer,
        db_identifier: pulumi.Input[str],
        topic_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:Alarms", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        # Under a customer key whose policy admits CloudWatch (infra/keys.py): CloudWatch
        # cannot publish to a topic under the AWS-managed key.
        topic = aws.sns.Topic(
            f"{name}-topic",
            name=f"{n.prefix}-alarms",
            kms_master_key_id=topic_key_arn,
            tags=tags,
            opts=child,
        )
        for i, email in enumerate(spec.alarm_emails):
            aws.sns.TopicSubscription(
                f"{name}-email-{i}", topic=topic.arn, protocol="email", endpoint=email, opts=child
            )
        if spec.alarm_https_endpoint:
            aws.sns.TopicSubscription(
                f"{name}-https",
                topic=topic.arn,
                protocol="https",
                endpoint=pulumi.Output.secret(spec.alarm_https_endpoint),
                endpoint_auto_confirms=True,
                opts=child,
            )

        lb = {"LoadBalancer": load_balancer.arn_suffix}
        tg = {
            "LoadBalancer": load_balancer.arn_suffix,
            "TargetGroup": load_balancer.target_group_arn_suffix,
        }
        service = {"ClusterName": n.cluster, "ServiceName": n.service}
        db = {"DBInstanceIdentifier": db_identifier}

        def metric(
            mid: str, ns: str, metric_name: str, stat: str, dims: dict[str, Any]
        ) -> dict[str, Any]:
            return {
                "id": mid,
                "return_data": False,
                "metric": {
                    "namespace": ns,
                    "metric_name": metric_name,
                    "stat": stat,
                    "period": spec.alarm_period_seconds,
                    "dimensions": dims,
                },
            }

        definitions: dict[str, dict[str, Any]] = {
            "latency_p95": {
                "alarm_description": f"SLO: p95 latency above {spec.slo_latency_p95_seconds}s",
                "namespace": "AWS/ApplicationELB",
                "metric_name": "TargetResponseTime",
                "extended_statistic": "p95",
                "dimensions": lb,
                "threshold": spec.slo_latency_p95_seconds,
                "treat_missing_data": "notBreaching",  # no requests, no latency to judge
            },
            "error_rate": {
                "alarm_description": f"SLO: 5xx above {spec.slo_error_rate_percent}% of requests",
                "metric_queries": [
                    metric("elb5xx", "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum", lb),
                    metric(
                        "target5xx", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", lb
                    ),
                    metric("requests", "AWS/ApplicationELB", "RequestCount", "Sum", lb),
                    {
                        "id": "error_rate",
                        "label": "5xx error rate (%)",
                        "return_data": True,
                        "expression": "IF(requests > 0, 100 * (FILL(elb5xx, 0) + "
                        "FILL(target5xx, 0)) / requests, 0)",
                    },
                ],
                "threshold": spec.slo_error_rate_percent,
                "treat_missing_data": "notBreaching",  # no requests, no errors
            },
            "availability": {
                "alarm_description": (
                    "SLO: healthy hosts below the desired count "
                    f"(availability target {spec.slo_availability_percent}%)"
                ),
                "metric_queries": [
                    metric("healthy", "AWS/ApplicationELB", "HealthyHostCount", "Minimum", tg),
                    metric(
                        "desired", "ECS/ContainerInsights", "DesiredTaskCount", "Maximum", service
                    ),
                    {
                        "id": "below_desired",
                        "label": "healthy hosts below desired",
                        "return_data": True,
                        "expression": "IF(healthy < desired, 1, 0)",
                    },
                ],
                "threshold": 1,
                "comparison_operator": "GreaterThanOrEqualToThreshold",
                "treat_missing_data": "breaching",  # no health data means nobody is serving
            },
            "db_cpu": {
                "alarm_description": f"Database CPU above {spec.db_cpu_alarm_percent}%",
                "namespace": "AWS/RDS",
                "metric_name": "CPUUtilization",
                "statistic": "Average",
                "dimensions": db,
                "threshold": spec.db_cpu_alarm_percent,
                "treat_missing_data": "missing",  # keep the last state; availability covers outages
            },
            "db_free_storage": {
                "alarm_description": (
                    f"Database free storage below {spec.db_free_storage_alarm_gb} GiB"
                ),
                "namespace": "AWS/RDS",
                "metric_name": "FreeStorageSpace",
                "statistic": "Minimum",
                "dimensions": db,
                "threshold": spec.db_free_storage_alarm_gb * GIB,
                "comparison_operator": "LessThanThreshold",
                "treat_missing_data": "breaching",  # an instance that stops reporting needs eyes
            },
            "db_connections": {
                "alarm_description": f"Database connections above {spec.db_connections_alarm}",
                "namespace": "AWS/RDS",
                "metric_name": "DatabaseConnections",
                "statistic": "Maximum",
                "dimensions": db,
                "threshold": spec.db_connections_alarm,
                "treat_missing_data": "missing",
            },
        }

        alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        for key, definition in definitions.items():
            if "metric_queries" not in definition:
                definition["period"] = spec.alarm_period_seconds
            alarms[key] = aws.cloudwatch.MetricAlarm(
                f"{name}-{key.replace('_', '-')}",
                name=n.alarms[key],
                comparison_operator=definition.pop("comparison_operator", "GreaterThanThreshold"),
                evaluation_periods=spec.alarm_evaluation_periods,
                datapoints_to_alarm=spec.alarm_datapoints_to_alarm,
                # Before the first release nothing serves: keep quiet until there is a service.
                actions_enabled=spec.released,
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                tags=tags,
                opts=child,
                **definition,
            )

        aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=n.dashboard,
            dashboard_body=dashboard_body(
                spec,
                lb_suffix=load_balancer.arn_suffix,
                tg_suffix=load_balancer.target_group_arn_suffix,
                db_identifier=db_identifier,
                alarm_arns=[a.arn for a in alarms.values()],
            ),
            opts=child,
        )

        self.topic_arn = topic.arn
        self.names = pulumi.Output.all(**{k: a.name for k, a in alarms.items()})
        self.deployment_alarm_names = pulumi.Output.all(
            *(alarms[k].name for k in DEPLOYMENT_ALARMS)
        )
        self.register_outputs({"names": self.names, "topic_arn": self.topic_arn})


# The events whose spikes raise an alarm, and how they read in the alarm's description.
SECURITY_EVENTS = {
    "refresh_reused": "refresh-token reuses (a stolen refresh token in use)",
    "account_locked": "accounts locked after failed logins (guessing at scale)",
}


def security_event_pattern(event: str) -> str:
    """The metric filter matching one event in the service's JSON log lines
    (service/security/events.py puts `security_event` at the top level)."""
    return f'{{ $.security_event = "{event}" }}'


class SecurityAlarms(pulumi.ComponentResource):
    """A metric filter per event on the service's log group, and an alarm on each, wired to
    the alarm topic. Declared after the service because the log group is its; kept out of
    the deployment alarms and out of the `alarm_names` output that deploy verification
    reads: an attack during a rollout is not the release's doing."""

    names: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        log_group_name: pulumi.Input[str],
        topic_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:SecurityAlarms", name, None, opts)
        n = Names(spec.stack)
        child = pulumi.ResourceOptions(parent=self)
        thresholds = {
            "refresh_reused": spec.refresh_reuse_alarm_threshold,
            "account_locked": spec.lockout_alarm_threshold,
        }
        alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        for event, what in SECURITY_EVENTS.items():
            key = event.replace("_", "-")
            metric = aws.cloudwatch.LogMetricFilter(
                f"{name}-{key}",
                name=f"{n.prefix}-{key}",
                log_group_name=log_group_name,
                pattern=security_event_pattern(event),
                metric_transformation={
                    "name": event,
                    "namespace": n.security_metrics_namespace,
                    "value": "1",
                    "default_value": "0",  # lines of other kinds count 0: OK comes back
                    "unit": "Count",
                },
                opts=child,
            )
            alarms[event] = aws.cloudwatch.MetricAlarm(
                f"{name}-{key}-alarm",
                name=n.security_alarms[event],
                alarm_description=(
                    f"Security: {thresholds[event]} or more {what} "
                    f"in {spec.security_alarm_period_seconds} s"
                ),
                namespace=n.security_metrics_namespace,
                metric_name=event,
                statistic="Sum",
                period=spec.security_alarm_period_seconds,
                evaluation_periods=1,
                datapoints_to_alarm=1,
                threshold=thresholds[event],
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",  # no log lines, no attack to report
                actions_enabled=spec.released,
                alarm_actions=[topic_arn],
                ok_actions=[topic_arn],
                tags=n.tags(spec.environment_class),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[metric]),
            )
        self.names = pulumi.Output.all(**{k: a.name for k, a in alarms.items()})
        self.register_outputs({"names": self.names})
