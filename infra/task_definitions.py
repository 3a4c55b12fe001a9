"""Container definitions for the service and the one-off migration task.

Secrets reach containers only through `secrets` (`valueFrom` ARNs, resolved by ECS at task
start); `environment` carries nothing sensitive. The variable names are the ones
`service/settings.py` reads.
"""

from __future__ import annotations

from typing import Any

import pulumi

from infra.names import Names
from infra.spec import EnvironmentSpec


def value_from(secret_arn: pulumi.Input[str], json_key: str) -> pulumi.Output[str]:
    """An ECS `valueFrom` reference to one key of a JSON secret (current version)."""
    return pulumi.Output.concat(secret_arn, ":", json_key, "::")


def app_environment(spec: EnvironmentSpec) -> list[dict[str, str]]:
    values = {
        "ENV": "production" if spec.is_production else "staging",
        "PORT": str(spec.container_port),
        "LOG_LEVEL": "INFO",
        "LOGIN_MAX_FAILURES": str(spec.lockout_failures),
        "LOGIN_LOCKOUT_S": str(spec.lockout_minutes * 60),
        "RATE_LIMIT_BACKEND": spec.rate_limit_backend,
        "RATE_LIMIT_AUTH_PER_MINUTE": str(spec.rate_limit_auth_per_minute),
        "RATE_LIMIT_API_PER_MINUTE": str(spec.rate_limit_api_per_minute),
        "RATE_LIMIT_INTERNAL_PER_MINUTE": str(spec.rate_limit_internal_per_minute),
        "DRAIN_SECONDS": str(spec.drain_seconds),
        # Requests arrive from the ALB inside the VPC; trust its X-Forwarded-For.
        "TRUSTED_PROXIES": spec.vpc_cidr,
    }
    return [{"name": k, "value": v} for k, v in values.items()]


def _logging(spec: EnvironmentSpec, log_group: pulumi.Input[str], prefix: str) -> dict[str, Any]:
    return {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": log_group,
            "awslogs-region": spec.region,
            "awslogs-stream-prefix": prefix,
            # Never block the app on a slow log pipe; drop instead (bounded buffer).
            "mode": "non-blocking",
            "max-buffer-size": "25m",
        },
    }


def _hardened(spec: EnvironmentSpec) -> dict[str, Any]:
    return {
        "user": spec.container_user,
        "readonlyRootFilesystem": True,
        # The root filesystem is read-only; /tmp is a task-private scratch volume.
        "mountPoints": [
            {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}  # noqa: S108
        ],
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
    }


def app_container(
    spec: EnvironmentSpec,
    image: str,
    log_group: pulumi.Input[str],
    app_db_arn: pulumi.Input[str],
    jwt_arn: pulumi.Input[str],
    metrics_arn: pulumi.Input[str],
) -> dict[str, Any]:
    port = spec.container_port
    probe = (
        f"import urllib.request; urllib.request.urlopen("
        f"'http://127.0.0.1:{port}{spec.liveness_path}', "
        f"timeout={spec.health_check_timeout_seconds})"
    )
    return {
        "name": Names(spec.stack).container,
        "image": image,
        "essential": True,
        "portMappings": [{"containerPort": port, "hostPort": port, "protocol": "tcp"}],
        "environment": app_environment(spec),
        "secrets": [
            {"name": "DATABASE_URL", "valueFrom": value_from(app_db_arn, "url")},
            # The whole keyring (the secret's ARN alone: its current JSON document): the key
            # and, after a routine rotation, the previous one with its cutoff (runbook section
            # 12). A JSON key that may be absent cannot be referenced on its own: ECS refuses
            # to start a task whose secret lacks a referenced key.
            {"name": "JWT_KEYS", "valueFrom": jwt_arn},
            {"name": "METRICS_TOKEN", "valueFrom": value_from(metrics_arn, "token")},
        ],
        "healthCheck": {
            "command": ["CMD", "python", "-c", probe],
            "interval": spec.health_check_interval_seconds,
            "timeout": spec.health_check_timeout_seconds,
            "retries": spec.unhealthy_threshold,
            "startPeriod": spec.health_check_grace_period_seconds,
        },
        # ECS deregisters from the ALB first, then sends SIGTERM; the app drains in-flight work.
        "stopTimeout": spec.drain_seconds + 10,
        "logConfiguration": _logging(spec, log_group, "api"),
        **_hardened(spec),
    }


def migrate_container(
    spec: EnvironmentSpec,
    image: str,
    log_group: pulumi.Input[str],
    app_db_arn: pulumi.Input[str],
    master_secret_arn: pulumi.Input[str],
) -> dict[str, Any]:
    """The one-off task that ensures the app role and runs migrations; the caller sets the
    command. Only this task sees the master credentials."""
    return {
        "name": "migrate",
        "image": image,
        "essential": True,
        "environment": app_environment(spec),
        "secrets": [
            {"name": "DATABASE_URL", "valueFrom": value_from(app_db_arn, "url")},
            {"name": "DB_APP_PASSWORD", "valueFrom": value_from(app_db_arn, "password")},
            {"name": "DB_ADMIN_USERNAME", "valueFrom": value_from(master_secret_arn, "username")},
            {"name": "DB_ADMIN_PASSWORD", "valueFrom": value_from(master_secret_arn, "password")},
        ],
        "logConfiguration": _logging(spec, log_group, "migrate"),
        **_hardened(spec),
    }
