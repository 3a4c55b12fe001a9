"""The policy pack: each rule passes a safe resource and rejects an unsafe one; both mocked
stacks pass the whole pack."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from infra import environment_class as env_class
from infra.policy import rules as r
from infra.policy import tokens as t
from infra.policy.rules import RULES, Resource, evaluate, stack_of
from tests.infra.harness import ROOT, Stack
from tests.infra.policy_cases import CASES as LATER_CASES

pytestmark = pytest.mark.unit

SAFE_DB = {
    "storageEncrypted": True,
    "kmsKeyId": "arn:key",
    "publiclyAccessible": False,
    "backupRetentionPeriod": 7,
    "skipFinalSnapshot": False,
    "finalSnapshotIdentifier": "db-final",
    "deletionProtection": True,
    "multiAz": True,
    "manageMasterUserPassword": True,
    "masterUserSecretKmsKeyId": "arn:key",
}


def db(
    stack: str = "production", protect: bool = True, cls: str | None = None, **props: Any
) -> Resource:
    """A database in the stack named `stack`; tagged with the class `cls` if given (an
    untagged one is held to production's rules)."""
    tags = {env_class.TAG: cls} if cls else {}
    return Resource(t.RDS, "db", {**SAFE_DB, "tags": tags, **props}, stack, protect)


def container(**env: str) -> Resource:
    containers = [{"name": "api", "environment": [{"name": k, "value": v} for k, v in env.items()]}]
    return Resource(t.TASK_DEFINITION, "task", {"containerDefinitions": json.dumps(containers)})


def bucket_pair(algorithm: str, purpose: str | None = None) -> list[Resource]:
    name = f"b-{purpose}"
    sse = {
        "bucket": name,
        "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}}],
    }
    tags = {"purpose": purpose} if purpose else {}
    return [
        Resource(t.BUCKETS[0], f"bucket-{purpose}", {"bucket": name, "tags": tags}),
        Resource(t.BUCKET_SSE[0], "sse", sse),
    ]


def alarm(metric: str, actions: list[str] | None, enabled: bool = True, **tags: str) -> Resource:
    props = {"metricName": metric, "alarmActions": actions, "actionsEnabled": enabled}
    return Resource(t.ALARM, f"alarm-{metric}", {**props, "tags": tags})


TOPIC = "arn:aws:sns:eu-west-1:123456789012:alarms"
SUBSCRIBED = Resource(t.SUBSCRIPTION, "oncall", {"topic": TOPIC, "protocol": "email"})
SERVICE = Resource(t.SERVICE, "svc", {})
SLO_ALARMS = [alarm(m, [TOPIC]) for m in r.SLO_METRICS.values()]
STAGING_SLO_ALARMS = [
    alarm(m, [TOPIC], **{env_class.TAG: env_class.STAGING}) for m in r.SLO_METRICS.values()
]
MUTED_SLO_ALARMS = [alarm(m, [TOPIC], enabled=False) for m in r.SLO_METRICS.values()]


def log_group(days: int | None, cls: str) -> Resource:
    props = {"retentionInDays": days, "tags": {env_class.TAG: cls}}
    return Resource(t.LOG_GROUP, f"logs-{cls}-{days}", props)


def backup_plan(keep: int, copies_keep: int | None = None) -> Resource:
    rule: dict[str, Any] = {"ruleName": "daily", "lifecycle": {"deleteAfter": keep}}
    if copies_keep is not None:
        rule["copyActions"] = [
            {"destinationVaultArn": "arn:v", "lifecycle": {"deleteAfter": copies_keep}}
        ]
    return Resource(t.BACKUP_PLAN, "plan", {"rules": [rule]})


GITHUB = "token.actions.githubusercontent.com"
SUB, AUD, STS = f"{GITHUB}:sub", f"{GITHUB}:aud", "sts.amazonaws.com"


def github_role(**condition: Any) -> Resource:
    trust = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{GITHUB}"},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": condition,
    }
    policy = json.dumps({"Version": "2012-10-17", "Statement": [trust]})
    return Resource(t.IAM_ROLE, "deploy", {"assumeRolePolicy": policy})


FORWARD = [{"type": "forward", "targetGroupArn": "arn:tg"}]
NOT_FOUND = [{"type": "fixed-response", "fixedResponse": {"statusCode": "404"}}]


def load_balancer(internal: bool = False) -> Resource:
    return Resource(t.LOAD_BALANCERS[0], "alb", {"arn": "arn:alb", "internal": internal})


