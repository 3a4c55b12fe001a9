"""The native ECS canary over the sequences moto cannot model (Stubber): the deployment is
started, bakes at its canary share, and is rolled back by a deployment alarm (reported with
ECS's reason) or by the pipeline's own comparison (StopServiceDeployment), or goes through.
At every lifecycle stage the probes rule is given the production rule's weights, and every
call made is one the deploy role grants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from pipelines.deploy.canary.stages import run_stages
from pipelines.deploy.steps import StepContext
from pipelines.targets.aws.canary import probes_drift
from pipelines.targets.aws.observe import Dimensions, metric_queries
from pipelines.targets.base import Release, RolloutState, TargetError
from tests.pipelines.targets.aws import granted
from tests.pipelines.targets.aws.conftest import (
    ACCOUNT,
    CLUSTER,
    FAMILY,
    NEW_IMAGE,
    OLD_IMAGE,
    REGION,
    SERVICE,
    T0,
    FakeTime,
    client,
    deployment,
    environment,
    service,
    task_definition,
    td_arn,
)
from tests.pipelines.targets.aws.listener import (
    BLUE,
    GREEN,
    PROBES,
    RULE,
    Weights,
    described,
    rules,
    with_rule,
)

pytestmark = pytest.mark.unit

RELEASE = Release(
    id=NEW_IMAGE, version="1.1.0", git_sha="c0ffee", artifact=NEW_IMAGE, created_at=""
)
OLD, NEW = 7, 8
LB_SUFFIX = "app/drydock-staging/50dc6c495c0c9188"
DEPLOYMENT = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/{CLUSTER}/{SERVICE}/Abc123"
ALARM = "drydock-staging-slo-error-rate"


def started(
    ecs: Stubber, elbv2: Stubber, production: Weights = (100, 0), probes: Weights = (100, 0)
) -> None:
    """Read the rules' weights, register the revision, hand it to ECS, find the deployment."""
    old = with_rule(service(OLD, [deployment("ecs-svc/old", OLD, "PRIMARY", "COMPLETED")]))
    where = {"cluster": CLUSTER, "services": [SERVICE]}
    ecs.add_response("describe_services", old, where)
    ecs.add_response(
        "describe_task_definition",
        {"taskDefinition": task_definition(FAMILY, OLD, OLD_IMAGE), "tags": []},
        {"taskDefinition": td_arn(FAMILY, OLD), "include": ["TAGS"]},
    )
    rules(elbv2, production, probes)
    ecs.add_response("describe_services", old, where)
    ecs.add_response(
        "describe_task_definition",
        {"taskDefinition": task_definition(FAMILY, OLD, OLD_IMAGE), "tags": []},
        {"taskDefinition": td_arn(FAMILY, OLD), "include": ["TAGS"]},
    )
    expected = {
        k: v
        for k, v in task_definition(FAMILY, OLD, NEW_IMAGE).items()
        if k not in {"taskDefinitionArn", "revision"}
    }
    expected["tags"] = [
        {"key": "drydock:release", "value": NEW_IMAGE},
        {"key": "drydock:git-sha", "value": "c0ffee"},
    ]
    ecs.add_response(
        "register_task_definition",
        {"taskDefinition": task_definition(FAMILY, NEW, NEW_IMAGE)},
        expected,
    )
    ecs.add_response(
        "update_service",
        {
            "service": service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS")])[
                "services"
            ][0]
        },
        {
            "cluster": CLUSTER,
            "service": SERVICE,
            "taskDefinition": td_arn(FAMILY, NEW),
            "forceNewDeployment": False,
        },
    )
    ecs.add_response(
        "list_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": DEPLOYMENT, "status": "PENDING"}]},
        {"cluster": CLUSTER, "service": SERVICE, "status": ["PENDING", "IN_PROGRESS"]},
    )


