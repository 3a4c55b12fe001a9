"""The native ECS canary (deploymentConfiguration.strategy CANARY, infra/container_service.py):
ECS shifts canaryPercent of the production listener rule to the new tasks, holds it for the
canary bake, shifts the rest, then keeps the old tasks through bakeTimeInMinutes, so a
rollback is a weight change. The SLO alarms are its deployment alarms: ECS rolls back on
them by itself.

What ECS cannot express is the statistical comparison of the two target groups: the pipeline
judges each native stage from CloudWatch (one period per window, both target groups) and,
if the canary is worse, asks ECS to roll back (StopServiceDeployment, stopType ROLLBACK).
Natively there are two stages: the canary share (the first of drydock:canarySteps) and 100 %.
The lifecycle is read from DescribeServiceDeployments, to its end.

ECS moves one listener rule, the production one. The probes rule (readiness and liveness
through the load balancer, infra/load_balancer.py) is given the same weights before the
deployment starts and each time the lifecycle moves on, so that after ECS swaps the groups'
roles the probes do not point at the group it has emptied. The alignment before the start
also repairs a rule left behind by a deploy whose runner died.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from infra import outputs as out
from pipelines.targets.aws.common import aws_errors
from pipelines.targets.aws.contract import AwsCanaryHost
from pipelines.targets.aws.observe import Dimensions, arn_suffix, metric_values, period_for
from pipelines.targets.base import (
    CanaryWindow,
    Release,
    RolloutResult,
    RolloutState,
    ServedTraffic,
    TargetError,
)

ROLLED_BACK = {"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL"}
ENDED_BADLY = {*ROLLED_BACK, "ROLLBACK_FAILED", "STOPPED", "STOP_REQUESTED"}
# The lifecycle stages from which the canary share is in force, and from which all traffic
# is on the new tasks. ECS's model documents PRE_PRODUCTION_TRAFFIC_SHIFT and
# PRODUCTION_TRAFFIC_SHIFT once per shift step of a canary (the share, then the rest), so
# only POST_PRODUCTION_TRAFFIC_SHIFT and later mean the rest has moved.
CANARY_SHARE = {
    "PRODUCTION_TRAFFIC_SHIFT",
    "POST_PRODUCTION_TRAFFIC_SHIFT",
    "BAKE_TIME",
    "CLEAN_UP",
}
ALL_TRAFFIC = {"POST_PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP"}


def why(deployment: Mapping[str, Any]) -> str:
    """ECS's own account of a deployment that did not go through."""
    parts = [f"ECS deployment {deployment.get('status')}"]
    alarms = deployment.get("alarms") or {}
    if alarms.get("triggeredAlarmNames"):
        parts.append(f"alarm {', '.join(alarms['triggeredAlarmNames'])} in ALARM")
    rollback = deployment.get("rollback") or {}
    for reason in (deployment.get("statusReason"), rollback.get("reason")):
        if reason and reason not in parts:
            parts.append(str(reason))
    return ": ".join(parts[:1]) + (f" ({'; '.join(parts[1:])})" if parts[1:] else "")


def forwarded(rule: Mapping[str, Any]) -> dict[str, int]:
    """Target group ARN -> weight, from a rule's forward action (one group: weight 100)."""
    for action in rule.get("Actions", []):
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if groups:
            return {str(g["TargetGroupArn"]): int(g.get("Weight", 1)) for g in groups}
        if action.get("TargetGroupArn"):
            return {str(action["TargetGroupArn"]): 100}
    return {}


def production_rule_of(service: Mapping[str, Any]) -> str | None:
    """The listener rule ECS moves for this service (DescribeServices' answer), if any."""
    for balancer in service.get("loadBalancers", []):
        rule = (balancer.get("advancedConfiguration") or {}).get("productionListenerRule")
        if rule:
            return str(rule)
    return None


