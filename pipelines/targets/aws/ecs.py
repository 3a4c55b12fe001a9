"""ECS for the aws target: task definition revisions, and watching a deployment to its end.

A rollout registers a revision of the service's task definition with the release's image,
points the service at it and polls `describe_services` until ECS settles. It is judged
green only when our deployment is the PRIMARY one, its rolloutState is COMPLETED, and the
service's task definition is still ours: a circuit-breaker or alarm rollback (ECS marks our
deployment FAILED and starts a new one on the previous revision), or any other deployment
taking over, fails the rollout with ECS's own reason. Never "green after rollback".
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.targets.aws.common import client_error, image_digest, timestamp
from pipelines.targets.base import RolloutState, TargetError

RELEASE_TAG = "drydock:release"
COMPLETED_TAG = "drydock:completed-at"  # set when a rollout of this revision completed
HISTORY_LIMIT = 50  # revisions looked at when choosing a rollback target
# The fields of describe_task_definition that register_task_definition accepts.
REGISTER_FIELDS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
    "enableFaultInjection",
)


@dataclass(frozen=True)
class Revision:
    arn: str
    revision: int
    image: str
    tags: Mapping[str, str]

    @property
    def release(self) -> str:
        return self.tags.get(RELEASE_TAG) or self.image

    @property
    def completed_at(self) -> float:
        try:
            return float(self.tags.get(COMPLETED_TAG, 0))
        except ValueError:
            return 0.0

    @property
    def unproven(self) -> bool:
        """Registered by a rollout that never completed: never a rollback target."""
        return RELEASE_TAG in self.tags and COMPLETED_TAG not in self.tags

    def matches(self, release: str) -> bool:
        return release in (self.release, self.image, image_digest(self.image))


def _tags(items: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {item["key"]: item["value"] for item in items or ()}


def describe_revision(
    ecs: Any, task_definition: str, container: str
) -> tuple[Revision, dict[str, Any]]:
    """The revision record and the raw task definition (ARN or family[:revision])."""
    response = ecs.describe_task_definition(taskDefinition=task_definition, include=["TAGS"])
    definition = response["taskDefinition"]
    images = {c["name"]: c.get("image", "") for c in definition.get("containerDefinitions", [])}
    if container not in images:
        raise TargetError(
            f"task definition {definition['taskDefinitionArn']} has no container {container!r} "
            f"(it has {', '.join(sorted(images)) or 'none'})"
        )
    revision = Revision(
        arn=definition["taskDefinitionArn"],
        revision=int(definition.get("revision", 0)),
        image=images[container],
        tags=_tags(response.get("tags")),
    )
    return revision, definition


def register_with_image(
    ecs: Any,
    definition: Mapping[str, Any],
    container: str,
    image: str,
    tags: Mapping[str, str],
    entry_point: list[str] | None = None,
) -> str:
    """Register a copy of `definition` whose `container` runs `image`. Everything else,
    secrets (`valueFrom` ARNs) included, is kept as it is. Returns the new revision's ARN."""
    request = {k: copy.deepcopy(definition[k]) for k in REGISTER_FIELDS if k in definition}
    for spec in request["containerDefinitions"]:
        if spec["name"] == container:
            spec["image"] = image
            if entry_point is not None:
                spec["entryPoint"] = list(entry_point)
    return _register(ecs, request, tags)


def container_environment(definition: Mapping[str, Any], container: str) -> dict[str, str]:
    """The plain `environment` entries of `container` (secrets are not among them)."""
    for spec in definition.get("containerDefinitions", []):
        if spec["name"] == container:
            return {e["name"]: e.get("value", "") for e in spec.get("environment", [])}
    raise TargetError(f"task definition {definition.get('taskDefinitionArn')} has no {container}")


def register_with_environment(
    ecs: Any,
    definition: Mapping[str, Any],
    container: str,
    variables: Mapping[str, str],
    tags: Mapping[str, str],
) -> str:
    """Register a copy of `definition` with `variables` set in `container`'s environment
    (replaced where present, added where not); everything else is kept as it is."""
    request = {k: copy.deepcopy(definition[k]) for k in REGISTER_FIELDS if k in definition}
    for spec in request["containerDefinitions"]:
        if spec["name"] == container:
            entries = [e for e in spec.get("environment", []) if e["name"] not in variables]
            entries += [{"name": k, "value": v} for k, v in variables.items()]
            spec["environment"] = entries
    return _register(ecs, request, tags)