def listener(actions: list[dict[str, Any]] | None = None) -> Resource:
    props = {"arn": "arn:listener", "loadBalancerArn": "arn:alb", "defaultActions": actions}
    return Resource(t.LISTENERS[0], "https", props)


def listener_rule(
    name: str, priority: int, paths: list[str], actions: list[dict[str, Any]], **more: Any
) -> Resource:
    conditions = [{"pathPattern": {"values": paths}}, *more.values()]
    props = {
        "listenerArn": "arn:listener",
        "priority": priority,
        "conditions": conditions,
        "actions": actions,
    }
    return Resource(t.LISTENER_RULES[0], name, props)


PROBES = listener_rule("probes", 10, ["/api/_internal/ready", "/api/_internal/health"], FORWARD)
CLOSED = listener_rule("closed", 20, ["/api/_internal*"], NOT_FOUND)
PUBLIC_AND_CLOSED = [load_balancer(), listener(FORWARD), PROBES, CLOSED]
# Each one a public listener that forwards internal paths.
LEAKING = {
    "no rule at all": [load_balancer(), listener(FORWARD)],
    "a wider forward first": [
        *PUBLIC_AND_CLOSED,
        listener_rule("api", 5, ["/api/*"], FORWARD),
    ],
    "a probes rule that is too wide": [
        load_balancer(),
        listener(FORWARD),
        listener_rule("probes", 10, ["/api/_internal/*"], FORWARD),
        CLOSED,
    ],
    "closed only for one host header": [
        load_balancer(),
        listener(FORWARD),
        PROBES,
        listener_rule(
            "closed",
            20,
            ["/api/_internal*"],
            NOT_FOUND,
            host={"hostHeader": {"values": ["api.example.com"]}},
        ),
    ],
    "closed for /metrics only": [
        load_balancer(),
        listener(FORWARD),
        listener_rule("closed", 20, ["/api/_internal/metrics"], NOT_FOUND),
    ],
}

