"""The infra scan's translation of a Pulumi stack into a Terraform plan: type tokens to
Terraform types, inputs to Terraform's arguments, dependencies to references."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines.deploy.security.iac.mocked_stack import SECRET_SIG, SIG_KEY, Declared, MockedStack
from pipelines.deploy.security.iac.terraform_plan import plan, singular
from pipelines.deploy.security.iac.terraform_types import (
    NO_TERRAFORM_TWIN,
    snake,
    terraform_type,
)

pytestmark = pytest.mark.unit

URN = "urn:pulumi:production::drydock::drydock:infra:X${}::{}"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("aws:s3/bucket:Bucket", "aws_s3_bucket"),
        (
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "aws_s3_bucket_server_side_encryption_configuration",
        ),
        ("aws:ec2/vpc:Vpc", "aws_vpc"),  # ec2 holds the unprefixed resources
        ("aws:ec2/routeTableAssociation:RouteTableAssociation", "aws_route_table_association"),
        ("aws:ec2/flowLog:FlowLog", "aws_flow_log"),
        (
            "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
            "aws_vpc_security_group_ingress_rule",
        ),
        ("aws:cloudwatch/metricAlarm:MetricAlarm", "aws_cloudwatch_metric_alarm"),
        ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws_iam_role_policy_attachment"),
        ("aws:appautoscaling/policy:Policy", "aws_appautoscaling_policy"),
        # the exceptions: the provider's own names
        ("aws:lb/loadBalancer:LoadBalancer", "aws_lb"),
        ("aws:rds/instance:Instance", "aws_db_instance"),
        ("aws:rds/subnetGroup:SubnetGroup", "aws_db_subnet_group"),
        ("aws:s3/bucketV2:BucketV2", "aws_s3_bucket"),
        (
            "aws:s3/bucketReplicationConfig:BucketReplicationConfig",
            "aws_s3_bucket_replication_configuration",
        ),
        # no twin, or not a bridged provider's resource at all
        ("random:index/randomPassword:RandomPassword", None),
        ("drydock:infra:Network", None),
    ],
)
def test_type_tokens_map_to_terraform_types(token: str, expected: str | None) -> None:
    assert terraform_type(token) == expected


def test_every_resource_without_a_twin_says_why() -> None:
    assert all(len(reason.split()) >= 5 for reason in NO_TERRAFORM_TWIN.values())


def test_names_follow_terraform_spelling() -> None:
    assert snake("Eip") == "eip"
    assert snake("healthCheckGracePeriodSeconds") == "health_check_grace_period_seconds"
    assert snake("DBInstanceIdentifier") == "db_instance_identifier"
    assert [singular(n) for n in ("rules", "metricQueries", "settings", "ingress")] == [
        "rule",
        "metricQuery",
        "setting",
        "ingress",
    ]
    assert singular("placementConstraints") == "placementConstraints"  # plural in Terraform


def _declared(
    token: str,
    name: str,
    inputs: dict[str, Any],
    state: dict[str, Any] | None = None,
    dependencies: dict[str, tuple[str, ...]] | None = None,
) -> Declared:
    urn = URN.format(token, name)
    return Declared(token, name, urn, True, inputs, {**inputs, **(state or {})}, dependencies or {})


def _stack() -> MockedStack:
    key = _declared(
        "aws:kms/key:Key",
        "logs-key",
        {"enableKeyRotation": True},
        {"id": "logs-key-id", "arn": "arn:aws:kms:eu-west-1:123456789012:key/logs-key"},
    )
    lb = _declared(
        "aws:lb/loadBalancer:LoadBalancer",
        "ingress-alb",
        {"name": "drydock-production"},
        {"id": "ingress-alb-id", "arn": "arn:aws:lb:alb", "arnSuffix": "app/ingress-alb/1"},
    )
    listener = _declared(
        "aws:lb/listener:Listener",
        "ingress-http",
        {
            "loadBalancerArn": "arn:aws:lb:alb",
            "port": 80.0,
            "defaultActions": [
                {"type": "redirect", "redirect": {"protocol": "HTTPS", "statusCode": "HTTP_301"}}
            ],
            "tags": {"managed-by": "pulumi", "Name": "http"},
        },
        dependencies={"loadBalancerArn": (lb.urn,), "defaultActions": ()},
    )
    group = _declared(
        "aws:cloudwatch/logGroup:LogGroup",
        "service-logs",
        # the same ARN text, but not computed from the key: stays a value
        {"kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/logs-key", "retentionInDays": 90.0},
    )
    alarm = _declared(
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "alarms-5xx",
        {"dimensions": {"LoadBalancer": "app/ingress-alb/1"}, "threshold": 0.4},
        dependencies={"dimensions": (lb.urn,)},
    )
    secret = _declared(
        "aws:secretsmanager/secretVersion:SecretVersion",
        "jwt",
        {"secretString": {SIG_KEY: SECRET_SIG, "value": '{"secret": "s3cr3t"}'}},
    )
    password = _declared("random:index/randomPassword:RandomPassword", "pw", {"length": 32.0})
    return MockedStack(
        "production", "eu-west-1", (key, lb, listener, group, alarm, secret, password)
    )


def _planned(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["address"]: r for r in document["planned_values"]["root_module"]["resources"]}


def test_inputs_become_terraform_arguments() -> None:
    resources = _planned(plan(_stack()))
    listener = resources["aws_lb_listener.ingress-http"]
    assert listener["mode"] == "managed" and listener["type"] == "aws_lb_listener"
    assert listener["values"]["port"] == 80 and isinstance(listener["values"]["port"], int)
    # a plural list of blocks takes its singular name; a nested object is a block of one
    assert listener["values"]["default_action"] == [
        {"type": "redirect", "redirect": [{"protocol": "HTTPS", "status_code": "HTTP_301"}]}
    ]
    assert listener["values"]["tags"] == {"managed-by": "pulumi", "Name": "http"}  # a map
    alarm = resources["aws_cloudwatch_metric_alarm.alarms-5xx"]["values"]
    assert alarm["threshold"] == 0.4
    assert resources["aws_secretsmanager_secret_version.jwt"]["values"] == {
        "secret_string": "(sensitive)"
    }
    assert not any(a.startswith("random_") for a in resources)  # no Terraform AWS twin


def test_computed_inputs_become_references_and_only_those() -> None:
    document = plan(_stack())
    resources = _planned(document)
    listener = resources["aws_lb_listener.ingress-http"]["values"]
    assert listener["load_balancer_arn"] == "aws_lb.ingress-alb.arn"
    dimensions = resources["aws_cloudwatch_metric_alarm.alarms-5xx"]["values"]["dimensions"]
    assert dimensions == {"LoadBalancer": "aws_lb.ingress-alb.arn_suffix"}
    group = resources["aws_cloudwatch_log_group.service-logs"]["values"]
    assert group["kms_key_id"].startswith("arn:aws:kms:")  # no dependency: a plain value
    configured = {r["address"]: r for r in document["configuration"]["root_module"]["resources"]}
    assert configured["aws_lb_listener.ingress-http"]["expressions"] == {
        "load_balancer_arn": {"references": ["aws_lb.ingress-alb", "aws_lb.ingress-alb.arn"]}
    }
    changes = {c["address"]: c for c in document["resource_changes"]}
    assert changes["aws_lb_listener.ingress-http"]["change"]["actions"] == ["create"]
