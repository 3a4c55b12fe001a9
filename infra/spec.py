"""The environment spec: every setting of a stack, typed, with per-stack defaults and limits.

Pure Python (no Pulumi import). The Pulumi program, the local target and the pipelines read
the same `Pulumi.<stack>.yaml` through this module, so both targets agree on replicas, probes,
SLOs, backups and security settings. Each field below is one row of the settings table: its
Pulumi config key, the staging default, the production default and the allowed values.
Validation happens here, before anything is declared or started.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from infra import environment_class as env_class
from infra._settings import (
    SpecError,
    coerce,
    is_encrypted,
    setting,
    settings_of,
    unknown_key,
    windows_overlap,
)

__all__ = [
    "SETTINGS",
    "EnvironmentSpec",
    "SpecError",
    "defaults",
    "from_pulumi_config",
    "load_stack_file",
    "require_for_aws",
]

ROOT = Path(__file__).resolve().parent.parent
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
FARGATE_MEMORY = {  # cpu units -> allowed memory (MiB), from the Fargate task size table
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}
_HHMM = r"([01]\d|2[0-3]):[0-5]\d"
_DAY = r"(mon|tue|wed|thu|fri|sat|sun)"
_PORT = (1024.0, 65535.0)
_IGNORED_KEYS = frozenset({"aws:profile", "aws:defaultTags", "aws:allowedAccountIds"})


@dataclass(frozen=True)
class EnvironmentSpec:
    stack: str = "staging"
    source: str = field(default="defaults", compare=False)
    # Keys set with `pulumi config set --secret`: the file loader cannot read their values,
    # but they are set, which is what `require_for_aws` asks of a subscriber.
    sealed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    # What the stack is held to (infra/environment_class.py). Defaults to `production` for
    # the stack named so; any other name is `staging` unless its file says otherwise.
    environment_class: str = setting(
        "environmentClass", env_class.STAGING, env_class.PRODUCTION, choices=env_class.CLASSES
    )

    region: str = setting(
        "aws:region",
        "eu-west-1",
        pattern=r"[a-z]{2}(-[a-z]+)+-\d",
        hint="an AWS region such as eu-west-1",
    )
    # Capacity and the container (runbook §2: probes wired into the platform).
    image: str | None = setting(
        "image",
        None,
        pattern=r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/[a-z0-9._/-]+"
        r"(@sha256:[0-9a-f]{64}|:(?!latest$)[A-Za-z0-9_.-]{1,128})",
        hint="an ECR image URI pinned by digest (…@sha256:…) or by an immutable tag",
    )
    desired_count: int = setting("desiredCount", 2, 3, bounds=(1, 20))
    min_count: int = setting("minCount", 2, 3, bounds=(1, 20))
    max_count: int = setting("maxCount", 4, 12, bounds=(1, 50))
    cpu: int = setting("cpu", 256, 512, choices=tuple(FARGATE_MEMORY))
    memory: int = setting("memory", 512, 1024, bounds=(512, 30720))
    container_port: int = setting("containerPort", 8000, bounds=_PORT)
    container_user: str = setting(
        "containerUser",
        "10001:10001",
        pattern=r"[1-9]\d*(:\d+)?",
        hint="a non-root uid[:gid], e.g. 10001:10001",
    )
    scale_cpu_percent: int = setting("scaleOnCpuPercent", 60, bounds=(10, 90))
    scale_requests_per_target: int = setting("scaleOnRequestsPerTarget", 1000, bounds=(10, 100_000))
    certificate_arn: str | None = setting(
        "certificateArn",
        None,
        pattern=r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[\w-]+",
        hint="an ACM certificate ARN",
    )
    domain_name: str | None = setting(
        "domainName",
        None,
        pattern=r"([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}",
        hint="a DNS name such as api.example.com",
    )
    ecs_exec: bool = setting("ecsExec", True, False)
    # Probes and draining.
    liveness_path: str = setting(
        "livenessPath", "/api/_internal/health", pattern=r"/[\w/.-]*", hint="an absolute URL path"
    )
    readiness_path: str = setting(
        "readinessPath", "/api/_internal/ready", pattern=r"/[\w/.-]*", hint="an absolute URL path"
    )
    health_check_interval_seconds: int = setting("healthCheckIntervalSeconds", 10, bounds=(5, 300))
    health_check_timeout_seconds: int = setting("healthCheckTimeoutSeconds", 5, bounds=(2, 60))
    healthy_threshold: int = setting("healthyThreshold", 2, bounds=(2, 10))
    unhealthy_threshold: int = setting("unhealthyThreshold", 3, bounds=(2, 10))
    health_check_grace_period_seconds: int = setting(
        "healthCheckGracePeriodSeconds", 60, bounds=(0, 300)
    )
    deregistration_delay_seconds: int = setting("deregistrationDelaySeconds", 30, bounds=(0, 600))
    drain_seconds: int = setting("drainSeconds", 5, bounds=(0, 100))
    # SLOs (runbook §3) and how their alarms evaluate.
    slo_latency_p95_seconds: float = setting("sloLatencyP95Seconds", 0.4, bounds=(0.01, 10))
    slo_error_rate_percent: float = setting("sloErrorRatePercent", 1.0, bounds=(0.01, 50))
    slo_availability_percent: float = setting("sloAvailabilityPercent", 99.5, bounds=(90, 99.999))
    alarm_period_seconds: int = setting("alarmPeriodSeconds", 60, choices=(60, 300, 900, 3600))
    alarm_evaluation_periods: int = setting("alarmEvaluationPeriods", 5, bounds=(1, 60))
    alarm_datapoints_to_alarm: int = setting("alarmDatapointsToAlarm", 3, bounds=(1, 60))
    db_cpu_alarm_percent: int = setting("dbCpuAlarmPercent", 80, bounds=(10, 100))
    db_free_storage_alarm_gb: int = setting("dbFreeStorageAlarmGb", 5, 10, bounds=(1, 1000))
    db_connections_alarm: int = setting("dbConnectionsAlarm", 80, 300, bounds=(1, 5000))
    alarm_emails: tuple[str, ...] = setting(
        "alarmEmails", (), pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+", hint="email addresses"
    )
    alarm_https_endpoint: str | None = setting(
        "alarmHttpsEndpoint", None, pattern=r"https://\S+", hint="an https:// URL", secret=True
    )
    # Security-event spikes (runbook §3, §5): an alarm when one period counts this many of an
    # event, on both targets. Smoke runs reuse a refresh token once on purpose.
    security_alarm_period_seconds: int = setting(
        "securityAlarmPeriodSeconds", 300, choices=(60, 300, 900, 3600)
    )
    refresh_reuse_alarm_threshold: int = setting(
        "refreshReuseAlarmThreshold", 5, bounds=(2, 100_000)
    )
    lockout_alarm_threshold: int = setting("lockoutAlarmThreshold", 10, bounds=(1, 100_000))
    # PostgreSQL and backups (runbook §6).
    db_engine_version: str = setting("dbEngineVersion", "18", choices=("16", "17", "18"))
    db_instance_class: str = setting(
        "dbInstanceClass",
        "db.t4g.micro",
        "db.t4g.medium",
        pattern=r"db\.[a-z0-9]+\.[a-z0-9]+",
        hint="e.g. db.t4g.small",
    )
    db_allocated_storage_gb: int = setting("dbAllocatedStorageGb", 20, 50, bounds=(20, 65536))
    db_max_allocated_storage_gb: int = setting(
        "dbMaxAllocatedStorageGb", 50, 200, bounds=(20, 65536)
    )
    db_name: str = setting(
        "dbName", "drydock", pattern=r"[a-z][a-z0-9_]{0,62}", hint="a lower-case identifier"
    )
    multi_az: bool = setting("multiAz", False, True)
    deletion_protection: bool = setting("deletionProtection", False, True)
    backup_retention_days: int = setting("backupRetentionDays", 7, 14, bounds=(7, 35))
    weekly_backup_retention_weeks: int = setting(
        "weeklyBackupRetentionWeeks", 5, 8, bounds=(5, 520)
    )
    backup_window: str = setting(
        "backupWindow", "03:00-03:30", pattern=f"{_HHMM}-{_HHMM}", hint="hh:mm-hh:mm in UTC"
    )
    maintenance_window: str = setting(
        "maintenanceWindow",
        "sun:04:00-sun:05:00",
        pattern=f"{_DAY}:{_HHMM}-{_DAY}:{_HHMM}",
        hint="ddd:hh:mm-ddd:hh:mm in UTC",
    )
    daily_backup_schedule: str = setting(
        "dailyBackupSchedule",
        "cron(0 6 ? * * *)",
        pattern=r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)",
        hint="an AWS cron() expression in UTC",
    )
    weekly_backup_schedule: str = setting(
        "weeklyBackupSchedule",
        "cron(0 8 ? * SUN *)",
        pattern=r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)",
        hint="an AWS cron() expression in UTC",
    )
    log_min_duration_statement_ms: int = setting(
        "logMinDurationStatementMs", 400, bounds=(-1, 60000)
    )
    monitoring_interval_seconds: int = setting(
        "enhancedMonitoringIntervalSeconds", 60, choices=(1, 5, 10, 15, 30, 60)
    )
    backups_expiry_days: int = setting("backupsBucketExpiryDays", 30, 90, bounds=(7, 3650))
    # The second region that AWS Backup copies recovery points to and the backups bucket
    # replicates into (infra/dr_backups.py); required in production (`require_for_aws`).
    dr_region: str | None = setting(
        "drRegion",
        None,
        pattern=r"[a-z]{2}(-[a-z]+)+-\d",
        hint="an AWS region other than aws:region, such as eu-central-1",
    )
    pre_deploy_snapshots_kept: int = setting("preDeploySnapshotsKept", 5, 10, bounds=(1, 100))
    # Secret rotation through Pulumi (runbook §12): bump a generation to issue a new value.
    db_password_generation: int = setting("dbPasswordGeneration", 1, bounds=(1, 10_000))
    jwt_key_generation: int = setting("jwtKeyGeneration", 1, bounds=(1, 10_000))
    metrics_token_generation: int = setting("metricsTokenGeneration", 1, bounds=(1, 10_000))
    # Deploy verification.
    bake_window_seconds: int = setting("bakeWindowSeconds", 600, bounds=(60, 3600))
    local_bake_window_seconds: int = setting("localBakeWindowSeconds", 60, bounds=(10, 3600))
    # Progressive delivery (runbook §7): `canary` sends each share of canarySteps to the new
    # release for canaryStepSeconds and compares it with the stable replicas before the next
    # share; `rolling` replaces the replicas at once, gated by health alone.
    rollout_strategy: str = setting(
        "rolloutStrategy", "rolling", "canary", choices=("rolling", "canary")
    )
    canary_steps: tuple[int, ...] = setting(
        "canarySteps", (10, 50, 100), bounds=(1, 100), hint="percentages rising to 100"
    )
    canary_step_seconds: int = setting("canaryStepSeconds", 300, bounds=(60, 3600))
    local_canary_step_seconds: int = setting("localCanaryStepSeconds", 20, bounds=(5, 3600))
    # Abuse controls handed to the service (runbook §5).
    rate_limit_backend: str = setting(
        "rateLimitBackend", "postgres", choices=("memory", "postgres")
    )
    rate_limit_auth_per_minute: int = setting("rateLimitAuthPerMinute", 30, bounds=(1, 10_000))
    rate_limit_api_per_minute: int = setting("rateLimitApiPerMinute", 1200, bounds=(1, 1_000_000))
    # /api/_internal per client; the ALB's and the container's health checks are exempt.
    rate_limit_internal_per_minute: int = setting(
        "rateLimitInternalPerMinute", 120, bounds=(1, 1_000_000)
    )
    lockout_failures: int = setting("lockoutFailures", 5, bounds=(1, 100))
    lockout_minutes: int = setting("lockoutMinutes", 15, bounds=(1, 1440))
    # The environment's first admin, made by the pipeline with a password from the secret
    # store (never by registering); `python -m service create-admin` makes the others.
    admin_email: str = setting(
        "adminEmail",
        "admin@drydock.example.com",
        pattern=r"[^@\s]+@[^@\s]+\.[^@\s]+",
        hint="an email address",
    )
    # Platform.
    log_retention_days: int = setting("logRetentionDays", 30, 365, choices=LOG_RETENTION_DAYS)
    vpc_cidr: str = setting(
        "vpcCidr",
        "10.40.0.0/16",
        "10.50.0.0/16",
        pattern=r"\d+\.\d+\.\d+\.\d+/(1[6-9]|20)",
        hint="an IPv4 network from /16 to /20",
    )
    availability_zones: int = setting("availabilityZones", 2, 3, bounds=(2, 3))
    nat_gateways: int = setting("natGateways", 1, 3, bounds=(1, 3))
    ecr_images_kept: int = setting("ecrImagesKept", 30, 100, bounds=(5, 1000))
    # CI's AWS identity (infra/github_oidc.py): the repository whose GitHub environment named
    # like the stack may assume its deploy role, and whether this stack creates the account's
    # one GitHub OIDC provider (README, "CI's AWS identity").
    github_repository: str | None = setting(
        "githubRepository",
        None,
        pattern=r"(?!-)[A-Za-z0-9-]{1,39}/(?!\.\.?$)[A-Za-z0-9._-]{1,100}",
        hint="the GitHub repository as owner/name, spelt as GitHub does, e.g. acme/drydock",
    )
    create_github_oidc_provider: bool = setting("createGithubOidcProvider", False)
    # The local target (one machine, everything on 127.0.0.1).
    local_lb_port: int = setting("localLoadBalancerPort", 8180, 8280, bounds=_PORT)
    local_postgres_port: int = setting("localPostgresPort", 15432, 15433, bounds=_PORT)
    local_agent_port: int = setting("localAgentPort", 8181, 8281, bounds=_PORT)
    local_replica_base_port: int = setting("localReplicaBasePort", 8190, 8290, bounds=_PORT)
    # Caddy's active health check interval: sub-second so a rollout is not paced by probes.
    local_health_check_interval_ms: int = setting(
        "localHealthCheckIntervalMs", 500, bounds=(100, 10_000)
    )
    local_alarm_period_seconds: int = setting("localAlarmPeriodSeconds", 10, bounds=(5, 3600))
    # Caddy notices an unready replica within one health interval locally, so the drain a
    # replica needs before it stops accepting is far shorter than behind an ALB.
    local_drain_seconds: int = setting("localDrainSeconds", 2, bounds=(0, 100))
    # Every local client is 127.0.0.1, so per-address limits would throttle the pipeline's
    # own load and smoke traffic; on AWS the limits above apply to each real client.
    local_rate_limit_auth_per_minute: int = setting(
        "localRateLimitAuthPerMinute", 10_000, bounds=(1, 100_000_000)
    )
    local_rate_limit_api_per_minute: int = setting(
        "localRateLimitApiPerMinute", 1_000_000, bounds=(1, 100_000_000)
    )
    local_rate_limit_internal_per_minute: int = setting(
        "localRateLimitInternalPerMinute", 1_000_000, bounds=(1, 100_000_000)
    )

    def __post_init__(self) -> None:
        problems = [*_field_problems(self), *_cross_problems(self)]
        if problems:
            raise SpecError("\n".join(f"{self.source}: {p}" for p in problems))

    @property
    def is_production(self) -> bool:
        return self.environment_class == env_class.PRODUCTION

    @property
    def has_subscriber(self) -> bool:
        """Someone hears the alarms: an email, or a webhook (perhaps set as a secret)."""
        return bool(
            self.alarm_emails
            or self.alarm_https_endpoint
            or "drydock:alarmHttpsEndpoint" in self.sealed
        )

    @property
    def released(self) -> bool:
        """True once a release image is configured; before that the service is not created."""
        return self.image is not None

    @property
    def local_replica_ports(self) -> tuple[int, ...]:
        return tuple(self.local_replica_base_port + i for i in range(self.max_count))

    @property
    def local_canary_port(self) -> int:
        """The canary's slot, just past the replica slots; its baseline's is the next."""
        return self.local_replica_base_port + self.max_count

    @property
    def local_baseline_port(self) -> int:
        return self.local_canary_port + 1


SETTINGS = settings_of(fields(EnvironmentSpec))
_TYPES = get_type_hints(EnvironmentSpec)


def defaults(stack: str = "staging") -> EnvironmentSpec:
    """The spec a stack gets with an empty stack file."""
    return _build({}, stack, source=f"defaults for {stack}")


def load_stack_file(path_or_stack: str | Path, root: Path = ROOT) -> EnvironmentSpec:
    """Read `Pulumi.<stack>.yaml` (a path, or just the stack name, looked up in `root`).

    Encrypted values (`pulumi config set --secret`) cannot be read here and stay None: only
    the Pulumi program sees them decrypted.
    """
    path = Path(path_or_stack)
    if path.suffix not in {".yaml", ".yml"}:
        path = root / f"Pulumi.{path_or_stack}.yaml"
    stack = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
    if not path.is_file():
        raise SpecError(f"{path.name}: no such stack file in {path.parent}")
    document = yaml.safe_load(path.read_text()) or {}
    config = (document.get("config") or {}) if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise SpecError(f"{path.name}: expected a mapping under 'config:'")
    return _build(config, stack, source=path.name)


def from_pulumi_config(config: Mapping[str, Any], stack: str) -> EnvironmentSpec:
    """Build the spec inside the Pulumi program from its whole config map (`ns:key` -> str)."""
    return _build(config, stack, source=f"Pulumi.{stack}.yaml")


def require_for_aws(spec: EnvironmentSpec) -> list[str]:
    """Settings the local target can do without but AWS cannot. Raises SpecError naming
    every missing key; returns the warnings for what a staging stack may leave out."""
    problems, warnings = [], []
    if spec.certificate_arn is None:
        problems.append(
            "drydock:certificateArn is required to provision AWS; allowed: an "
            "ACM certificate ARN (pulumi config set drydock:certificateArn arn:aws:acm:...)"
        )
    if spec.github_repository is None:
        problems.append(
            f"drydock:githubRepository is required to provision AWS: the "
            f"stack's deploy role trusts only that repository's GitHub environment "
            f"'{spec.stack}'; allowed: owner/name (pulumi config set drydock:githubRepository "
            f"acme/drydock --stack {spec.stack})"
        )
    if not spec.has_subscriber:
        missing = (
            "drydock:alarmEmails or drydock:alarmHttpsEndpoint: without a subscriber the "
            "alarms (SLOs, database, failed backups) page nobody; allowed: email addresses "
            f"(pulumi config set --path 'drydock:alarmEmails[0]' oncall@example.com --stack "
            f"{spec.stack}) or an https:// URL (pulumi config set --secret "
            f"drydock:alarmHttpsEndpoint https://... --stack {spec.stack})"
        )
        if spec.is_production:
            problems.append(f"{missing} (one is required in production)")
        else:
            warnings.append(f"{spec.source}: no alarm subscriber: {missing}")
    if spec.is_production and spec.dr_region is None:
        problems.append(
            "drydock:drRegion is required in production: recovery points and the backups "
            "bucket are copied to that second region, out of reach of a regional outage or "
            "of a mistake in this one; allowed: an AWS region other than "
            f"{spec.region} (pulumi config set drydock:drRegion eu-central-1 --stack "
            f"{spec.stack})"
        )
    if problems:
        raise SpecError("\n".join(f"{spec.source}: {p}" for p in problems))
    return warnings


def _build(config: Mapping[str, Any], stack: str, source: str) -> EnvironmentSpec:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", stack):
        raise SpecError(
            f"{source}: stack name {stack!r} is not valid; allowed: [a-z][a-z0-9-]*, "
            "at most 24 characters (it prefixes AWS resource names)"
        )
    values = {name: s.default(stack) for name, s in SETTINGS.values()}
    problems, sealed = [], set()
    for key, raw in config.items():
        if key.startswith("pulumi:") or key in _IGNORED_KEYS:
            continue
        if key not in SETTINGS:
            problems.append(unknown_key(key, SETTINGS))
            continue
        name, spec = SETTINGS[key]
        if is_encrypted(raw):
            if not spec.secret:
                problems.append(
                    f"{key} is encrypted but is not a secret setting; set it in "
                    f"plain text (pulumi config set {key} ...)"
                )
            values[name] = None
            sealed.add(key)
            continue
        try:
            values[name] = coerce(raw, _TYPES[name])
        except ValueError as exc:
            allowed = spec.allowed()
            problems.append(f"{key}={raw!r} {exc}" + (f"; {allowed}" if allowed else ""))
    if problems:
        # Report range problems of the well-typed values too: one round trip per fix is enough.
        problems += [p for n, s in SETTINGS.values() if (p := s.problem(values[n]))]
        raise SpecError("\n".join(f"{source}: {p}" for p in problems))
    return EnvironmentSpec(stack=stack, source=source, sealed=frozenset(sealed), **values)


def _field_problems(spec: EnvironmentSpec) -> Iterator[str]:
    for name, setting_ in SETTINGS.values():
        problem = setting_.problem(getattr(spec, name))
        if problem:
            yield problem


def _cross_problems(s: EnvironmentSpec) -> Iterator[str]:
    """Rules between settings; each names the keys involved and the allowed relation."""
    if not s.min_count <= s.desired_count <= s.max_count:
        yield (
            f"drydock:desiredCount={s.desired_count} must lie within drydock:minCount="
            f"{s.min_count} and drydock:maxCount={s.max_count}"
        )
    if s.cpu in FARGATE_MEMORY and s.memory not in FARGATE_MEMORY[s.cpu]:
        allowed = ", ".join(str(m) for m in FARGATE_MEMORY[s.cpu])
        yield f"drydock:memory={s.memory} does not fit drydock:cpu={s.cpu}; allowed: {allowed}"
    if s.health_check_timeout_seconds >= s.health_check_interval_seconds:
        yield (
            f"drydock:healthCheckTimeoutSeconds={s.health_check_timeout_seconds} must be "
            f"below drydock:healthCheckIntervalSeconds={s.health_check_interval_seconds}"
        )
    if s.alarm_datapoints_to_alarm > s.alarm_evaluation_periods:
        yield (
            f"drydock:alarmDatapointsToAlarm={s.alarm_datapoints_to_alarm} must not exceed "
            f"drydock:alarmEvaluationPeriods={s.alarm_evaluation_periods}"
        )
    if s.db_max_allocated_storage_gb < s.db_allocated_storage_gb:
        yield (
            f"drydock:dbMaxAllocatedStorageGb={s.db_max_allocated_storage_gb} must be at "
            f"least drydock:dbAllocatedStorageGb={s.db_allocated_storage_gb}"
        )
    if s.nat_gateways > s.availability_zones:
        yield (
            f"drydock:natGateways={s.nat_gateways} must not exceed "
            f"drydock:availabilityZones={s.availability_zones} (at most one per zone)"
        )
    if windows_overlap(s.backup_window, s.maintenance_window):
        yield (
            f"drydock:backupWindow={s.backup_window} overlaps drydock:maintenanceWindow="
            f"{s.maintenance_window}; RDS requires them apart"
        )
    try:
        ipaddress.ip_network(s.vpc_cidr)
    except ValueError as exc:
        yield f"drydock:vpcCidr={s.vpc_cidr} is not a network address ({exc})"
    minimum = env_class.MIN_LOG_RETENTION_DAYS[s.environment_class]
    if s.log_retention_days < minimum:
        allowed = ", ".join(str(d) for d in LOG_RETENTION_DAYS if d >= minimum)
        yield (
            f"drydock:logRetentionDays={s.log_retention_days} is below the {minimum} days a "
            f"{s.environment_class} stack keeps its logs; allowed: {allowed}"
        )
    if s.dr_region is not None and s.dr_region == s.region:
        yield (
            f"drydock:drRegion={s.dr_region} is the stack's own aws:region; allowed: "
            "another region, so that the copies survive this one"
        )
    if s.is_production and not s.deletion_protection:
        yield "drydock:deletionProtection=false is not allowed in production; allowed: true"
    if s.is_production and s.ecs_exec:
        yield "drydock:ecsExec=true is not allowed in production; allowed: false"
    steps = s.canary_steps
    if not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100:
        yield (
            f"drydock:canarySteps={list(steps)} must rise strictly and end at 100 (the last "
            "stage sends all traffic to the new release); allowed: e.g. [10, 50, 100]"
        )
    ports = [
        s.local_lb_port,
        s.local_postgres_port,
        s.local_agent_port,
        *s.local_replica_ports,
        s.local_canary_port,
        s.local_baseline_port,
    ]
    if len(set(ports)) != len(ports) or max(ports) > 65535:
        yield (
            "local ports collide: drydock:localLoadBalancerPort, localPostgresPort, "
            "localAgentPort and localReplicaBasePort..+maxCount+1 (the replica slots, then "
            "the canary's and its baseline's) must be distinct and <= 65535"
        )