def _register(ecs: Any, request: dict[str, Any], tags: Mapping[str, str]) -> str:
    allowed = {k: v for k, v in tags.items() if not k.startswith("aws:") and v}
    if allowed:
        request["tags"] = [{"key": k, "value": v} for k, v in allowed.items()]
    response = ecs.register_task_definition(**request)
    return str(response["taskDefinition"]["taskDefinitionArn"])


def release_tags(current: Revision, release: str, **extra: str) -> dict[str, str]:
    """A new revision's tags: the current one's own tags, none of its drydock ones."""
    kept = {k: v for k, v in current.tags.items() if not k.startswith("drydock:")}
    return {**kept, RELEASE_TAG: release, **{f"drydock:{k}": v for k, v in extra.items() if v}}


def history(ecs: Any, family: str, container: str, limit: int = HISTORY_LIMIT) -> list[Revision]:
    """The newest `limit` active revisions of `family`, newest first."""
    arns: list[str] = []
    for page in ecs.get_paginator("list_task_definitions").paginate(
        familyPrefix=family, status="ACTIVE", sort="DESC"
    ):
        arns.extend(page.get("taskDefinitionArns", []))
        if len(arns) >= limit:
            break  # newest first: older pages cannot matter
    # Sorted here too: not every implementation honours `sort`.
    arns.sort(key=lambda arn: int(arn.rsplit(":", 1)[1]), reverse=True)
    return [describe_revision(ecs, arn, container)[0] for arn in arns[:limit]]


def rollback_target(
    revisions: list[Revision], current: Revision, to_release: str | None
) -> Revision:
    """The revision to roll back to: the most recently completed release other than the
    current one (or the one matching `to_release`), never one whose rollout never completed."""
    candidates = [
        r for r in revisions if r.arn != current.arn and r.image != current.image and not r.unproven
    ]
    if to_release is not None:
        candidates = [r for r in candidates if r.matches(to_release)]
    if not candidates:
        wanted = to_release or "an earlier release"
        raise TargetError(
            f"cannot roll back to {wanted}: no completed revision of it among the newest "
            f"{len(revisions)} revisions of {current.arn.rsplit('/', 1)[-1].split(':')[0]}"
        )
    return max(candidates, key=lambda r: (r.completed_at, r.revision))


def mark_completed(ecs: Any, arn: str, now: float) -> str | None:
    """Tag a revision whose rollout completed; returns a note if tagging was refused."""
    try:
        ecs.tag_resource(resourceArn=arn, tags=[{"key": COMPLETED_TAG, "value": f"{now:.0f}"}])
    except client_error() as exc:
        return f"could not tag {arn} as completed ({exc}); rollback may not prefer it"
    return None


def describe_service(ecs: Any, cluster: str, service: str) -> dict[str, Any]:
    response = ecs.describe_services(cluster=cluster, services=[service])
    found = [s for s in response.get("services", []) if s.get("status") != "INACTIVE"]
    if not found:
        reasons = "; ".join(f.get("reason", "") for f in response.get("failures", []))
        raise TargetError(
            f"ECS service {service} not found in cluster {cluster} ({reasons or 'inactive'}): "
            "it is created by `invoke infra.up --image ... --yes`"
        )
    return dict(found[0])


def primary(service: Mapping[str, Any]) -> dict[str, Any] | None:
    for deployment in service.get("deployments", []):
        if deployment.get("status") == "PRIMARY":
            return dict(deployment)
    return None


def cause(reason: str) -> str:
    lowered = reason.lower()
    if "circuit breaker" in lowered:
        return "circuit breaker"
    if "alarm" in lowered:
        return "deployment alarm"
    return "ECS"


@dataclass
class Verdict:
    state: RolloutState
    reason: str


