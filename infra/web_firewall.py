"""WebFirewall: AWS WAF in front of the ALB.

Three rules, cheapest first: a per-address rate limit, then AWS's managed common rule set
(the OWASP-style protections) and its known-bad-inputs set (Log4Shell and similar
exploit payloads). Anything else is allowed: the service does its own validation, rate
limiting per route class and lockout (runbook §5); the firewall stops what should never
reach a task at all. Blocked and counted requests are logged, with the credentials-bearing
headers redacted; allowed ones are in the ALB's access logs already.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.load_balancer import LoadBalancer
from infra.names import Names
from infra.spec import EnvironmentSpec

MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet")
# WAF counts requests over five minutes. A source is blocked once it sends twice what the
# service itself would answer in that time (`rateLimitApiPerMinute`, per client): several
# clients behind one address stay well clear, a flood stops at the edge.
RATE_WINDOW_MINUTES = 5
RATE_HEADROOM = 2
REDACTED_HEADERS = ("authorization", "cookie")
# Allowed requests are in the ALB's access logs; the firewall's log keeps what it stopped.
LOGGED_ACTIONS = ("BLOCK", "COUNT")


def rate_limit(spec: EnvironmentSpec) -> int:
    return RATE_HEADROOM * RATE_WINDOW_MINUTES * spec.rate_limit_api_per_minute


class WebFirewall(pulumi.ComponentResource):
    web_acl_arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        spec: EnvironmentSpec,
        load_balancer: LoadBalancer,
        logs_key_arn: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("drydock:infra:WebFirewall", name, None, opts)
        n = Names(spec.stack)
        tags = n.tags(spec.environment_class)
        child = pulumi.ResourceOptions(parent=self)

        rules: list[aws.wafv2.WebAclRuleArgsDict] = [
            {
                "name": "rate-per-address",
                "priority": 10,
                "action": {"block": {}},
                "statement": {
                    "rate_based_statement": {"limit": rate_limit(spec), "aggregate_key_type": "IP"}
                },
                "visibility_config": _visibility(f"{n.web_acl}-rate-per-address"),
            }
        ]
        for priority, group in enumerate(MANAGED_RULE_GROUPS, start=2):
            rules.append(
                {
                    "name": group,
                    "priority": priority * 10,
                    # "none": the group's own actions (block) apply, nothing is overridden.
                    "override_action": {"none": {}},
                    "statement": {
                        "managed_rule_group_statement": {"vendor_name": "AWS", "name": group}
                    },
                    "visibility_config": _visibility(f"{n.web_acl}-{group}"),
                }
            )
        acl = aws.wafv2.WebAcl(
            f"{name}-acl",
            name=n.web_acl,
            description=f"{n.prefix}: in front of the load balancer",
            scope="REGIONAL",
            default_action={"allow": {}},
            rules=rules,
            visibility_config=_visibility(n.web_acl),
            tags=tags,
            opts=child,
        )
        aws.wafv2.WebAclAssociation(
            f"{name}-alb", resource_arn=load_balancer.arn, web_acl_arn=acl.arn, opts=child
        )

        logs = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=n.waf_log_group,
            retention_in_days=spec.log_retention_days,
            kms_key_id=logs_key_arn,
            tags=tags,
            opts=child,
        )
        aws.wafv2.WebAclLoggingConfiguration(
            f"{name}-logging",
            resource_arn=acl.arn,
            log_destination_configs=[logs.arn],
            redacted_fields=[{"single_header": {"name": h}} for h in REDACTED_HEADERS],
            logging_filter={
                "default_behavior": "DROP",
                "filters": [
                    {
                        "behavior": "KEEP",
                        "requirement": "MEETS_ANY",
                        "conditions": [
                            {"action_condition": {"action": action}} for action in LOGGED_ACTIONS
                        ],
                    }
                ],
            },
            opts=child,
        )

        self.web_acl_arn = acl.arn
        self.register_outputs({"web_acl_arn": self.web_acl_arn})


def _visibility(metric: str) -> aws.wafv2.WebAclVisibilityConfigArgsDict:
    return {
        "cloudwatch_metrics_enabled": True,
        "metric_name": metric,
        "sampled_requests_enabled": True,
    }
