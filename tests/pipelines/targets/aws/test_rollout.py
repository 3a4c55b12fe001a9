"""Rollouts watched to their end, over the ECS sequences moto cannot model (Stubber).

The point of each: the verdict follows what ECS finally did, never what it said midway.
A rollback by the circuit breaker or by a deployment alarm is a failed rollout.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from pipelines.targets.base import Release, RolloutState, TargetError
from tests.pipelines.targets.aws import granted
from tests.pipelines.targets.aws.conftest import (
    CLUSTER,
    FAMILY,
    NEW_IMAGE,
    OLD_IMAGE,
    SERVICE,
    FakeTime,
    client,
    deployment,
    environment,
    service,
    task_definition,
    td_arn,
)
from tests.pipelines.targets.aws.listener import PROBES, rules, with_rule

pytestmark = pytest.mark.unit

RELEASE = Release(
    id=NEW_IMAGE, version="1.1.0", git_sha="c0ffee", artifact=NEW_IMAGE, created_at=""
)
WHERE = {"cluster": CLUSTER, "services": [SERVICE]}
OLD, NEW = 7, 8
BREAKER = "ECS deployment circuit breaker: tasks failed to start."
ALARM = "ECS deployment alarms: alarm drydock-staging-slo-error-rate is in ALARM state."


def start(stub: Stubber, canary: bool = False) -> None:
    """The common head: read the service and its revision, register ours, update."""
    serving = service(
        OLD, [deployment("ecs-svc/old", OLD, "PRIMARY", "COMPLETED")], [("e0", "old")]
    )
    stub.add_response("describe_services", with_rule(serving) if canary else serving, WHERE)
    stub.add_response(
        "describe_task_definition",
        {
            "taskDefinition": task_definition(FAMILY, OLD, OLD_IMAGE),
            "tags": [
                {"key": "team", "value": "api"},
                {"key": "drydock:completed-at", "value": "1"},
            ],
        },
        {"taskDefinition": td_arn(FAMILY, OLD), "include": ["TAGS"]},
    )
    expected = {
        k: v
        for k, v in task_definition(FAMILY, OLD, NEW_IMAGE).items()
        if k not in {"taskDefinitionArn", "revision"}
    }
    expected["tags"] = [
        {"key": "team", "value": "api"},
        {"key": "drydock:release", "value": NEW_IMAGE},
        {"key": "drydock:git-sha", "value": "c0ffee"},
    ]
    stub.add_response(
        "register_task_definition",
        {"taskDefinition": task_definition(FAMILY, NEW, NEW_IMAGE)},
        expected,
    )
    stub.add_response(
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


def polls(stub: Stubber, *answers: dict[str, Any]) -> None:
    for answer in answers:
        stub.add_response("describe_services", answer, WHERE)


def rollout(stub_setup: Any, fake_time: FakeTime) -> tuple[Any, Stubber]:
    ecs = client("ecs")
    with Stubber(ecs) as stub:
        stub_setup(stub)
        result = environment({"ecs": ecs}, fake_time).rollout(RELEASE)
        stub.assert_no_pending_responses()
    return result, stub


def test_success_waits_on_in_progress_then_completes_and_marks_the_revision(
    fake_time: FakeTime,
) -> None:
    def setup(stub: Stubber) -> None:
        start(stub)
        in_progress = [
            deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS"),
            deployment("ecs-svc/old", OLD, "ACTIVE", "COMPLETED"),
        ]
        polls(
            stub,
            service(NEW, in_progress, [("e1", "has started 2 tasks"), ("e0", "old")]),
            service(NEW, in_progress, [("e1", "has started 2 tasks"), ("e0", "old")]),
            service(
                NEW,
                [deployment("ecs-svc/new", NEW, "PRIMARY", "COMPLETED")],
                [("e2", "has reached a steady state."), ("e1", "has started 2 tasks")],
            ),
        )
        stub.add_response("tag_resource", {}, {"resourceArn": td_arn(FAMILY, NEW), "tags": ANY})

    result, _ = rollout(setup, fake_time)
    assert result.state is RolloutState.COMPLETED and result.ok
    assert result.release == NEW_IMAGE and result.previous_release == OLD_IMAGE
    assert fake_time.sleeps == [15.0, 15.0]  # polled on the interval, never slept for real
    assert [e.split(" ", 1)[1] for e in result.events] == [
        "has started 2 tasks",
        "has reached a steady state.",
    ]  # oldest first, and nothing from before the rollout


def rolled_back_by(reason: str) -> Any:
    def setup(stub: Stubber) -> None:
        start(stub)
        polls(
            stub,
            service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS")]),
            # ECS gives up on ours and starts a deployment of the previous revision.
            service(
                OLD,
                [
                    deployment("ecs-svc/back", OLD, "PRIMARY", "IN_PROGRESS"),
                    deployment("ecs-svc/new", NEW, "ACTIVE", "FAILED", reason),
                ],
                [("e3", "rolling back to deployment ecs-svc/back")],
            ),
            # The rollback completes; the failed deployment is gone from the list.
            service(
                OLD,
                [deployment("ecs-svc/back", OLD, "PRIMARY", "COMPLETED")],
                [("e4", "has reached a steady state."), ("e3", "rolling back")],
            ),
        )

    return setup


@pytest.mark.parametrize(
    ("reason", "cause"), [(BREAKER, "circuit breaker"), (ALARM, "deployment alarm")]
)
def test_a_rollback_by_ecs_fails_the_rollout_with_its_reason(
    fake_time: FakeTime, reason: str, cause: str
) -> None:
    result, _ = rollout(rolled_back_by(reason), fake_time)
    assert result.state is RolloutState.ROLLED_BACK and not result.ok
    assert cause in result.reason and reason in result.reason
    assert f"back on {FAMILY}:{OLD} ({OLD_IMAGE})" in result.reason
    assert any("rolling back" in e for e in result.events)


def test_completed_while_the_service_runs_another_revision_is_not_green(
    fake_time: FakeTime,
) -> None:
    def setup(stub: Stubber) -> None:
        start(stub)
        completed = service(OLD, [deployment("ecs-svc/new", NEW, "PRIMARY", "COMPLETED")])
        polls(stub, completed)

    result, _ = rollout(setup, fake_time)
    assert result.state is RolloutState.FAILED
    assert "COMPLETED but the service runs" in result.reason


def test_failed_without_rollback_is_failed(fake_time: FakeTime) -> None:
    def setup(stub: Stubber) -> None:
        start(stub)
        polls(stub, service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "FAILED", BREAKER)]))

    result, _ = rollout(setup, fake_time)
    assert result.state is RolloutState.FAILED
    assert "without rolling it back" in result.reason and BREAKER in result.reason


def test_timeout_fails_with_the_state_it_was_stuck_in(fake_time: FakeTime) -> None:
    def setup(stub: Stubber) -> None:
        start(stub)
        stuck = service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "IN_PROGRESS")])
        polls(stub, *[stuck] * 41)  # 600 s of 15 s polls, plus the first look

    result, _ = rollout(setup, fake_time)
    assert result.state is RolloutState.FAILED
    assert "did not settle within 600 s" in result.reason and "IN_PROGRESS" in result.reason
    assert sum(fake_time.sleeps) == 600.0


def test_a_release_already_serving_is_not_redeployed(fake_time: FakeTime) -> None:
    ecs = client("ecs")
    serving = Release(id=OLD_IMAGE, version="", git_sha="", artifact=OLD_IMAGE, created_at="")
    with Stubber(ecs) as stub:
        stub.add_response(
            "describe_services",
            service(OLD, [deployment("ecs-svc/old", OLD, "PRIMARY", "COMPLETED")]),
            WHERE,
        )
        stub.add_response(
            "describe_task_definition",
            {"taskDefinition": task_definition(FAMILY, OLD, OLD_IMAGE)},
            {"taskDefinition": td_arn(FAMILY, OLD), "include": ["TAGS"]},
        )
        result = environment({"ecs": ecs}, fake_time).rollout(serving)
    assert result.ok and "already serving" in result.reason


def test_an_image_not_pinned_by_digest_is_refused() -> None:
    tagged = Release(id="x", version="", git_sha="", artifact="repo:1.0", created_at="")
    with pytest.raises(TargetError, match="pinned by digest"):
        environment().rollout(tagged)


def test_an_aws_refusal_is_a_target_error_naming_the_step(fake_time: FakeTime) -> None:
    ecs = client("ecs")
    with Stubber(ecs) as stub:
        stub.add_client_error(
            "describe_services",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: ecs:DescribeServices",
        )
        with pytest.raises(TargetError, match=r"staging: rollout: .*ecs:DescribeServices"):
            environment({"ecs": ecs}, fake_time).rollout(RELEASE)


def rolled_out_on_the_native_canary(fake_time: FakeTime, elbv2_setup: Any) -> Any:
    """A rollout (a release ECS must take whole, a rollback, new settings) on a service
    whose deployments ECS runs as canaries: it ends with the groups swapped."""
    ecs, elbv2 = client("ecs"), client("elbv2")
    calls = granted.record([ecs, elbv2])
    with Stubber(ecs) as stub, Stubber(elbv2) as rules_stub:
        start(stub, canary=True)
        polls(stub, service(NEW, [deployment("ecs-svc/new", NEW, "PRIMARY", "COMPLETED")]))
        stub.add_response("tag_resource", {}, {"resourceArn": td_arn(FAMILY, NEW), "tags": ANY})
        elbv2_setup(rules_stub)
        env = environment({"ecs": ecs, "elbv2": elbv2}, fake_time, probes_rule_arn=PROBES)
        result = env.rollout(RELEASE)
        stub.assert_no_pending_responses()
        rules_stub.assert_no_pending_responses()
    assert granted.refused(calls, granted.deploy_role(PROBES)) == []  # steps 6-7's own role
    return result


def test_a_rollout_on_a_canary_service_leaves_the_probes_on_the_group_that_serves(
    fake_time: FakeTime,
) -> None:
    result = rolled_out_on_the_native_canary(
        fake_time, lambda elbv2: rules(elbv2, production=(0, 100), probes=(100, 0))
    )
    assert result.state is RolloutState.COMPLETED
    assert "probes rule now forwards as production" in result.events[-1]


def test_probes_that_cannot_follow_are_said_and_do_not_undo_a_good_rollout(
    fake_time: FakeTime,
) -> None:
    def refused(elbv2: Stubber) -> None:
        elbv2.add_client_error("describe_rules", "AccessDenied", "not authorized")

    result = rolled_out_on_the_native_canary(fake_time, refused)
    assert result.state is RolloutState.COMPLETED
    assert "the probes rule was not aligned with the production rule" in result.reason
    assert "AccessDenied" in result.reason