# rule name -> (resources that pass, resources that fail); the later rule modules' cases
# are in policy_cases.py.
CASES: dict[str, tuple[list[Resource], list[Resource]]] = {
    **LATER_CASES,
    "rds-storage-encrypted": ([db()], [db(storageEncrypted=False)]),
    "s3-bucket-encrypted": (
        [*bucket_pair("aws:kms"), *bucket_pair("AES256", purpose="access-logs")],
        [*bucket_pair("AES256"), *bucket_pair("aws:kms", purpose="access-logs")],
    ),
    "secrets-kms-encrypted": (
        [Resource(t.SECRETS_MANAGER_SECRET, "s", {"kmsKeyId": "arn:key"}), db()],
        [Resource(t.SECRETS_MANAGER_SECRET, "s", {}), db(masterUserSecretKmsKeyId=None)],
    ),
    "rds-not-public": ([db()], [db(publiclyAccessible=True)]),
    "backup-retention": (
        [db(), backup_plan(14), backup_plan(14, copies_keep=14)],
        [db(backupRetentionPeriod=1), backup_plan(3), backup_plan(14, copies_keep=3)],
    ),
    "final-snapshot": ([db()], [db(skipFinalSnapshot=True), db(finalSnapshotIdentifier="")]),
    # The class decides, not the stack's name: a staging-class stack named production may
    # go unprotected, a production-class one named staging may not.
    "production-deletion-protection": (
        [
            db(),
            db("staging", protect=False, cls="staging", deletionProtection=False),
            db("production", protect=False, cls="staging", deletionProtection=False),
        ],
        [
            db(deletionProtection=False),
            db(protect=False),
            db("staging", protect=False, cls="production"),
        ],
    ),
    "production-multi-az": (
        [db(), db("production", cls="staging", multiAz=False)],
        [db(multiAz=False), db(multiAz=None), db("staging", cls="production", multiAz=False)],
    ),
    "no-plain-secrets": (
        [container(ENV="production", JWT_KID="k1", LOG_LEVEL="INFO")],
        [
            container(JWT_SECRET="x" * 40),
            container(DB_PASSWORD="hunter2"),
            container(DATABASE="postgresql://app:pw@db:5432/x"),
            container(AWS_KEY_ID="AKIAABCDEFGHIJKLMNOP"),
        ],
    ),
    "circuit-breaker": (
        [
            Resource(
                t.SERVICE, "svc", {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
            )
        ],
        [
            Resource(
                t.SERVICE, "svc", {"deploymentCircuitBreaker": {"enable": True, "rollback": False}}
            ),
            Resource(t.SERVICE, "svc", {}),
        ],
    ),
    "target-group-health-check": (
        [Resource(t.TARGET_GROUPS[0], "tg", {"healthCheck": {"enabled": True, "path": "/ready"}})],
        [
            Resource(t.TARGET_GROUPS[0], "tg", {}),
            Resource(t.TARGET_GROUPS[0], "tg", {"healthCheck": {"enabled": False, "path": "/r"}}),
        ],
    ),
    "slo-alarms": (
        [*SLO_ALARMS, SUBSCRIBED, SERVICE, *STAGING_SLO_ALARMS],
        [
            *SLO_ALARMS[:2],
            alarm("HealthyHostCount", []),  # the availability SLO without an action
            SUBSCRIBED,
            *MUTED_SLO_ALARMS,  # actions off while a service runs
            SERVICE,
        ],
    ),
    "internal-routes-closed": (
        [
            *PUBLIC_AND_CLOSED,
            Resource(t.LOAD_BALANCERS[0], "private", {"arn": "arn:private", "internal": True}),
            Resource(
                t.LISTENERS[0],
                "private-http",
                {"arn": "arn:p", "loadBalancerArn": "arn:private", "defaultActions": FORWARD},
            ),
        ],
        LEAKING["no rule at all"],
    ),
    "log-retention": (
        [log_group(365, "production"), log_group(30, "staging"), log_group(731, "production")],
        [
            log_group(None, "staging"),
            log_group(90, "production"),
            log_group(14, "staging"),
            Resource(t.LOG_GROUP, "untagged", {"retentionInDays": 30}),
        ],
    ),
    "ecr-scan-on-push": (
        [Resource(t.REPOSITORY, "repo", {"imageScanningConfiguration": {"scanOnPush": True}})],
        [Resource(t.REPOSITORY, "repo", {"imageScanningConfiguration": {"scanOnPush": False}})],
    ),
    "oidc-trust-exact": (
        [github_role(StringEquals={SUB: "repo:acme/drydock:environment:staging", AUD: STS})],
        [
            github_role(StringEquals={AUD: STS}, StringLike={SUB: "repo:acme/drydock:*"}),
            github_role(StringEquals={SUB: "repo:acme/*", AUD: STS}),
            github_role(StringEquals={SUB: ["repo:acme/drydock:environment:staging", "*"]}),
            github_role(StringEquals={AUD: STS}),
        ],
    ),
}


def test_every_rule_has_a_passing_and_a_failing_case() -> None:
    assert {rule.name for rule in RULES} == set(CASES)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_rule_passes_safe_and_rejects_unsafe_resources(rule: r.Rule) -> None:
    passing, failing = CASES[rule.name]
    assert evaluate(passing, [rule]) == []
    violations = evaluate(failing, [rule])
    assert violations
    assert all(v.rule == rule.name for v in violations)
    if rule.check_resource is not None:
        # Each failing resource is caught on its own, not only the set as a whole.
        for resource in failing:
            assert evaluate([resource], [rule]), resource


def test_both_stacks_pass_the_whole_pack(staging: Stack, production: Stack) -> None:
    assert evaluate(staging.policy_view()) == []
    assert evaluate(production.policy_view()) == []


def test_the_pack_catches_an_unsafe_change_to_a_real_stack(production: Stack) -> None:
    resources = [
        replace(res, props={**res.props, "deletionProtection": False}) if res.type == t.RDS else res
        for res in production.policy_view()
    ]
    (violation,) = evaluate(resources)
    assert violation.rule == "production-deletion-protection"
    assert "deletion_protection must be True in production" in violation.message


def test_alarms_may_be_muted_and_staging_unsubscribed_before_the_first_release() -> None:
    (rule,) = [rule for rule in RULES if rule.name == "slo-alarms"]
    assert evaluate([*MUTED_SLO_ALARMS, SUBSCRIBED], [rule]) == []  # no service yet
    assert evaluate([*STAGING_SLO_ALARMS, SERVICE], [rule]) == []  # staging: the spec warns
    unheard = evaluate([*SLO_ALARMS, SERVICE], [rule])
    assert {v.resource for v in unheard} == {"(stack)"}
    assert len(unheard) == len(r.SLO_METRICS)
    assert all("no topic it notifies has a subscriber" in v.message for v in unheard)


@pytest.mark.parametrize(
    ("removed", "broken"),
    [
        ("aws:ec2/flowLog:FlowLog", {"vpc-flow-logs"}),
        ("aws:sns/topicSubscription:TopicSubscription", {"alarm-topic-subscribed", "slo-alarms"}),
        ("aws:backup/vaultLockConfiguration:VaultLockConfiguration", {"production-vault-lock"}),
        ("aws:wafv2/webAclAssociation:WebAclAssociation", {"alb-waf"}),
        ("aws:cloudwatch/eventTarget:EventTarget", {"backup-failures-notify"}),
    ],
)
def test_production_without_one_of_its_controls_fails_that_rule(
    production: Stack, removed: str, broken: set[str]
) -> None:
    view = [res for res in production.policy_view() if res.type != removed]
    assert {v.rule for v in evaluate(view)} == broken


def test_a_lifecycle_over_the_whole_bucket_fails_on_a_real_stack(production: Stack) -> None:
    def widen(res: Resource) -> Resource:
        if res.name != "backups-lifecycle":
            return res
        rules = [{**rule, "filter": {"prefix": ""}} for rule in res.props["rules"]]
        return replace(res, props={**res.props, "rules": rules})

    (violation,) = evaluate([widen(res) for res in production.policy_view()])
    assert violation.rule == "lifecycle-spares-ledger"
    assert "expire-dumps expires objects under the whole bucket" in violation.message


def test_the_pack_keys_on_the_class_not_the_stack_name(staging: Stack) -> None:
    def as_production(res: Resource) -> Resource:
        tags = res.props.get("tags")
        if not tags:
            return res
        return replace(res, props={**res.props, "tags": {**tags, env_class.TAG: "production"}})

    # Staging's own resources pass as staging; relabelled production, in a stack still
    # named staging, they are held to production's rules.
    assert evaluate(staging.policy_view()) == []
    broken = {v.rule for v in evaluate([as_production(res) for res in staging.policy_view()])}
    assert broken == {
        "production-deletion-protection",
        "production-multi-az",
        "production-vault-lock",
        "backup-copy-to-second-region",
        "alarm-topic-subscribed",
        "slo-alarms",
        "log-retention",
    }


@pytest.mark.parametrize("resources", LEAKING.values(), ids=list(LEAKING))
def test_a_public_listener_that_forwards_internal_paths_fails_the_stack(
    resources: list[Resource],
) -> None:
    (rule,) = [rule for rule in RULES if rule.name == "internal-routes-closed"]
    (violation,) = evaluate(resources, [rule])
    assert violation.message.startswith("https: a public listener forwards /api/_internal/")
    assert "fixed 404" in violation.message


def test_a_redirecting_listener_forwards_nothing() -> None:
    redirect = [{"type": "redirect", "redirect": {"protocol": "HTTPS"}}]
    (rule,) = [rule for rule in RULES if rule.name == "internal-routes-closed"]
    assert evaluate([load_balancer(), listener(redirect)], [rule]) == []


def test_the_pack_catches_a_real_stack_whose_listener_opens_internal_routes(
    production: Stack,
) -> None:
    resources = [res for res in production.policy_view() if res.name != "ingress-internal-closed"]
    (violation,) = evaluate(resources)
    assert violation.rule == "internal-routes-closed"
    assert violation.message.startswith("ingress-https: a public listener forwards")
    assert "/api/_internal/metrics, /api/_internal/flags" in violation.message


def test_stack_name_comes_from_the_urn() -> None:
    assert stack_of("urn:pulumi:production::drydock::aws:rds/instance:Instance::db") == "production"


def test_rules_import_without_starting_the_policy_server() -> None:
    code = "import sys, infra.policy.rules\nassert 'pulumi_policy' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)
    assert (ROOT / "infra" / "policy" / "PulumiPolicy.yaml").is_file()


def test_pack_entry_point_wraps_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    import pulumi_policy

    built: dict[str, Any] = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    runpy.run_module("infra.policy.__main__", run_name="__main__")
    policies = {p.name: p for p in built["policies"]}
    assert set(policies) == set(CASES)
    assert built["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY

    reported: list[str] = []
    options = pulumi_policy.PolicyResourceOptions(
        protect=False,
        ignore_changes=[],
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=pulumi_policy.PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
    )
    args = pulumi_policy.ResourceValidationArgs(
        t.RDS,
        {**SAFE_DB},
        "urn:pulumi:production::drydock::aws:rds/instance:Instance::db",
        "db",
        options,
        None,
    )
    policies["production-deletion-protection"].validate(args, lambda m, _urn: reported.append(m))
    assert reported == ["db: must be declared with protect=True in production"]