def rule_weights(elbv2: Any, production: str, probes: str) -> tuple[dict[str, int], dict[str, int]]:
    """(production, probes): each rule's target group weights."""
    rules = {
        str(r["RuleArn"]): forwarded(r)
        for r in elbv2.describe_rules(RuleArns=[production, probes])["Rules"]
    }
    wanted = rules.get(production, {})
    if len(wanted) != 2:
        raise TargetError(
            f"the production listener rule {production} does not forward to two target "
            "groups; the canary needs drydock:rolloutStrategy=canary applied (invoke infra.up)"
        )
    return wanted, rules.get(probes, {})


def probes_drift(elbv2: Any, production: str, probes: str) -> str | None:
    """What is wrong when the probes rule does not forward as the production rule does."""
    wanted, actual = rule_weights(elbv2, production, probes)
    if actual == wanted:
        return None
    return (
        f"the probes rule forwards {actual} but the production rule {wanted}: the probe paths "
        "may reach a group ECS emptied; the next deploy aligns it (or copy the weights with "
        "`aws elbv2 modify-rule`)"
    )


def align_probes(elbv2: Any, production: str, probes: str) -> tuple[dict[str, int], bool]:
    """Make the probes rule forward with the production rule's weights. Returns those
    weights and whether the probes rule had to change."""
    wanted, actual = rule_weights(elbv2, production, probes)
    if actual == wanted:
        return wanted, False
    targets = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in wanted.items()]
    elbv2.modify_rule(
        RuleArn=probes, Actions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": targets}}]
    )
    return wanted, True