def lifecycle(ecs: Stubber, status: str, stage: str | None = None, **extra: Any) -> None:
    answer: dict[str, Any] = {
        "serviceDeploymentArn": DEPLOYMENT,
        "status": status,
        "createdAt": T0,
        "targetServiceRevision": {"arn": f"{DEPLOYMENT}/revision/8"},
        **extra,
    }
    if stage:
        answer["lifecycleStage"] = stage
    ecs.add_response(
        "describe_service_deployments",
        {"serviceDeployments": [answer]},
        {"serviceDeploymentArns": [DEPLOYMENT]},
    )


def metrics(cloudwatch: Stubber, group: str, requests: float, errors: float, p95: float) -> None:
    queries = metric_queries(Dimensions(LB_SUFFIX, group.rsplit(":", 1)[-1]), 300)
    results = [
        {"Id": "p95", "Values": [p95]},
        {"Id": "requests", "Values": [requests]},
        {"Id": "target5xx", "Values": [errors]},
        {"Id": "elb5xx", "Values": [0.0]},
    ]
    cloudwatch.add_response(
        "get_metric_data",
        {"MetricDataResults": results},
        {
            "MetricDataQueries": queries,
            "StartTime": ANY,
            "EndTime": ANY,
            "ScanBy": "TimestampAscending",
        },
    )


def run(setup: Any, fake_time: FakeTime, tmp_path: Path) -> tuple[Any, StepContext, Any]:
    clients = {name: client(name) for name in ("ecs", "elbv2", "cloudwatch")}
    env = environment(
        clients, fake_time, load_balancer_arn_suffix=LB_SUFFIX, probes_rule_arn=PROBES
    )
    ctx = StepContext(target=None, sha="c0ffee", root=tmp_path, reports=tmp_path)  # type: ignore[arg-type]
    stubs = {name: Stubber(c) for name, c in clients.items()}
    calls = granted.record(clients.values())
    for stub in stubs.values():
        stub.activate()
    setup(stubs["ecs"], stubs["elbv2"], stubs["cloudwatch"])
    outcome = run_stages(ctx, env, RELEASE, 60, sleep=fake_time.sleep)
    return outcome, ctx, (env, stubs, calls)


def finished(stubs: dict[str, Stubber], calls: list[granted.Call]) -> None:
    """Every answer was asked for, and the deploy role allows every call that asked."""
    for stub in stubs.values():
        stub.assert_no_pending_responses()
    assert calls and granted.refused(calls, granted.deploy_role(PROBES)) == []


