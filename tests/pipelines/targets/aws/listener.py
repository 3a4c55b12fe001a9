"""The HTTPS listener of a stack on the native canary, as DescribeRules and DescribeServices
answer for it: the production rule ECS moves between the blue and green target groups, and
the probes rule the pipeline keeps beside it."""

from __future__ import annotations

from typing import Any

from botocore.stub import Stubber

from tests.pipelines.targets.aws.conftest import ACCOUNT, REGION

ELB = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}"
LISTENER = f"{ELB}:listener-rule/app/drydock-staging/50dc6c495c0c9188/f2f7dc8efc522ab2"
RULE = f"{LISTENER}/9683b2d02a6cabee"
PROBES = f"{LISTENER}/1b2c3d4e5f6a7b8c"
BLUE = f"{ELB}:targetgroup/drydock-staging-blue/73e2d6bc24d8a067"
GREEN = f"{ELB}:targetgroup/drydock-staging-green/2453ed029918f21f"


def with_rule(answer: dict[str, Any]) -> dict[str, Any]:
    answer["services"][0]["loadBalancers"] = [
        {
            "targetGroupArn": BLUE,
            "containerName": "api",
            "containerPort": 8000,
            "advancedConfiguration": {
                "alternateTargetGroupArn": GREEN,
                "productionListenerRule": RULE,
                "roleArn": f"arn:aws:iam::{ACCOUNT}:role/ecs-lb",
            },
        }
    ]
    return answer


Weights = tuple[int, int]  # (blue, green)


def forward(weights: Weights) -> dict[str, Any]:
    blue, green = weights
    groups = [{"TargetGroupArn": GREEN, "Weight": green}, {"TargetGroupArn": BLUE, "Weight": blue}]
    return {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}


def described(elbv2: Stubber, production: Weights, probes: Weights) -> None:
    """Both rules read, with these weights."""
    elbv2.add_response(
        "describe_rules",
        {
            "Rules": [
                {"RuleArn": RULE, "Actions": [forward(production)]},
                {"RuleArn": PROBES, "Actions": [forward(probes)]},
            ]
        },
        {"RuleArns": [RULE, PROBES]},
    )


def rules(elbv2: Stubber, production: Weights, probes: Weights) -> None:
    """Both rules read; the probes rule given the production rule's weights if it differs."""
    described(elbv2, production, probes)
    if probes != production:
        elbv2.add_response(
            "modify_rule",
            {"Rules": [{"RuleArn": PROBES, "Actions": [forward(production)]}]},
            {"RuleArn": PROBES, "Actions": [forward(production)]},
        )
