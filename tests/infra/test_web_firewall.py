"""The web firewall in front of the ALB: a per-address rate limit, AWS's common and
known-bad-inputs rule sets, and a log of what it stopped with credentials redacted."""

from __future__ import annotations

import pytest

from infra.web_firewall import rate_limit
from tests.infra.harness import Stack

pytestmark = pytest.mark.unit


def test_the_alb_is_behind_the_web_acl(stack: Stack) -> None:
    acl = stack.one("aws:wafv2/webAcl:WebAcl")
    association = stack.one("aws:wafv2/webAclAssociation:WebAclAssociation")
    assert (
        association.get("resourceArn") == stack.one("aws:lb/loadBalancer:LoadBalancer").state["arn"]
    )
    assert association.get("webAclArn") == acl.state["arn"]
    assert (acl.get("scope"), acl.get("defaultAction")) == ("REGIONAL", {"allow": {}})
    assert acl.get("visibilityConfig.cloudwatchMetricsEnabled") is True


def test_rate_limit_first_then_the_managed_rule_sets(stack: Stack) -> None:
    rules = sorted(stack.one("aws:wafv2/webAcl:WebAcl").get("rules"), key=lambda r: r["priority"])
    rate, common, bad_inputs = rules
    assert rate["action"] == {"block": {}}
    assert rate["statement"]["rateBasedStatement"] == {
        "limit": 2 * 5 * stack.spec.rate_limit_api_per_minute,
        "aggregateKeyType": "IP",
    }
    assert rate_limit(stack.spec) == 12_000
    for rule, group in (
        (common, "AWSManagedRulesCommonRuleSet"),
        (bad_inputs, "AWSManagedRulesKnownBadInputsRuleSet"),  # Log4Shell and the like
    ):
        assert rule["statement"]["managedRuleGroupStatement"] == {
            "vendorName": "AWS",
            "name": group,
        }
        # "none": the group's own block actions apply; nothing is turned down to count.
        assert rule["overrideAction"] == {"none": {}}
        assert "ruleActionOverrides" not in rule["statement"]["managedRuleGroupStatement"]


def test_what_the_firewall_stops_is_logged_without_credentials(stack: Stack) -> None:
    logging = stack.one("aws:wafv2/webAclLoggingConfiguration:WebAclLoggingConfiguration")
    group = stack.one("aws:cloudwatch/logGroup:LogGroup", "firewall-logs")
    assert group.get("name") == f"aws-waf-logs-drydock-{stack.name}"
    assert logging.get("logDestinationConfigs") == [group.state["arn"]]
    assert logging.get("resourceArn") == stack.one("aws:wafv2/webAcl:WebAcl").state["arn"]
    assert logging.get("redactedFields") == [
        {"singleHeader": {"name": "authorization"}},
        {"singleHeader": {"name": "cookie"}},
    ]
    kept = logging.get("loggingFilter")
    assert kept["defaultBehavior"] == "DROP"
    (keep,) = kept["filters"]
    assert keep["behavior"] == "KEEP"
    assert [c["actionCondition"]["action"] for c in keep["conditions"]] == ["BLOCK", "COUNT"]