def test_started_baking_then_rolled_back_by_an_alarm_is_a_failure_with_ecs_reason(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    reason = f"ECS deployment alarms: alarm {ALARM} is in ALARM state."

    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        started(ecs, elbv2)
        lifecycle(ecs, "PENDING")
        rules(elbv2, (100, 0), (100, 0))
        lifecycle(ecs, "IN_PROGRESS", "SCALE_UP")
        rules(elbv2, (100, 0), (100, 0))
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")  # 10 %, baking
        rules(elbv2, (90, 10), (100, 0))  # the probes follow
        metrics(cloudwatch, BLUE, 5400, 2, 0.080)
        metrics(cloudwatch, GREEN, 600, 0, 0.082)
        rolled_back = {
            "statusReason": reason,
            "alarms": {
                "status": "TRIGGERED",
                "alarmNames": [ALARM],
                "triggeredAlarmNames": [ALARM],
            },
            "rollback": {"reason": "Rolling back: deployment alarm triggered", "startedAt": T0},
        }
        lifecycle(ecs, "ROLLBACK_IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", **rolled_back)
        rules(elbv2, (100, 0), (90, 10))  # ECS moved production back; the probes follow
        lifecycle(ecs, "ROLLBACK_IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", **rolled_back)

    outcome, ctx, (env, stubs, calls) = run(setup, fake_time, tmp_path)
    finished(stubs, calls)
    assert env.canary.probes_moved == [{GREEN: 10, BLUE: 90}, {GREEN: 0, BLUE: 100}]
    assert not outcome.ok and outcome.aborted_at == 100
    assert outcome.reason == (
        f"ECS deployment ROLLBACK_IN_PROGRESS (alarm {ALARM} in ALARM; {reason}; "
        "Rolling back: deployment alarm triggered)"
    )
    assert outcome.action.startswith("ECS is rolling back on its own")
    first = outcome.stages[0]
    assert first["share_percent"] == 10 and first["verdict"] == "promote"
    assert (first["canary"]["requests"], first["baseline"]["requests"]) == (600, 5400)
    assert [e.kind for e in ctx.events] == ["canary_stage", "canary_promote", "canary_abort"]
    assert env.canary.stages_seen == [
        "PENDING/-",
        "IN_PROGRESS/SCALE_UP",
        "IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT",
        "ROLLBACK_IN_PROGRESS/PRODUCTION_TRAFFIC_SHIFT",
    ]


def test_a_worse_canary_is_rolled_back_by_the_pipeline_with_stop_service_deployment(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        started(ecs, elbv2)
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (90, 10), (100, 0))
        metrics(cloudwatch, BLUE, 5400, 3, 0.080)
        metrics(cloudwatch, GREEN, 600, 0, 0.250)  # three times slower at p95
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        ecs.add_response(
            "stop_service_deployment",
            {"serviceDeploymentArn": DEPLOYMENT},
            {"serviceDeploymentArn": DEPLOYMENT, "stopType": "ROLLBACK"},
        )
        lifecycle(ecs, "ROLLBACK_REQUESTED", "PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (90, 10), (90, 10))
        lifecycle(ecs, "ROLLBACK_SUCCESSFUL", "CLEAN_UP", statusReason="Stopped by request")
        rules(elbv2, (100, 0), (90, 10))

    outcome, _, (env, stubs, calls) = run(setup, fake_time, tmp_path)
    finished(stubs, calls)
    assert env.canary.probes_moved[-1] == {GREEN: 0, BLUE: 100}  # back on the stable group
    assert not outcome.ok and outcome.aborted_at == 10
    assert outcome.reason.startswith("latency: p95 canary 250.0 ms vs baseline 80.0 ms")
    assert "asked ECS to roll back" in outcome.action
    assert "ROLLBACK_SUCCESSFUL" in outcome.action


def test_a_good_canary_is_watched_through_the_bake_to_success(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        started(ecs, elbv2)
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (90, 10), (100, 0))
        metrics(cloudwatch, BLUE, 5400, 1, 0.080)
        metrics(cloudwatch, GREEN, 600, 0, 0.078)
        lifecycle(ecs, "IN_PROGRESS", "BAKE_TIME")
        rules(elbv2, (0, 100), (90, 10))
        metrics(cloudwatch, BLUE, 0, 0, 0.0)  # at 100 % the old tasks serve nothing
        metrics(cloudwatch, GREEN, 6000, 1, 0.079)
        lifecycle(ecs, "IN_PROGRESS", "BAKE_TIME")
        lifecycle(ecs, "IN_PROGRESS", "CLEAN_UP")  # ECS empties the blue group
        rules(elbv2, (0, 100), (0, 100))
        lifecycle(ecs, "SUCCESSFUL", "CLEAN_UP")
        rules(elbv2, (0, 100), (0, 100))

    outcome, _, (env, stubs, calls) = run(setup, fake_time, tmp_path)
    assert outcome.ok, outcome.reason
    assert outcome.stages[1]["baseline_from"] == "the 10 % stage"
    result = env.canary.promote(RELEASE, 60)
    finished(stubs, calls)
    # The probes went where the traffic went, before ECS emptied the group they had.
    assert env.canary.probes_moved == [{GREEN: 10, BLUE: 90}, {GREEN: 100, BLUE: 0}]
    assert result.state is RolloutState.COMPLETED
    assert (result.release, result.previous_release) == (NEW_IMAGE, OLD_IMAGE)
    assert result.events[-2:] == ("IN_PROGRESS/CLEAN_UP", "SUCCESSFUL/CLEAN_UP")


def test_a_probes_rule_left_behind_is_repaired_before_the_next_deployment_starts(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    """A runner that died after ECS swapped the groups left the probes on the emptied blue
    group: the next deployment first points them at green, which serves, and bakes green's
    successor in blue."""

    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        started(ecs, elbv2, production=(0, 100), probes=(100, 0))
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (10, 90), (0, 100))
        metrics(cloudwatch, GREEN, 5400, 3, 0.080)  # the baseline is the serving group
        metrics(cloudwatch, BLUE, 600, 0, 0.250)
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        ecs.add_response(
            "stop_service_deployment",
            {"serviceDeploymentArn": DEPLOYMENT},
            {"serviceDeploymentArn": DEPLOYMENT, "stopType": "ROLLBACK"},
        )
        lifecycle(ecs, "ROLLBACK_SUCCESSFUL", "CLEAN_UP", statusReason="Stopped by request")
        rules(elbv2, (0, 100), (10, 90))

    outcome, _, (env, stubs, calls) = run(setup, fake_time, tmp_path)
    finished(stubs, calls)
    assert env.canary.groups == (GREEN, BLUE)
    assert env.canary.probes_moved[0] == {GREEN: 100, BLUE: 0}
    assert env.canary.probes_moved[-1] == {GREEN: 100, BLUE: 0}
    assert not outcome.ok and outcome.aborted_at == 10


def test_a_stack_without_the_canary_rules_is_refused_before_anything_moves(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        old = with_rule(service(OLD, [deployment("ecs-svc/old", OLD, "PRIMARY", "COMPLETED")]))
        ecs.add_response("describe_services", old, {"cluster": CLUSTER, "services": [SERVICE]})
        ecs.add_response(
            "describe_task_definition",
            {"taskDefinition": task_definition(FAMILY, OLD, OLD_IMAGE), "tags": []},
            {"taskDefinition": td_arn(FAMILY, OLD), "include": ["TAGS"]},
        )
        single = {"Type": "forward", "TargetGroupArn": BLUE}
        elbv2.add_response(
            "describe_rules",
            {"Rules": [{"RuleArn": RULE, "Actions": [single]}, {"RuleArn": PROBES}]},
            {"RuleArns": [RULE, PROBES]},
        )

    with pytest.raises(TargetError, match="does not forward to two target groups"):
        run(setup, fake_time, tmp_path)


def test_an_aws_refusal_names_the_step_of_the_canary(fake_time: FakeTime, tmp_path: Path) -> None:
    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        started(ecs, elbv2)
        for _ in range(2):  # the stage's, then the abort's
            ecs.add_client_error(
                "describe_service_deployments", "AccessDeniedException", "not authorized"
            )

    outcome, _, _ = run(setup, fake_time, tmp_path)
    assert not outcome.ok and outcome.aborted_at == 10
    assert outcome.reason.startswith("staging: following the canary deployment: ")
    assert "AccessDeniedException" in outcome.reason
    assert outcome.action.startswith("the abort failed: staging: rolling the canary back: ")
    assert "the canary may still take traffic" in outcome.action


def test_the_role_check_refuses_what_the_deploy_role_does_not_grant() -> None:
    """The check above bites: the production rule is ECS's to move, another stack's
    deployment is not this role's, and an action never granted is refused."""
    other = DEPLOYMENT.replace("drydock-staging", "drydock-production")
    calls = [
        granted.Call("elasticloadbalancing:ModifyRule", (PROBES,)),
        granted.Call("elasticloadbalancing:ModifyRule", (RULE,)),
        granted.Call("ecs:StopServiceDeployment", (DEPLOYMENT,)),
        granted.Call("ecs:StopServiceDeployment", (other,)),
        granted.Call("ecs:DeleteService", ()),
    ]
    assert granted.refused(calls, granted.deploy_role(PROBES)) == [calls[1], *calls[3:]]


def test_the_documented_canary_lifecycle_is_followed_stage_by_stage(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    """The stage order botocore's model documents for a canary: scale-up stages, then a
    PRE_PRODUCTION_TRAFFIC_SHIFT and a PRODUCTION_TRAFFIC_SHIFT for each shift step (the
    canary share, then the rest), then POST_PRODUCTION_TRAFFIC_SHIFT, BAKE_TIME and CLEAN_UP.
    Each native stage is judged once its share is in force, and the probes follow."""

    def setup(ecs: Stubber, elbv2: Stubber, cloudwatch: Stubber) -> None:
        started(ecs, elbv2)
        for stage in ("PRE_SCALE_UP", "SCALE_UP", "POST_SCALE_UP", "PRE_PRODUCTION_TRAFFIC_SHIFT"):
            lifecycle(ecs, "IN_PROGRESS", stage)
            rules(elbv2, (100, 0), (100, 0))
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (90, 10), (100, 0))
        metrics(cloudwatch, BLUE, 5400, 1, 0.080)
        metrics(cloudwatch, GREEN, 600, 0, 0.078)
        lifecycle(ecs, "IN_PROGRESS", "PRE_PRODUCTION_TRAFFIC_SHIFT")  # the canary bake ends
        rules(elbv2, (90, 10), (90, 10))
        lifecycle(ecs, "IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (0, 100), (90, 10))
        lifecycle(ecs, "IN_PROGRESS", "POST_PRODUCTION_TRAFFIC_SHIFT")
        rules(elbv2, (0, 100), (0, 100))
        metrics(cloudwatch, BLUE, 0, 0, 0.0)
        metrics(cloudwatch, GREEN, 6000, 1, 0.079)
        for status, stage in (("IN_PROGRESS", "BAKE_TIME"), ("IN_PROGRESS", "CLEAN_UP")):
            lifecycle(ecs, status, stage)
            rules(elbv2, (0, 100), (0, 100))
        lifecycle(ecs, "SUCCESSFUL", "CLEAN_UP")
        rules(elbv2, (0, 100), (0, 100))

    outcome, _, (env, stubs, calls) = run(setup, fake_time, tmp_path)
    assert outcome.ok, outcome.reason
    assert [stage["share_percent"] for stage in outcome.stages] == [10, 100]
    result = env.canary.promote(RELEASE, 60)
    finished(stubs, calls)
    assert result.state is RolloutState.COMPLETED
    assert [stage.split("/")[1] for stage in env.canary.stages_seen] == [
        "PRE_SCALE_UP",
        "SCALE_UP",
        "POST_SCALE_UP",
        "PRE_PRODUCTION_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "PRE_PRODUCTION_TRAFFIC_SHIFT",
        "PRODUCTION_TRAFFIC_SHIFT",
        "POST_PRODUCTION_TRAFFIC_SHIFT",
        "BAKE_TIME",
        "CLEAN_UP",
        "CLEAN_UP",
    ]
    assert env.canary.probes_moved == [{GREEN: 10, BLUE: 90}, {GREEN: 100, BLUE: 0}]


@pytest.mark.parametrize(
    ("production", "probes", "drifted"),
    [((100, 0), (100, 0), False), ((0, 100), (100, 0), True), ((0, 100), (0, 100), False)],
)
def test_status_names_a_probes_rule_left_apart_from_the_production_rule(
    production: Weights, probes: Weights, drifted: bool
) -> None:
    elbv2 = client("elbv2")
    with Stubber(elbv2) as stub:
        described(stub, production, probes)
        found = probes_drift(elbv2, RULE, PROBES)
        stub.assert_no_pending_responses()  # read only: nothing modified
    if drifted:
        assert found is not None and "the next deploy aligns it" in found
        assert f"'{GREEN}': 100" in found  # what production serves from
    else:
        assert found is None
