"""What differs between staging and production, asserted in one table."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.harness import Stack

pytestmark = pytest.mark.unit

RDS = "aws:rds/instance:Instance"

DIFFERENCES: dict[str, tuple[Callable[[Stack], Any], Any, Any]] = {
    "NAT gateways": (lambda s: len(s.of_type("aws:ec2/natGateway:NatGateway")), 1, 3),
    "availability zones": (lambda s: len(s.of_type("aws:ec2/subnet:Subnet")) // 2, 2, 3),
    "multi-AZ database": (lambda s: s.one(RDS).get("multiAz"), False, True),
    "deletion protection": (lambda s: s.one(RDS).get("deletionProtection"), False, True),
    "protect=True on the instance": (lambda s: s.one(RDS).protect, False, True),
    "backup retention days": (lambda s: s.one(RDS).get("backupRetentionPeriod"), 7, 14),
    "instance class": (lambda s: s.one(RDS).get("instanceClass"), "db.t4g.micro", "db.t4g.medium"),
    "ALB deletion protection": (
        lambda s: s.one("aws:lb/loadBalancer:LoadBalancer").get("enableDeletionProtection"),
        False,
        True,
    ),
    "ECS Exec": (
        lambda s: s.one("aws:ecs/service:Service").get("enableExecuteCommand"),
        True,
        False,
    ),
    "desired count": (lambda s: s.one("aws:ecs/service:Service").get("desiredCount"), 2, 3),
    "task cpu": (
        lambda s: s.one("aws:ecs/taskDefinition:TaskDefinition", "service-task").get("cpu"),
        "256",
        "512",
    ),
    "log retention": (
        lambda s: s.one("aws:cloudwatch/logGroup:LogGroup", "service-logs").get("retentionInDays"),
        30,
        365,
    ),
    "secret recovery window": (
        lambda s: s.one("aws:secretsmanager/secret:Secret", "secrets-jwt").get(
            "recoveryWindowInDays"
        ),
        7,
        30,
    ),
    "backups bucket expiry": (
        lambda s: s.one(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "backups-lifecycle"
        ).get("rules")[0]["expiration"]["days"],
        30,
        90,
    ),
    "environment class": (lambda s: s.spec.environment_class, "staging", "production"),
    "rollout strategy": (
        lambda s: (s.one("aws:ecs/service:Service").get("deploymentConfiguration") or {}).get(
            "strategy"
        ),
        None,
        "CANARY",
    ),
    "vault locked in compliance mode": (
        lambda s: len(s.of_type("aws:backup/vaultLockConfiguration:VaultLockConfiguration")),
        0,
        2,  # its own vault and the second region's
    ),
}


@pytest.mark.parametrize("what", list(DIFFERENCES))
def test_staging_and_production_differ_as_designed(
    what: str, staging: Stack, production: Stack
) -> None:
    getter, in_staging, in_production = DIFFERENCES[what]
    assert (getter(staging), getter(production)) == (in_staging, in_production)


def test_everything_else_has_the_same_shape(staging: Stack, production: Stack) -> None:
    def shape(stack: Stack) -> set[str]:
        # Per-zone resources are numbered; count aside, both stacks declare the same set.
        return {re.sub(r"-\d+$", "", r.name) for r in stack.resources}

    assert shape(staging) - shape(production) == {"service-task-exec"}
    # Production is built as it must be set: someone to page, and a second region for the
    # backups (the `dr` component, the bucket's replication into it). Staging may go
    # without both (infra/spec.py, require_for_aws); production's vaults are locked.
    dr = {f"dr-{part}" for part in ("bucket", "encryption", "key", "key-alias", "lifecycle")}
    dr |= {f"dr-{part}" for part in ("ownership", "public-access", "tls-only", "vault")}
    dr |= {"dr", "dr-versioning", "dr-vault-lock", "backups-replication"}
    # The native canary: a second target group, the rule ECS moves, the role it uses.
    canary = {"ingress-tg-alternate", "ingress-production", "service-load-balancer"}
    assert shape(production) - shape(staging) == {
        "alarms-email",
        "backups-vault-lock",
        *dr,
        *canary,
    }
