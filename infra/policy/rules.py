"""The policy rules, as plain functions over resource properties (Pulumi's camelCase names).

Importable without pulumi_policy: building a `PolicyPack` starts a server that blocks, so only
`__main__.py` does that. Tests feed these rules the resources registered under Pulumi's mocks.
The rules here are the first ones; the modules imported below add the rest to the same list
(`registry.RULES`), one module per concern. Production's rules key on each resource's
environment class (its `environment-class` tag), never on the stack's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from infra import environment_class as env_class
from infra.policy import alerting_rules, audit_rules, backup_rules, edge_rules, encryption_rules
from infra.policy.alerting_rules import subscribed_topics
from infra.policy.backup_rules import MIN_BACKUP_DAYS
from infra.policy.registry import (
    RULES,
    Resource,
    Rule,
    Violation,
    class_of,
    evaluate,
    is_production,
    resource_rule,
    stack_of,
    stack_rule,
    tags_of,
)
from infra.policy.registry import number as _number
from infra.policy.registry import statements as _statements
from infra.policy.tokens import (
    ALARM,
    BACKUP_PLAN,
    BUCKET_SSE,
    BUCKETS,
    IAM_ROLE,
    LISTENER_RULES,
    LISTENERS,
    LOAD_BALANCERS,
    LOG_GROUP,
    RDS,
    REPOSITORY,
    SECRETS_MANAGER_SECRET,
    SERVICE,
    TARGET_GROUPS,
    TASK_DEFINITION,
)

# Paths under the service's internal prefix that no public listener may forward: the ones
# there now, and one that stands for whatever is added there later.
INTERNAL_PATHS = ("/api/_internal/metrics", "/api/_internal/flags", "/api/_internal/anything")

__all__ = [
    "RULES",
    "Resource",
    "Rule",
    "Violation",
    "alerting_rules",
    "audit_rules",
    "backup_rules",
    "edge_rules",
    "encryption_rules",
    "evaluate",
    "stack_of",
]

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL")
SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY")
# Each SLO of the runbook (§3) and how to recognise the alarm that watches it.
SLO_METRICS = {
    "p95 latency": "TargetResponseTime",
    "error rate": "HTTPCode_Target_5XX_Count",
    "availability": "HealthyHostCount",
}


@resource_rule("rds-storage-encrypted", "RDS storage is encrypted with a KMS key")
def rds_storage_encrypted(r: Resource) -> Iterator[str]:
    if r.type == RDS and not (r.props.get("storageEncrypted") is True and r.props.get("kmsKeyId")):
        yield f"{r.name}: set storage_encrypted=True and kms_key_id"


# A bucket tagged `purpose: access-logs` takes SSE-S3 instead: ELB access logs and S3 server
# access logs can be delivered to nothing else. Any other bucket holds data: SSE-KMS.
ACCESS_LOGS = "access-logs"
KMS_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})


@stack_rule(
    "s3-bucket-encrypted",
    "every S3 bucket has SSE-KMS default encryption; an access-log bucket, SSE-S3",
)
def s3_bucket_encrypted(resources: Sequence[Resource]) -> Iterator[str]:
    algorithms: dict[Any, set[Any]] = {}
    for r in resources:
        if r.type in BUCKET_SSE:
            algorithms.setdefault(r.props.get("bucket"), set()).update(
                (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                for rule in r.props.get("rules") or []
            )
    for r in resources:
        if r.type not in BUCKETS:
            continue
        found = algorithms.get(r.props.get("bucket"), set()) | algorithms.get(
            r.props.get("id"), set()
        )
        if tags_of(r).get("purpose") == ACCESS_LOGS:
            if "AES256" not in found:
                yield (
                    f"{r.name}: an access-log bucket needs SSE-S3 (AES256): ELB and S3 server "
                    "access logs cannot be delivered under a KMS key"
                )
        elif not found & KMS_ALGORITHMS:
            yield f"{r.name}: add a BucketServerSideEncryptionConfiguration using aws:kms"


@resource_rule("secrets-kms-encrypted", "secrets are encrypted with a customer-managed KMS key")
def secrets_kms_encrypted(r: Resource) -> Iterator[str]:
    if r.type == SECRETS_MANAGER_SECRET and not r.props.get("kmsKeyId"):
        yield f"{r.name}: set kms_key_id to a customer-managed key"
    if (
        r.type == RDS
        and r.props.get("manageMasterUserPassword")
        and not r.props.get("masterUserSecretKmsKeyId")
    ):
        yield f"{r.name}: set master_user_secret_kms_key_id for the managed master secret"


@resource_rule("rds-not-public", "no database is publicly accessible")
def rds_not_public(r: Resource) -> Iterator[str]:
    if r.type == RDS and r.props.get("publiclyAccessible") is True:
        yield f"{r.name}: publicly_accessible must be False"


@resource_rule("backup-retention", f"backups are kept at least {MIN_BACKUP_DAYS} days")
def backup_retention(r: Resource) -> Iterator[str]:
    if r.type == RDS and _number(r.props.get("backupRetentionPeriod")) < MIN_BACKUP_DAYS:
        yield f"{r.name}: backup_retention_period must be >= {MIN_BACKUP_DAYS}"
    if r.type == BACKUP_PLAN:
        for rule in r.props.get("rules") or []:
            if _number((rule.get("lifecycle") or {}).get("deleteAfter")) < MIN_BACKUP_DAYS:
                rule_name = rule.get("ruleName")
                yield f"{r.name}: rule {rule_name} must keep points >= {MIN_BACKUP_DAYS} days"
            for copy in rule.get("copyActions") or []:
                # A copy with no lifecycle is kept for good.
                after = (copy.get("lifecycle") or {}).get("deleteAfter")
                if after is not None and _number(after) < MIN_BACKUP_DAYS:
                    yield (
                        f"{r.name}: rule {rule.get('ruleName')} must keep its copies >= "
                        f"{MIN_BACKUP_DAYS} days"
                    )


@resource_rule("final-snapshot", "deleting a database leaves a final snapshot")
def final_snapshot(r: Resource) -> Iterator[str]:
    if r.type == RDS and (
        r.props.get("skipFinalSnapshot") is True or not r.props.get("finalSnapshotIdentifier")
    ):
        yield f"{r.name}: set skip_final_snapshot=False and a final_snapshot_identifier"


@resource_rule("production-deletion-protection", "production databases cannot be deleted")
def production_deletion_protection(r: Resource) -> Iterator[str]:
    if r.type == RDS and is_production(r):
        if r.props.get("deletionProtection") is not True:
            yield f"{r.name}: deletion_protection must be True in production"
        if not r.protect:
            yield f"{r.name}: must be declared with protect=True in production"


@resource_rule("production-multi-az", "production databases run in two zones (Multi-AZ)")
def production_multi_az(r: Resource) -> Iterator[str]:
    if r.type == RDS and is_production(r) and r.props.get("multiAz") is not True:
        yield f"{r.name}: set multi_az=True in production (drydock:multiAz)"


def _containers(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = props.get("containerDefinitions") or "[]"
    try:
        containers = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return []
    return [c for c in containers if isinstance(c, dict)]


@resource_rule("no-plain-secrets", "no secret-looking plain environment values in containers")
def no_plain_secrets(r: Resource) -> Iterator[str]:
    if r.type != TASK_DEFINITION:
        return
    for container in _containers(r.props):
        for entry in container.get("environment") or []:
            name, value = str(entry.get("name", "")), str(entry.get("value", ""))
            if SECRET_NAME.search(name.upper()) or SECRET_VALUE.search(value):
                yield (
                    f"{r.name}: container {container.get('name')} has {name} in plain "
                    "environment; pass it as an ECS secret (valueFrom)"
                )


@resource_rule("circuit-breaker", "ECS services roll back failed deployments")
def circuit_breaker(r: Resource) -> Iterator[str]:
    if r.type != SERVICE:
        return
    breaker = r.props.get("deploymentCircuitBreaker") or {}
    if not (breaker.get("enable") is True and breaker.get("rollback") is True):
        yield f"{r.name}: set deployment_circuit_breaker enable=True, rollback=True"


@resource_rule("target-group-health-check", "every target group has an HTTP health check")
def target_group_health_check(r: Resource) -> Iterator[str]:
    if r.type not in TARGET_GROUPS:
        return
    check = r.props.get("healthCheck") or {}
    if check.get("enabled") is False or not check.get("path"):
        yield f"{r.name}: configure health_check with a path (the readiness probe)"


def _watches(alarm: Resource, metric: str) -> bool:
    if alarm.props.get("metricName") == metric:
        return True
    queries = alarm.props.get("metricQueries") or []
    return any((q.get("metric") or {}).get("metricName") == metric for q in queries)


@stack_rule(
    "slo-alarms",
    "every SLO has an alarm, every alarm an action, enabled once a service runs, and in "
    "production a subscriber on its topic",
)
def slo_alarms(resources: Sequence[Resource]) -> Iterator[str]:
    alarms = [r for r in resources if r.type == ALARM]
    # Before the first release nothing serves, and the alarms are declared with their
    # actions off (README, "Provision AWS"); from then on an alarm that cannot act is mute.
    serving = any(r.type == SERVICE for r in resources)
    subscribed = subscribed_topics(resources)
    for alarm in alarms:
        if not alarm.props.get("alarmActions"):
            yield f"{alarm.name}: alarm has no alarm_actions"
        elif serving and alarm.props.get("actionsEnabled") is False:
            yield f"{alarm.name}: actions_enabled is False while a service runs; set it True"
    for slo, metric in SLO_METRICS.items():
        watching = [a for a in alarms if _watches(a, metric) and a.props.get("alarmActions")]
        if not watching:
            yield f"no alarm with an action watches the {slo} SLO ({metric})"
        for alarm in watching:
            topics = set(alarm.props.get("alarmActions") or [])
            if is_production(alarm) and not topics & subscribed:
                yield (
                    f"{alarm.name}: no topic it notifies has a subscriber; add an email or "
                    "https subscription (drydock:alarmEmails, drydock:alarmHttpsEndpoint)"
                )


@resource_rule(
    "log-retention",
    "log groups expire their events, after at least the class's minimum "
    f"({', '.join(f'{c} {d} days' for c, d in env_class.MIN_LOG_RETENTION_DAYS.items())})",
)
def log_retention(r: Resource) -> Iterator[str]:
    if r.type != LOG_GROUP:
        return
    days = _number(r.props.get("retentionInDays"))
    minimum = env_class.MIN_LOG_RETENTION_DAYS[class_of(r)]
    if days <= 0:
        yield f"{r.name}: set retention_in_days (at least {minimum})"
    elif days < minimum:
        yield (
            f"{r.name}: retention_in_days={int(days)} is below the {minimum} days a "
            f"{class_of(r)} stack keeps its logs"
        )


@resource_rule("ecr-scan-on-push", "container images are scanned on push")
def ecr_scan_on_push(r: Resource) -> Iterator[str]:
    scanning = r.props.get("imageScanningConfiguration") or {}
    if r.type == REPOSITORY and scanning.get("scanOnPush") is not True:
        yield f"{r.name}: set image_scanning_configuration scan_on_push=True"


WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"


@resource_rule(
    "oidc-trust-exact",
    "a role a web identity assumes names its subject and audience exactly, with no wildcard",
)
def oidc_trust_exact(r: Resource) -> Iterator[str]:
    # A pattern or a missing subject lets any branch, pull request or repository the
    # provider signs for assume the role (for GitHub: every repository on github.com).
    if r.type != IAM_ROLE:
        return
    for statement in _statements(r.props.get("assumeRolePolicy")):
        if statement.get("Effect") != "Allow" or WEB_IDENTITY not in str(statement.get("Action")):
            continue
        principal = statement.get("Principal")
        federated = principal.get("Federated") if isinstance(principal, Mapping) else principal
        host = str(federated).split("oidc-provider/", 1)[-1]
        conditions = statement.get("Condition") or {}
        for claim in ("sub", "aud"):
            key = f"{host}:{claim}"
            named = (conditions.get("StringEquals") or {}).get(key)
            values = named if isinstance(named, list) else [named]
            operators = [
                op for op, keys in conditions.items() if isinstance(keys, Mapping) and key in keys
            ]
            if operators != ["StringEquals"] or not values or not all(map(_exact, values)):
                yield (
                    f"{r.name}: the trust policy must name {key} with StringEquals and exact "
                    "values only (no pattern, no wildcard)"
                )


def _exact(value: Any) -> bool:
    return isinstance(value, str) and value != "" and not set(value) & set("*?")


def _path_pattern_matches(pattern: str, path: str) -> bool:
    """An ALB path pattern: case-sensitive, `*` any run of characters, `?` exactly one."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, path) is not None


