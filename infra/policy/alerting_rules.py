"""Paging rules: in production every topic that alarms or failed backups notify has a
subscriber, and a failed backup or copy job notifies at all."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from infra.policy.registry import Resource, is_production, listed, stack_rule
from infra.policy.tokens import (
    ALARM,
    BACKUP_VAULT,
    EVENT_RULE,
    EVENT_TARGET,
    SUBSCRIPTION,
    TOPIC,
)


def subscribed_topics(resources: Sequence[Resource]) -> set[Any]:
    """The ARNs of topics with at least one subscription."""
    return {r.props.get("topic") for r in resources if r.type == SUBSCRIPTION} - {None}


def _notified(resources: Sequence[Resource]) -> dict[Any, str]:
    """Topic ARN -> who notifies it (an alarm's actions, an EventBridge target)."""
    found: dict[Any, str] = {}
    for r in resources:
        if r.type == ALARM:
            for arn in listed(r.props.get("alarmActions")) + listed(r.props.get("okActions")):
                found.setdefault(arn, r.name)
        elif r.type == EVENT_TARGET and ":sns:" in str(r.props.get("arn")):
            found.setdefault(r.props.get("arn"), r.name)
    return found


@stack_rule(
    "alarm-topic-subscribed",
    "in production, every topic that alarms or failed backups notify has a subscriber",
)
def alarm_topic_subscribed(resources: Sequence[Resource]) -> Iterator[str]:
    subscribed = subscribed_topics(resources)
    for topic in (r for r in resources if r.type == TOPIC and is_production(r)):
        arn = topic.props.get("arn")
        notifier = _notified(resources).get(arn)
        if notifier and arn not in subscribed:
            yield (
                f"{topic.name}: {notifier} notifies it and nobody is subscribed; set "
                "drydock:alarmEmails or drydock:alarmHttpsEndpoint"
            )


def _pattern(rule: Resource) -> dict[str, Any]:
    raw = rule.props.get("eventPattern")
    try:
        pattern = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return {}
    return pattern if isinstance(pattern, dict) else {}


@stack_rule(
    "backup-failures-notify",
    "a stack with a backup vault sends its failed backup and copy jobs to an SNS topic",
)
def backup_failures_notify(resources: Sequence[Resource]) -> Iterator[str]:
    if not any(r.type == BACKUP_VAULT for r in resources):
        return
    watching = {
        rule.props.get("name")
        for rule in resources
        if rule.type == EVENT_RULE
        and "aws.backup" in listed(_pattern(rule).get("source"))
        and "FAILED" in listed((_pattern(rule).get("detail") or {}).get("state"))
    }
    paged = any(
        r.type == EVENT_TARGET
        and r.props.get("rule") in watching
        and ":sns:" in str(r.props.get("arn"))
        for r in resources
    )
    if not paged:
        yield (
            "no EventBridge rule sends AWS Backup's FAILED backup and copy jobs to a topic "
            "(infra/backup_alerts.py); vault notifications cannot: BACKUP_JOB_FAILED is never sent"
        )
