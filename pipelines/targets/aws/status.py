"""`status()` of an AWS environment: the ECS service and its tasks, the alarms, the RDS
instance. Status reports; it does not fail: what it cannot read becomes a problem line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from infra import outputs as out
from pipelines.targets.aws.canary import probes_drift, production_rule_of
from pipelines.targets.aws.common import client_error, image_digest, timestamp
from pipelines.targets.aws.ecs import describe_service
from pipelines.targets.aws.observe import alarm_states
from pipelines.targets.base import (
    EnvironmentStatus,
    Health,
    ProcessStatus,
    ReplicaStatus,
    TargetError,
)

if TYPE_CHECKING:
    from pipelines.targets.aws.contract import AwsEnv

T = TypeVar("T")


def task_health(task: Mapping[str, Any]) -> Health:
    """ECS task state -> the protocol's replica health (the container health check is the
    liveness probe; the ALB's check on the readiness path gates traffic)."""
    last = task.get("lastStatus", "")
    if last in {"PROVISIONING", "PENDING", "ACTIVATING"}:
        return Health.STARTING
    if last in {"DEACTIVATING", "STOPPING", "DEPROVISIONING"}:
        return Health.DRAINING
    if last != "RUNNING":
        return Health.DEAD
    return {"HEALTHY": Health.READY, "UNHEALTHY": Health.UNREADY}.get(
        task.get("healthStatus", ""), Health.STARTING
    )


def replicas(
    ecs: Any, cluster: str, service: str, container: str, port: int
) -> tuple[ReplicaStatus, ...]:
    arns: list[str] = []
    for page in ecs.get_paginator("list_tasks").paginate(cluster=cluster, serviceName=service):
        arns += page.get("taskArns", [])
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), 100):  # describe_tasks takes at most 100
        tasks += ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])["tasks"]
    result = []
    for slot, task in enumerate(sorted(tasks, key=lambda t: str(t.get("startedAt", "")))):
        app: dict[str, Any] = next(
            (c for c in task.get("containers", []) if c.get("name") == container), {}
        )
        result.append(
            ReplicaStatus(
                slot=slot,
                pid=None,
                port=port,
                release=app.get("imageDigest") or image_digest(app.get("image", "")),
                health=task_health(task),
                since=timestamp(task.get("startedAt"), "%H:%M:%S"),
            )
        )
    return tuple(result)


def database_facts(rds: Any, instance: str) -> dict[str, Any]:
    found = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
    return {
        "instance": instance,
        "status": found.get("DBInstanceStatus", ""),
        "engine": f"{found.get('Engine', '')} {found.get('EngineVersion', '')}".strip(),
        "class": found.get("DBInstanceClass", ""),
        "multi_az": bool(found.get("MultiAZ")),
        "allocated_storage_gb": found.get("AllocatedStorage", 0),
        "endpoint": found.get("Endpoint", {}).get("Address", ""),
        "backup_retention_days": found.get("BackupRetentionPeriod", 0),
        "latest_restorable_time": timestamp(found.get("LatestRestorableTime")),
    }


def environment_status(env: AwsEnv) -> EnvironmentStatus:
    o, problems = env.outputs, []

    def attempt(what: str, read: Callable[[], T], default: T) -> T:
        try:
            return read()
        except (TargetError, client_error()) as exc:
            problems.append(f"cannot read {what}: {exc}")
            return default

    ecs, cluster, name = env.clients("ecs"), o[out.CLUSTER_NAME], o[out.SERVICE_NAME]
    service: dict[str, Any] = attempt(
        "the ECS service", lambda: describe_service(ecs, cluster, name), {}
    )
    tasks: tuple[ReplicaStatus, ...] = attempt(
        "the service's tasks",
        lambda: replicas(ecs, cluster, name, o[out.CONTAINER_NAME], env.spec.container_port),
        (),
    )
    alarms: dict[str, str] = attempt(
        "the alarms",
        lambda: alarm_states(
            env.clients("cloudwatch"),
            [*o.alarm_names.values(), *o.security_alarm_names.values()],
        ),
        {},
    )
    database: dict[str, Any] = attempt(
        "the database", lambda: database_facts(env.clients("rds"), o[out.DB_INSTANCE_ID]), {}
    )
    release = attempt("the current release", env.current_release, None) if service else None

    desired, running = service.get("desiredCount", 0), service.get("runningCount", 0)
    deployments = service.get("deployments", [])
    if service and running < desired:
        problems.append(f"{running} of {desired} tasks running")
    if len(deployments) > 1:
        problems.append(f"a deployment is in progress ({len(deployments)} deployments)")
    problems += [
        f"deployment {d.get('id')} {d.get('rolloutState')}: {d.get('rolloutStateReason', '')}"
        for d in deployments
        if d.get("rolloutState") == "FAILED"
    ]
    problems += [
        f"alarm {alarm} is in ALARM" for alarm, state in alarms.items() if state == "ALARM"
    ]
    rule = production_rule_of(service)
    if rule is not None and len(deployments) <= 1:  # mid-deployment they differ by design
        drift = attempt(
            "the listener rules",
            lambda: probes_drift(env.clients("elbv2"), rule, o[out.PROBES_RULE_ARN]),
            None,
        )
        if drift:
            problems.append(drift)
    if database and database.get("status") != "available":
        problems.append(f"database {database.get('instance')} is {database.get('status')}")
    # Each ECS deployment shows as a process: PRIMARY is what the service converges to.
    rollouts = tuple(
        ProcessStatus(
            f"deployment {str(d.get('taskDefinition', '')).rsplit('/', 1)[-1]}",
            None,
            d.get("rolloutState") != "FAILED",
            f"{d.get('status')} {d.get('rolloutState')} "
            f"{d.get('runningCount', 0)}/{d.get('desiredCount', 0)} running",
        )
        for d in deployments
    )
    processes = (
        ProcessStatus(
            f"ecs service {name}",
            None,
            service.get("status") == "ACTIVE" and running > 0,
            env.url,
        ),
        ProcessStatus(
            f"rds {o[out.DB_INSTANCE_ID]}",
            None,
            database.get("status") == "available",
            str(database.get("endpoint", "")),
        ),
    )
    return EnvironmentStatus(
        name=env.name,
        target=env.target,
        up=all(p.running for p in processes) and not problems,
        release=release,
        desired_replicas=int(desired),
        replicas=tasks,
        processes=processes + rollouts,
        alarms=alarms,
        database=database,
        url=env.url,
        problems=tuple(problems),
    )
