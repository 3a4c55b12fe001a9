"""Alarms: one per SLO plus the database limits, each with a deliberate missing-data rule
and an action, a topic with the configured subscriptions, and a dashboard of the same."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.harness import RELEASE_CONFIG, Stack, build_stack

pytestmark = pytest.mark.unit

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TREAT_MISSING = {
    "latency_p95": "notBreaching",
    "error_rate": "notBreaching",
    "availability": "breaching",
    "db_cpu": "missing",
    "db_free_storage": "breaching",
    "db_connections": "missing",
}


def _alarms(stack: Stack) -> dict[str, Any]:
    by_name = {a.get("name"): a for a in stack.of_type(ALARM)}
    return {key: by_name[name] for key, name in stack.outputs["alarm_names"].items()}


def _metrics(alarm: Any) -> dict[str, dict[str, Any]]:
    return {q["id"]: q for q in alarm.get("metricQueries")}


def test_every_alarm_has_an_action_and_a_deliberate_missing_data_rule(stack: Stack) -> None:
    topic = stack.one("aws:sns/topic:Topic").state["arn"]
    alarms = _alarms(stack)
    security = stack.outputs["security_alarm_names"]
    assert len(stack.of_type(ALARM)) == len(alarms) + len(security)
    assert len(alarms) == len(TREAT_MISSING)
    for key, alarm in alarms.items():
        assert alarm.get("treatMissingData") == TREAT_MISSING[key], key
        assert alarm.get("alarmActions") == [topic]
        assert alarm.get("okActions") == [topic]
        assert alarm.get("actionsEnabled") is True
        assert alarm.get("evaluationPeriods") == stack.spec.alarm_evaluation_periods
        assert alarm.get("datapointsToAlarm") == stack.spec.alarm_datapoints_to_alarm
    assert stack.outputs["alarm_topic_arn"] == topic


def test_latency_alarm_watches_p95_against_the_slo(stack: Stack) -> None:
    alarm = _alarms(stack)["latency_p95"]
    assert alarm.get("metricName") == "TargetResponseTime"
    assert alarm.get("extendedStatistic") == "p95"
    assert alarm.get("threshold") == 0.4 == stack.spec.slo_latency_p95_seconds
    assert alarm.get("comparisonOperator") == "GreaterThanThreshold"
    assert alarm.get("period") == stack.spec.alarm_period_seconds
    assert alarm.get("dimensions.LoadBalancer").startswith("app/")


def test_error_rate_alarm_is_metric_math_over_5xx_and_requests(stack: Stack) -> None:
    alarm = _alarms(stack)["error_rate"]
    queries = _metrics(alarm)
    names = {q["metric"]["metricName"] for q in queries.values() if "metric" in q}
    assert names == {"HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count", "RequestCount"}
    (result,) = [q for q in queries.values() if q.get("returnData")]
    for source in ("elb5xx", "target5xx", "requests"):
        assert source in result["expression"]
    assert alarm.get("threshold") == 1.0 == stack.spec.slo_error_rate_percent


def test_availability_alarm_fires_when_healthy_hosts_fall_below_desired(stack: Stack) -> None:
    alarm = _alarms(stack)["availability"]
    queries = _metrics(alarm)
    assert queries["healthy"]["metric"]["metricName"] == "HealthyHostCount"
    assert set(queries["healthy"]["metric"]["dimensions"]) == {"LoadBalancer", "TargetGroup"}
    assert queries["desired"]["metric"]["metricName"] == "DesiredTaskCount"
    assert queries["desired"]["metric"]["dimensions"]["ServiceName"] == f"drydock-{stack.name}-api"
    assert queries["below_desired"]["expression"] == "IF(healthy < desired, 1, 0)"
    assert alarm.get("comparisonOperator") == "GreaterThanOrEqualToThreshold"


def test_database_alarms_watch_the_instance(stack: Stack) -> None:
    alarms = _alarms(stack)
    expected = {
        "db_cpu": ("CPUUtilization", stack.spec.db_cpu_alarm_percent),
        "db_free_storage": ("FreeStorageSpace", stack.spec.db_free_storage_alarm_gb * 1024**3),
        "db_connections": ("DatabaseConnections", stack.spec.db_connections_alarm),
    }
    for key, (metric, threshold) in expected.items():
        alarm = alarms[key]
        assert alarm.get("namespace") == "AWS/RDS"
        assert alarm.get("metricName") == metric
        assert alarm.get("threshold") == threshold
        assert alarm.get("dimensions") == {"DBInstanceIdentifier": f"drydock-{stack.name}"}
    assert alarms["db_free_storage"].get("comparisonOperator") == "LessThanThreshold"


def test_dashboard_shows_the_slos_and_every_alarm(stack: Stack) -> None:
    dashboard = stack.one("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.get("dashboardName") == stack.outputs["dashboard_name"]
    widgets = json.loads(dashboard.get("dashboardBody"))["widgets"]
    text = json.dumps(widgets)
    for metric in ("TargetResponseTime", "HTTPCode_Target_5XX_Count", "HealthyHostCount"):
        assert metric in text
    thresholds = {
        w["properties"]["annotations"]["horizontal"][0]["value"]
        for w in widgets
        if "annotations" in w.get("properties", {})
    }
    assert {0.4, 1.0} <= thresholds
    (status,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(status["properties"]["alarms"]) == len(TREAT_MISSING)


def test_subscriptions_come_from_config_and_the_https_endpoint_stays_secret() -> None:
    built = build_stack(
        "staging",
        **RELEASE_CONFIG,
        **{
            "drydock:alarmEmails": ["oncall@example.com", "platform@example.com"],
            "drydock:alarmHttpsEndpoint": "https://events.example.com/hook?token=abc",
        },
    )
    subscriptions = built.of_type("aws:sns/topicSubscription:TopicSubscription")
    by_protocol = {(s.get("protocol"), s.get("endpoint")) for s in subscriptions}
    assert by_protocol == {
        ("email", "oncall@example.com"),
        ("email", "platform@example.com"),
        ("https", "https://events.example.com/hook?token=abc"),
    }
    https = next(s for s in subscriptions if s.get("protocol") == "https")
    assert https.is_secret("endpoint")


def test_no_subscriptions_unless_configured(staging: Stack) -> None:
    assert not staging.of_type("aws:sns/topicSubscription:TopicSubscription")


def test_security_event_spikes_alarm_from_metric_filters_on_the_service_log(
    stack: Stack,
) -> None:
    spec, topic = stack.spec, stack.one("aws:sns/topic:Topic").state["arn"]
    log_group = stack.outputs["log_group_name"]
    namespace = f"drydock/{stack.name}/security-events"
    filters = {
        f.get("metricTransformation.name"): f
        for f in stack.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    }
    assert set(filters) == {"refresh_reused", "account_locked"}
    by_name = {a.get("name"): a for a in stack.of_type(ALARM)}
    thresholds = {
        "refresh_reused": spec.refresh_reuse_alarm_threshold,
        "account_locked": spec.lockout_alarm_threshold,
    }
    assert stack.outputs["security_alarm_names"] == {
        "refresh_reused": f"drydock-{stack.name}-security-refresh-reuse",
        "account_locked": f"drydock-{stack.name}-security-account-lockout",
    }
    for event, alarm_name in stack.outputs["security_alarm_names"].items():
        metric = filters[event]
        assert metric.get("logGroupName") == log_group
        assert metric.get("pattern") == f'{{ $.security_event = "{event}" }}'
        assert metric.get("metricTransformation") == {
            "name": event,
            "namespace": namespace,
            "value": "1",
            "defaultValue": "0",
            "unit": "Count",
        }
        alarm = by_name[alarm_name]
        assert (alarm.get("namespace"), alarm.get("metricName")) == (namespace, event)
        assert (alarm.get("statistic"), alarm.get("period")) == (
            "Sum",
            spec.security_alarm_period_seconds,
        )
        assert alarm.get("threshold") == thresholds[event]
        assert alarm.get("comparisonOperator") == "GreaterThanOrEqualToThreshold"
        assert (alarm.get("evaluationPeriods"), alarm.get("datapointsToAlarm")) == (1, 1)
        assert alarm.get("treatMissingData") == "notBreaching"
        assert alarm.get("alarmActions") == alarm.get("okActions") == [topic]
        assert alarm.get("actionsEnabled") is True
    # Not a deployment alarm: ECS must not roll a release back because of an attack.
    service = stack.one("aws:ecs/service:Service")
    assert not set(service.get("alarms.alarmNames")) & set(stack.outputs["security_alarm_names"])


def test_the_metric_filter_matches_what_the_service_logs() -> None:
    """The filter reads `$.security_event` at the top level of a JSON line: what the
    service's formatter writes for an event (the pattern language itself is CloudWatch's)."""
    import io
    import logging

    from infra.alarms import SECURITY_EVENTS, security_event_pattern
    from service.logs import JsonFormatter
    from service.security.events import security_event

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("drydock.security")
    logger.addHandler(handler)
    try:
        for event in SECURITY_EVENTS:
            security_event(event, user_id=1)
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for event, line in zip(SECURITY_EVENTS, lines, strict=True):
        field, value = security_event_pattern(event).strip("{} ").split(" = ")
        assert field == "$.security_event"
        assert line[field.removeprefix("$.")] == json.loads(value) == event
