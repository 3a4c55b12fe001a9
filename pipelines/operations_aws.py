"""The on-call operations on the aws target (see pipelines/operations.py for the local ones).

Flags are `FLAG_<NAME>` environment entries of the app container, so the flags in force are
those of the service's current task definition, and a change is a new revision of it rolled
out and watched exactly like a release. The ledger is the target's S3 ledger; alarm
transitions come from CloudWatch's alarm history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from infra import outputs as out
from pipelines.ledger import Ledger
from pipelines.operations_common import (
    Event,
    alarm_event,
    flag_text,
    ledger_events,
    parse_flag_changes,
    parse_since,
    render_timeline,
    status_text,
)
from pipelines.targets import aws_ecs as ecs_ops
from pipelines.targets.aws import AwsEnvironment, AwsTarget
from pipelines.targets.aws_common import aws_errors
from pipelines.targets.base import TargetError


def _target(target: AwsTarget | None) -> AwsTarget:
    return target if target is not None else AwsTarget()


@aws_errors("reading the flags")
def flags_in_force(environment: AwsEnvironment) -> dict[str, bool]:
    """The registry's defaults overridden by the service's current task definition."""
    from service.flags import FlagError, resolve_flags

    ecs = environment.clients("ecs")
    outputs = environment.outputs
    service = ecs_ops.describe_service(ecs, outputs[out.CLUSTER_NAME], outputs[out.SERVICE_NAME])
    container = outputs[out.CONTAINER_NAME]
    _, definition = ecs_ops.describe_revision(ecs, service["taskDefinition"], container)
    try:
        return resolve_flags(ecs_ops.container_environment(definition, container))
    except FlagError as exc:
        raise TargetError(f"{environment.name}: {service['taskDefinition']}: {exc}") from None


def list_flags(env: str, target: AwsTarget | None = None) -> list[dict[str, Any]]:
    from service.flags import describe

    return describe(flags_in_force(_target(target).environment(env)))


@aws_errors("writing the ledger")
def _record(environment: AwsEnvironment, ledger: Ledger, kind: str, **fields: Any) -> None:
    ledger.append(kind, environment.name, **fields)


def set_flags(
    env: str,
    assignments: list[str],
    ledger: Ledger | None = None,
    target: AwsTarget | None = None,
) -> str:
    """A new task definition revision with the flags changed, rolled out like a release;
    ECS's rollback or a timeout fails it, and the previous revision keeps serving."""
    changes = parse_flag_changes(assignments)
    chosen = _target(target)
    environment = chosen.environment(env)
    book = ledger or chosen.ledger()  # found before anything changes: the change is recorded
    in_force = flags_in_force(environment)
    if all(in_force[name] == value for name, value in changes.items()):
        return f"{env}: {flag_text(changes)} already in force; nothing was deployed"
    variables = {f"FLAG_{name}": "true" if on else "false" for name, on in changes.items()}
    result = environment.reconfigure(variables)
    _record(
        environment,
        book,
        "flag",
        changes=changes,
        ok=result.ok,
        release=result.release,
        reason=result.reason,
    )
    if not result.ok:
        raise TargetError(
            f"flag change not applied: {result.reason}; the previous flags keep serving"
        )
    return (
        f"{env}: {flag_text(changes)} applied by a new task definition revision, rolled out "
        f"in {result.duration_s:.1f} s"
    )


def db_status(env: str, target: AwsTarget | None = None) -> str:
    """Against the migrations of the image the service runs, from a one-off ECS task."""
    return status_text(env, _target(target).environment(env).database.migration_status())


def db_migrate(env: str, target: AwsTarget | None = None) -> str:
    status = _target(target).environment(env).database.migrate()
    return f"{env}: migrated to {status.current}"


def db_reset(env: str) -> str:
    """Never on AWS: dropping a managed database is not a task's job."""
    if env == "production":
        raise TargetError("db.reset refuses production; nothing was changed")
    raise TargetError(
        f"db.reset does not run on the aws target: a managed RDS database is not dropped by a "
        f"task. Reset {env} by restoring a snapshot (`invoke backup.list --env {env} --target "
        f"aws`, then the `aws rds restore-db-instance-from-db-snapshot` command of runbook "
        f"section 8; `invoke backup.restore` is local only) or by re-creating the stack "
        f"(`invoke infra.up --stack {env} --image <ecr-uri>@sha256:<digest> --yes`); nothing "
        f"was changed"
    )


@aws_errors("reading the alarm history")
def alarm_events(environment: AwsEnvironment, start: float) -> list[Event]:
    """The state transitions of the stack's alarms since `start`."""
    cloudwatch = environment.clients("cloudwatch")
    since = datetime.fromtimestamp(start, UTC)
    events: list[Event] = []
    for name in sorted(set(environment.outputs.alarm_names.values())):
        pages = cloudwatch.get_paginator("describe_alarm_history").paginate(
            AlarmName=name, HistoryItemType="StateUpdate", StartDate=since
        )
        for page in pages:
            events += [_transition(item) for item in page.get("AlarmHistoryItems", [])]
    return [event for event in events if event[0] >= start]


def _transition(item: dict[str, Any]) -> Event:
    """One history item; its HistoryData is JSON with the old and new states."""
    try:
        data = json.loads(item.get("HistoryData") or "{}")
        old, new = data["oldState"]["stateValue"], data["newState"]["stateValue"]
        reason = str(data["newState"].get("stateReason", ""))
    except (ValueError, KeyError, TypeError):
        old, new, reason = "?", "?", str(item.get("HistorySummary", ""))
    at = item["Timestamp"]
    stamp = at.timestamp() if isinstance(at, datetime) else float(at)
    return alarm_event(stamp, str(item.get("AlarmName", "")), old, new, reason)


def timeline(
    env: str, since: str, ledger: Ledger | None = None, target: AwsTarget | None = None
) -> str:
    start = parse_since(since)
    chosen = _target(target)
    environment = chosen.environment(env)
    book = ledger or chosen.ledger()
    events = _ledger_events(environment, book, start) + alarm_events(environment, start)
    return render_timeline(env, start, events)


@aws_errors("reading the ledger")
def _ledger_events(environment: AwsEnvironment, ledger: Ledger, start: float) -> list[Event]:
    return ledger_events(ledger, environment.name, start)
