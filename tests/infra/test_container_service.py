"""ContainerService and LoadBalancer: ECR, task definition, rollout safety, ALB, scaling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.infra.harness import CERTIFICATE, IMAGE, REPOSITORY, Stack, build_stack

pytestmark = pytest.mark.unit

SERVICE = "aws:ecs/service:Service"


def _api(stack: Stack) -> dict[str, Any]:
    task = stack.one("aws:ecs/taskDefinition:TaskDefinition", "service-task")
    (container,) = json.loads(task.get("containerDefinitions"))
    return container


def test_ecr_scans_on_push_with_immutable_tags_and_a_lifecycle(stack: Stack) -> None:
    repo = stack.one("aws:ecr/repository:Repository")
    assert repo.get("imageScanningConfiguration.scanOnPush") is True
    assert repo.get("imageTagMutability") == "IMMUTABLE"
    assert repo.get("forceDelete") is False
    policy = json.loads(stack.one("aws:ecr/lifecyclePolicy:LifecyclePolicy").get("policy"))
    counts = {r["selection"]["countType"]: r["selection"]["countNumber"] for r in policy["rules"]}
    assert counts["imageCountMoreThan"] == stack.spec.ecr_images_kept


def test_cluster_has_container_insights(stack: Stack) -> None:
    cluster = stack.one("aws:ecs/cluster:Cluster")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.get("settings")


def test_task_definition_follows_the_spec(stack: Stack) -> None:
    spec = stack.spec
    task = stack.one("aws:ecs/taskDefinition:TaskDefinition", "service-task")
    assert (task.get("cpu"), task.get("memory")) == (str(spec.cpu), str(spec.memory))
    assert task.get("requiresCompatibilities") == ["FARGATE"]
    assert task.get("networkMode") == "awsvpc"
    api = _api(stack)
    assert api["image"] == IMAGE
    assert api["user"] == spec.container_user
    assert not api["user"].startswith("0")
    assert api["readonlyRootFilesystem"] is True
    assert api["portMappings"][0]["containerPort"] == spec.container_port
    check = api["healthCheck"]
    assert spec.liveness_path in check["command"][-1]
    assert (check["interval"], check["timeout"], check["retries"], check["startPeriod"]) == (
        spec.health_check_interval_seconds,
        spec.health_check_timeout_seconds,
        spec.unhealthy_threshold,
        spec.health_check_grace_period_seconds,
    )
    logs = api["logConfiguration"]
    assert logs["logDriver"] == "awslogs"
    group = stack.one("aws:cloudwatch/logGroup:LogGroup", "service-logs")
    assert logs["options"]["awslogs-group"] == group.get("name") == stack.outputs["log_group_name"]
    assert group.get("retentionInDays") == spec.log_retention_days
    env = {e["name"]: e["value"] for e in api["environment"]}
    assert env["LOGIN_MAX_FAILURES"] == "5"
    assert env["LOGIN_LOCKOUT_S"] == "900"
    assert env["ENV"] == stack.name


def test_service_rolls_out_safely_and_rolls_back_by_itself(stack: Stack) -> None:
    service = stack.one(SERVICE)
    assert service.get("desiredCount") == stack.spec.desired_count
    assert service.get("deploymentMinimumHealthyPercent") == 100
    assert service.get("deploymentMaximumPercent") == 200
    assert service.get("deploymentCircuitBreaker") == {"enable": True, "rollback": True}
    alarms = service.get("alarms")
    assert alarms["enable"] is True
    assert alarms["rollback"] is True
    names = stack.outputs["alarm_names"]
    assert alarms["alarmNames"] == [names["latency_p95"], names["error_rate"]]
    assert (
        service.get("healthCheckGracePeriodSeconds") == stack.spec.health_check_grace_period_seconds
    )
    assert service.get("launchType") == "FARGATE"
    (lb,) = service.get("loadBalancers")
    target_group = stack.one("aws:lb/targetGroup:TargetGroup", "ingress-tg")
    assert lb["targetGroupArn"] == target_group.state["arn"]
    assert (lb["containerName"], lb["containerPort"]) == ("api", stack.spec.container_port)


def test_ecs_exec_on_in_staging_off_in_production(staging: Stack, production: Stack) -> None:
    assert staging.one(SERVICE).get("enableExecuteCommand") is True
    assert production.one(SERVICE).get("enableExecuteCommand") is False
    assert "service-task-exec" in {r.name for r in staging.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert "service-task-exec" not in {
        r.name for r in production.of_type("aws:iam/rolePolicy:RolePolicy")
    }


def test_alb_https_listener_invalid_headers_dropped_and_forwarded_for_appended(
    stack: Stack,
) -> None:
    alb = stack.one("aws:lb/loadBalancer:LoadBalancer")
    assert alb.get("internal") is False
    assert alb.get("dropInvalidHeaderFields") is True
    assert alb.get("xffHeaderProcessingMode") == "append"
    assert alb.get("enableDeletionProtection") is stack.spec.deletion_protection
    https = stack.one("aws:lb/listener:Listener", "ingress-https")
    assert (https.get("port"), https.get("protocol")) == (443, "HTTPS")
    assert https.get("certificateArn") == CERTIFICATE
    assert https.get("sslPolicy").startswith("ELBSecurityPolicy-TLS13")
    (action,) = https.get("defaultActions")
    assert (
        action["targetGroupArn"]
        == stack.one("aws:lb/targetGroup:TargetGroup", "ingress-tg").state["arn"]
    )
    assert stack.outputs["service_url"] == "https://" + alb.state["dnsName"]


def test_the_https_listener_closes_internal_routes_but_the_probes(stack: Stack) -> None:
    https = stack.one("aws:lb/listener:Listener", "ingress-https")
    tg = stack.one("aws:lb/targetGroup:TargetGroup", "ingress-tg").state["arn"]
    rules = {
        r.name: r
        for r in stack.of_type("aws:lb/listenerRule:ListenerRule")
        if r.get("listenerArn") == https.state["arn"]
    }
    canary = {"ingress-production"} if stack.spec.rollout_strategy == "canary" else set()
    assert set(rules) == {"ingress-probes", "ingress-internal-closed", *canary}
    probes, closed = rules["ingress-probes"], rules["ingress-internal-closed"]
    assert probes.get("priority") < closed.get("priority")  # evaluated first
    assert probes.get("conditions") == [
        {"pathPattern": {"values": ["/api/_internal/ready", "/api/_internal/health"]}}
    ]
    if canary:  # the probes forward as the production rule does, both groups weighted
        assert probes.get("actions") == rules["ingress-production"].get("actions")
    else:
        assert probes.get("actions") == [{"type": "forward", "targetGroupArn": tg}]
    assert closed.get("conditions") == [
        {"pathPattern": {"values": ["/api/_internal*", "/api/%5Finternal*", "/api/%5finternal*"]}}
    ]
    (action,) = closed.get("actions")
    assert action["type"] == "fixed-response"
    assert action["fixedResponse"]["statusCode"] == "404"
    assert json.loads(action["fixedResponse"]["messageBody"])["error"]["code"] == "not_found"


def test_target_group_checks_readiness_with_spec_thresholds(stack: Stack) -> None:
    spec = stack.spec
    tg = stack.one("aws:lb/targetGroup:TargetGroup", "ingress-tg")
    assert tg.get("targetType") == "ip"
    assert tg.get("port") == spec.container_port
    assert tg.get("deregistrationDelay") == spec.deregistration_delay_seconds
    assert tg.get("healthCheck") == {
        "enabled": True,
        "protocol": "HTTP",
        "port": "traffic-port",
        "path": "/api/_internal/ready",
        "matcher": "200",
        "interval": spec.health_check_interval_seconds,
        "timeout": spec.health_check_timeout_seconds,
        "healthyThreshold": spec.healthy_threshold,
        "unhealthyThreshold": spec.unhealthy_threshold,
    }


def test_autoscaling_on_cpu_and_requests_per_target(stack: Stack) -> None:
    target = stack.one("aws:appautoscaling/target:Target")
    assert (target.get("minCapacity"), target.get("maxCapacity")) == (
        stack.spec.min_count,
        stack.spec.max_count,
    )
    assert target.get("resourceId") == f"service/drydock-{stack.name}/drydock-{stack.name}-api"
    policies = {
        p.get(
            "targetTrackingScalingPolicyConfiguration.predefinedMetricSpecification.predefinedMetricType"
        ): p
        for p in stack.of_type("aws:appautoscaling/policy:Policy")
    }
    assert set(policies) == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    requests = policies["ALBRequestCountPerTarget"].get("targetTrackingScalingPolicyConfiguration")
    label = requests["predefinedMetricSpecification"]["resourceLabel"]
    assert label.startswith("app/")
    assert "/targetgroup/" in label
    assert requests["targetValue"] == stack.spec.scale_requests_per_target


def test_before_the_first_release_there_is_no_service_and_alarms_stay_quiet() -> None:
    config = {"drydock:certificateArn": CERTIFICATE, "drydock:githubRepository": REPOSITORY}
    bootstrap = build_stack("staging", **config)
    assert bootstrap.spec.image is None
    for token in (
        "aws:ecs/taskDefinition:TaskDefinition",
        SERVICE,
        "aws:appautoscaling/target:Target",
    ):
        assert not bootstrap.of_type(token), token
    assert bootstrap.one("aws:ecr/repository:Repository")
    alarms = bootstrap.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert alarms
    assert all(a.get("actionsEnabled") is False for a in alarms)
    assert bootstrap.outputs["released_image"] == ""


def test_production_deploys_through_the_native_canary_with_its_alarms(production: Stack) -> None:
    spec = production.spec
    service = production.one(SERVICE)
    assert service.get("deploymentConfiguration") == {
        "strategy": "CANARY",
        "canaryConfiguration": {
            "canaryPercent": float(spec.canary_steps[0]),
            "canaryBakeTimeInMinutes": str(spec.canary_step_seconds // 60),
        },
        "bakeTimeInMinutes": str(spec.bake_window_seconds // 60),
    }
    assert service.get("alarms")["rollback"] is True  # ECS rolls back on the SLO alarms
    (balancer,) = service.get("loadBalancers")
    advanced = balancer["advancedConfiguration"]
    groups = {g.name: g for g in production.of_type("aws:lb/targetGroup:TargetGroup")}
    assert advanced["alternateTargetGroupArn"] == groups["ingress-tg-alternate"].state["arn"]
    assert balancer["targetGroupArn"] == groups["ingress-tg"].state["arn"]
    rule = production.one("aws:lb/listenerRule:ListenerRule", "ingress-production")
    assert advanced["productionListenerRule"] == rule.state["arn"]
    (forward,) = rule.get("actions")
    weights = {g["arn"]: g["weight"] for g in forward["forward"]["targetGroups"]}
    assert weights == {balancer["targetGroupArn"]: 100, advanced["alternateTargetGroupArn"]: 0}
    assert rule.get("priority") > 20  # after the probes and the closed internal prefix
    role = production.by_arn(advanced["roleArn"])
    assert role.type == "aws:iam/role:Role"
    assert "ecs.amazonaws.com" in role.get("assumeRolePolicy")
    attached = [
        a.get("policyArn")
        for a in production.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.get("role") == role.state["name"]
    ]
    assert attached == ["arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"]


def test_staging_rolls_with_one_target_group(staging: Stack) -> None:
    service = staging.one(SERVICE)
    assert service.get("deploymentConfiguration") is None
    (balancer,) = service.get("loadBalancers")
    assert "advancedConfiguration" not in balancer or not balancer["advancedConfiguration"]
    assert len(staging.of_type("aws:lb/targetGroup:TargetGroup")) == 1