def _condition_matches(condition: Mapping[str, Any], path: str) -> bool | None:
    """True or False for a path condition; None for any other kind, which the sender of
    the request controls (host, headers, method, query, source)."""
    paths = condition.get("pathPattern")
    if not isinstance(paths, Mapping):
        return None
    if any(_path_pattern_matches(str(p), path) for p in paths.get("values") or []):
        return True
    return any(re.search(str(r), path) for r in paths.get("regexValues") or [])


def _forwards(actions: Any) -> bool:
    return any((a or {}).get("type") == "forward" for a in actions or [])


def _reaches_targets(listener: Resource, rules: Sequence[Resource], path: str) -> bool:
    """Whether some request for `path` is forwarded: rules in priority order (unknown last),
    then the listener's default. A rule that also needs a condition the client controls
    decides nothing, unless it forwards: then a client can meet it."""
    for rule in sorted(rules, key=lambda r: _number(r.props.get("priority")) or float("inf")):
        verdicts = [_condition_matches(c, path) for c in rule.props.get("conditions") or []]
        if False in verdicts:
            continue
        if _forwards(rule.props.get("actions")):
            return True
        if None not in verdicts:
            return False  # a fixed response, redirect or authentication answers it
    return _forwards(listener.props.get("defaultActions"))


@stack_rule(
    "internal-routes-closed",
    "no public load balancer forwards /api/_internal paths other than the probes",
)
def internal_routes_closed(resources: Sequence[Resource]) -> Iterator[str]:
    internal_lbs = {
        r.props.get("arn")
        for r in resources
        if r.type in LOAD_BALANCERS and r.props.get("internal") is True
    }
    for listener in (r for r in resources if r.type in LISTENERS):
        if listener.props.get("loadBalancerArn") in internal_lbs:
            continue
        rules = [
            r
            for r in resources
            if r.type in LISTENER_RULES and r.props.get("listenerArn") == listener.props.get("arn")
        ]
        leaks = [p for p in INTERNAL_PATHS if _reaches_targets(listener, rules, p)]
        if leaks:
            yield (
                f"{listener.name}: a public listener forwards {', '.join(leaks)} to the "
                "service; add a listener rule answering /api/_internal* with a fixed 404, "
                "after a rule that forwards only the readiness and liveness paths"
            )