class NativeCanary:
    def __init__(self, env: AwsCanaryHost) -> None:
        self.env = env
        self.deployment_arn: str | None = None
        self.groups: tuple[str, str] | None = None  # (baseline, canary) target group ARNs
        self.stages_seen: list[str] = []
        self.probes_moved: list[dict[str, int]] = []  # the weights given to the probes rule
        self.production_rule: str | None = None  # read once: a deployment does not change it
        self.previous: str | None = None

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def steps(self) -> Sequence[int]:
        return (self.env.spec.canary_steps[0], 100)

    @property
    def step_seconds(self) -> float:
        return float(self.env.spec.canary_step_seconds)

    @property
    def ecs(self) -> Any:
        return self.env.clients("ecs")

    @aws_errors("starting the canary deployment")
    def start(self, release: Release, timeout_s: float) -> None:
        if "@sha256:" not in release.artifact:
            raise TargetError(
                f"{self.env.name}: the aws target deploys images pinned by digest "
                f"(<repository>@sha256:<digest>); got {release.artifact!r}"
            )
        self.groups = self._target_groups(self.align_probes())
        self.previous, _ = self.env.start_deployment(release)
        found = self.ecs.list_service_deployments(
            cluster=self.env.outputs[out.CLUSTER_NAME],
            service=self.env.outputs[out.SERVICE_NAME],
            status=["PENDING", "IN_PROGRESS"],
        ).get("serviceDeployments", [])
        if not found:
            raise TargetError(
                f"{self.env.name}: ECS started no deployment of {release.id}; "
                f"see `aws ecs describe-services` for {self.env.outputs[out.SERVICE_NAME]}"
            )
        self.deployment_arn = str(found[0]["serviceDeploymentArn"])

    def describe(self) -> dict[str, Any]:
        response = self.ecs.describe_service_deployments(
            serviceDeploymentArns=[self.deployment_arn]
        )
        deployments = response.get("serviceDeployments", [])
        if not deployments:
            raise TargetError(f"ECS does not know deployment {self.deployment_arn}")
        deployment = dict(deployments[0])
        stage = f"{deployment.get('status')}/{deployment.get('lifecycleStage', '-')}"
        if not self.stages_seen or self.stages_seen[-1] != stage:
            self.stages_seen.append(stage)
            self.align_probes()
        return deployment

    def align_probes(self) -> dict[str, int]:
        """Give the probes rule the production rule's weights; the production rule's."""
        if self.production_rule is None:
            self.production_rule = self.env.production_rule_arn()
        wanted, moved = align_probes(
            self.env.clients("elbv2"), self.production_rule, self.env.outputs[out.PROBES_RULE_ARN]
        )
        if moved:
            self.probes_moved.append(wanted)
        return wanted

    @aws_errors("following the canary deployment")
    def shift(self, percent: int) -> float:
        """Wait until ECS has moved `percent` of the traffic; TargetError when ECS rolled the
        deployment back (a deployment alarm) or stopped it instead."""
        wanted = ALL_TRAFFIC if percent >= 100 else CANARY_SHARE
        deadline = self.env.clock() + self.env.rollout_timeout_s
        while True:
            deployment = self.describe()
            status = deployment.get("status")
            if status in ENDED_BADLY:
                raise TargetError(why(deployment))
            if status == "SUCCESSFUL" or deployment.get("lifecycleStage") in wanted:
                return float(percent)
            if self.env.clock() >= deadline:
                raise TargetError(
                    f"ECS did not reach the {percent} % stage within "
                    f"{self.env.rollout_timeout_s:g} s (last {status}, "
                    f"{deployment.get('lifecycleStage')})"
                )
            self.env.sleep(self.env.poll_s)

    @aws_errors("reading both target groups' metrics")
    def window(self, share: int, start: float, end: float) -> CanaryWindow:
        """Both target groups over the window, once CloudWatch has its datapoints."""
        if self.groups is None:
            raise TargetError("no canary was started")
        lag = end + self.env.metric_lag_s - self.env.wall_clock()
        if lag > 0:
            self.env.sleep(lag)
        balancer = self.env.dimensions().load_balancer
        since, until = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
        sides = []
        for group in self.groups:
            values = metric_values(
                self.env.clients("cloudwatch"),
                Dimensions(balancer, arn_suffix(group, ":")),
                since,
                until,
                period_for(end - start),
            )
            latencies = values.get("p95", [])
            sides.append(
                ServedTraffic(
                    round(sum(values.get("requests", []))),
                    round(sum(values.get("target5xx", []))),
                    p95_s=max(latencies) if latencies else None,
                )
            )
        return CanaryWindow(share, start, end, canary=sides[1], baseline=sides[0])

    @aws_errors("rolling the canary back")
    def abort(self, reason: str) -> str:
        deployment = self.describe()
        if deployment.get("status") in ROLLED_BACK:
            return f"ECS is rolling back on its own: {why(deployment)}"
        self.ecs.stop_service_deployment(
            serviceDeploymentArn=self.deployment_arn, stopType="ROLLBACK"
        )
        result = self._settle()
        return f"asked ECS to roll back ({reason}); {result.reason}"

    @aws_errors("following the deployment to its end")
    def promote(self, release: Release, timeout_s: float) -> RolloutResult:
        """The deployment watched to its end: through the bake, or rolled back by an alarm."""
        return self._settle(release.id)

    def _settle(self, release_id: str = "") -> RolloutResult:
        started = self.env.clock()
        deadline = started + self.env.rollout_timeout_s
        while True:
            deployment = self.describe()
            status = deployment.get("status")
            state = None
            if status == "SUCCESSFUL":
                state, reason = RolloutState.COMPLETED, "ECS deployment SUCCESSFUL"
            elif status == "ROLLBACK_SUCCESSFUL":
                state, reason = RolloutState.ROLLED_BACK, why(deployment)
            elif status in {"ROLLBACK_FAILED", "STOPPED"}:
                state, reason = RolloutState.FAILED, why(deployment)
            elif self.env.clock() >= deadline:
                state = RolloutState.FAILED
                reason = f"ECS deployment still {status} after {self.env.rollout_timeout_s:g} s"
            if state is not None:
                return RolloutResult(
                    state,
                    release_id or str(deployment.get("targetServiceRevisionArn", "")),
                    self.previous,
                    reason,
                    self.env.clock() - started,
                    tuple(self.stages_seen),
                )
            self.env.sleep(self.env.poll_s)

    def _target_groups(self, weights: Mapping[str, int]) -> tuple[str, str]:
        """(serving, alternate) from the production rule's weights before the deployment: the
        one with all the weight is the baseline, the other gets the canary."""
        ordered = sorted(weights, key=lambda arn: -weights[arn])
        return ordered[0], ordered[1]
