"""The policy rules, as plain functions over resource properties (Pulumi's camelCase names).

Importable without pulumi_policy: building a `PolicyPack` starts a server that blocks, so only
`__main__.py` does that. Tests feed these rules the resources registered under Pulumi's mocks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RDS = "aws:rds/instance:Instance"
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_SSE = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
SECRETS_MANAGER_SECRET = "aws:secretsmanager/secret:Secret"  # noqa: S105 - a type token
BACKUP_PLAN = "aws:backup/plan:Plan"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"
TARGET_GROUPS = ("aws:lb/targetGroup:TargetGroup", "aws:alb/targetGroup:TargetGroup")
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
REPOSITORY = "aws:ecr/repository:Repository"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
# Paths under the service's internal prefix that no public listener may forward: the ones
# there now, and one that stands for whatever is added there later.
INTERNAL_PATHS = ("/api/_internal/metrics", "/api/_internal/flags", "/api/_internal/anything")

MIN_BACKUP_DAYS = 7
PRODUCTION = "production"
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|PRIVATE_KEY|API_KEY|ACCESS_KEY|CREDENTIAL")
SECRET_VALUE = re.compile(r"://[^/\s:@]+:[^/\s@]+@|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY")
# Each SLO of the runbook (§3) and how to recognise the alarm that watches it.
SLO_METRICS = {
    "p95 latency": "TargetResponseTime",
    "error rate": "HTTPCode_Target_5XX_Count",
    "availability": "HealthyHostCount",
}


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    props: Mapping[str, Any]
    stack: str = ""
    protect: bool = False


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check_resource: Callable[[Resource], Iterable[str]] | None = None
    check_stack: Callable[[Sequence[Resource]], Iterable[str]] | None = None


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str


RULES: list[Rule] = []


def resource_rule(name: str, description: str) -> Callable[[Any], Any]:
    def register(fn: Callable[[Resource], Iterable[str]]) -> Callable[[Resource], Iterable[str]]:
        RULES.append(Rule(name, description, check_resource=fn))
        return fn

    return register


def stack_rule(name: str, description: str) -> Callable[[Any], Any]:
    def register(
        fn: Callable[[Sequence[Resource]], Iterable[str]],
    ) -> Callable[[Sequence[Resource]], Iterable[str]]:
        RULES.append(Rule(name, description, check_stack=fn))
        return fn

    return register


def evaluate(resources: Sequence[Resource], rules: Iterable[Rule] | None = None) -> list[Violation]:
    """Every violation of `rules` (default: all) by `resources`."""
    found = []
    for rule in RULES if rules is None else rules:
        if rule.check_resource is not None:
            for resource in resources:
                found += [
                    Violation(rule.name, resource.name, m) for m in rule.check_resource(resource)
                ]
        if rule.check_stack is not None:
            found += [Violation(rule.name, "(stack)", m) for m in rule.check_stack(resources)]
    return found


def stack_of(urn: str) -> str:
    """The stack name inside a URN: urn:pulumi:<stack>::<project>::<type>::<name>."""
    return urn.split("::", 1)[0].rsplit(":", 1)[-1]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


@resource_rule("rds-storage-encrypted", "RDS storage is encrypted with a KMS key")
def rds_storage_encrypted(r: Resource) -> Iterator[str]:
    if r.type == RDS and not (r.props.get("storageEncrypted") is True and r.props.get("kmsKeyId")):
        yield f"{r.name}: set storage_encrypted=True and kms_key_id"


@stack_rule("s3-bucket-encrypted", "every S3 bucket has SSE-KMS default encryption")
def s3_bucket_encrypted(resources: Sequence[Resource]) -> Iterator[str]:
    encrypted = set()
    for r in resources:
        if r.type in BUCKET_SSE:
            rules = r.props.get("rules") or []
            algorithms = {
                (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
                for rule in rules
            }
            if algorithms & {"aws:kms", "aws:kms:dsse"}:
                encrypted.add(r.props.get("bucket"))
    for r in resources:
        if r.type in BUCKETS and not {r.props.get("bucket"), r.props.get("id")} & encrypted:
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


@resource_rule("final-snapshot", "deleting a database leaves a final snapshot")
def final_snapshot(r: Resource) -> Iterator[str]:
    if r.type == RDS and (
        r.props.get("skipFinalSnapshot") is True or not r.props.get("finalSnapshotIdentifier")
    ):
        yield f"{r.name}: set skip_final_snapshot=False and a final_snapshot_identifier"


@resource_rule("production-deletion-protection", "production databases cannot be deleted")
def production_deletion_protection(r: Resource) -> Iterator[str]:
    if r.type == RDS and r.stack == PRODUCTION:
        if r.props.get("deletionProtection") is not True:
            yield f"{r.name}: deletion_protection must be True in production"
        if not r.protect:
            yield f"{r.name}: must be declared with protect=True in production"


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


@stack_rule("slo-alarms", "every SLO has an alarm, and every alarm has an action")
def slo_alarms(resources: Sequence[Resource]) -> Iterator[str]:
    alarms = [r for r in resources if r.type == ALARM]
    for alarm in alarms:
        if not alarm.props.get("alarmActions"):
            yield f"{alarm.name}: alarm has no alarm_actions"
    for slo, metric in SLO_METRICS.items():
        if not any(_watches(a, metric) and a.props.get("alarmActions") for a in alarms):
            yield f"no alarm with an action watches the {slo} SLO ({metric})"


@resource_rule("log-retention", "log groups expire their events")
def log_retention(r: Resource) -> Iterator[str]:
    if r.type == LOG_GROUP and _number(r.props.get("retentionInDays")) <= 0:
        yield f"{r.name}: set retention_in_days"


@resource_rule("ecr-scan-on-push", "container images are scanned on push")
def ecr_scan_on_push(r: Resource) -> Iterator[str]:
    scanning = r.props.get("imageScanningConfiguration") or {}
    if r.type == REPOSITORY and scanning.get("scanOnPush") is not True:
        yield f"{r.name}: set image_scanning_configuration scan_on_push=True"


IAM_ROLE = "aws:iam/role:Role"
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    found = document.get("Statement") if isinstance(document, Mapping) else None
    found = [found] if isinstance(found, Mapping) else found or []
    return [s for s in found if isinstance(s, dict)]


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