@dataclass
class DeploymentWatch:
    """Polls one service until the deployment of `wanted` settles, or the timeout."""

    ecs: Any
    cluster: str
    service: str
    poll_s: float
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    events: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def remember(self, service: Mapping[str, Any]) -> None:
        """Events already there before the deployment are not part of its story."""
        self._seen.update(e["id"] for e in service.get("events", []) if "id" in e)

    def _collect(self, service: Mapping[str, Any]) -> None:
        fresh = [e for e in service.get("events", []) if e.get("id") not in self._seen]
        self.remember(service)
        for event in reversed(fresh):  # ECS lists the newest first
            when = timestamp(event.get("createdAt"), "%H:%M:%S ")
            self.events.append(f"{when}{event.get('message', '')}")

    def deploy(
        self, wanted: str, previous: str, timeout_s: float, label: Callable[[str], str]
    ) -> Verdict:
        response = self.ecs.update_service(
            cluster=self.cluster,
            service=self.service,
            taskDefinition=wanted,
            forceNewDeployment=False,
        )
        started = primary(response.get("service", {}))
        ours_id = started["id"] if started and started.get("taskDefinition") == wanted else None
        deadline, ours = self.clock() + timeout_s, None
        while True:
            service = describe_service(self.ecs, self.cluster, self.service)
            self._collect(service)
            # ECS may drop a failed deployment from the list: keep its last known state.
            ours = _find(service, ours_id, wanted) or ours
            verdict = judge(service, ours, wanted, previous, label)
            if verdict is not None:
                return verdict
            if self.clock() >= deadline:
                return timed_out(service, ours, timeout_s, label(wanted))
            self.sleep(self.poll_s)


def _find(
    service: Mapping[str, Any], deployment_id: str | None, wanted: str
) -> dict[str, Any] | None:
    for deployment in service.get("deployments", []):
        if deployment.get("id") == deployment_id or (
            deployment_id is None and deployment.get("taskDefinition") == wanted
        ):
            return dict(deployment)
    return None


def judge(
    service: Mapping[str, Any],
    ours: Mapping[str, Any] | None,
    wanted: str,
    previous: str,
    label: Callable[[str], str],
) -> Verdict | None:
    """The outcome once ECS has settled; None while it is still working. `ours` is our
    deployment as last seen, None if it was never seen."""
    head = primary(service)
    if head is None:
        return None
    running = service.get("taskDefinition", "")
    head_td, head_state = head.get("taskDefinition", ""), head.get("rolloutState")
    if head_td == wanted:
        if head_state == "FAILED":
            reason = head.get("rolloutStateReason", "no reason given")
            return Verdict(
                RolloutState.FAILED,
                f"ECS failed the deployment of {label(wanted)} ({cause(reason)}) without "
                f"rolling it back: {reason}",
            )
        if head_state != "COMPLETED":
            return None
        if running != wanted:
            return Verdict(
                RolloutState.FAILED,
                f"ECS reports the deployment COMPLETED but the service runs {label(running)}, "
                f"not {label(wanted)}",
            )
        return Verdict(RolloutState.COMPLETED, f"{label(wanted)} is serving")
    # The primary deployment is not ours: ECS rolled back, or another deployment took over.
    if ours is None or head_state != "COMPLETED":
        return None  # a read from before our update, or the rollback is still under way
    state = RolloutState.ROLLED_BACK if head_td == previous == running else RolloutState.FAILED
    now_on = label(running or head_td)
    if ours.get("rolloutState") == "FAILED":
        reason = ours.get("rolloutStateReason", "no reason given")
        where = "back on" if state is RolloutState.ROLLED_BACK else "now on"
        return Verdict(
            state,
            f"ECS rolled the deployment of {label(wanted)} back ({cause(reason)}): {reason}; "
            f"the service is {where} {now_on}",
        )
    return Verdict(
        state,
        f"the deployment of {label(wanted)} did not stay: the service runs {now_on} "
        f"(our deployment was last {ours.get('rolloutState')}; the events say why)",
    )


def timed_out(
    service: Mapping[str, Any], ours: Mapping[str, Any] | None, timeout_s: float, what: str
) -> Verdict:
    doing = ours or primary(service) or {}
    counts = f"{doing.get('runningCount', '?')}/{doing.get('desiredCount', '?')} tasks running"
    rolling_back = ours is not None and ours.get("rolloutState") == "FAILED"
    still = "ECS is rolling it back" if rolling_back else "ECS is still deploying it"
    return Verdict(
        RolloutState.FAILED,
        f"the deployment of {what} did not settle within {timeout_s:g} s "
        f"({doing.get('rolloutState', 'unknown')}: {doing.get('rolloutStateReason', '')}; "
        f"{counts}); {still}, and the circuit breaker may still roll it back",
    )
