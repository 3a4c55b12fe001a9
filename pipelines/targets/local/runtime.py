"""What a replica is started with: settings from the spec, secrets from the store, flags from
the desired state. Secret values exist only in the replica's environment, never in a file
under the state directory (other than the encrypted store)."""

from __future__ import annotations

import os
import secrets as pysecrets
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from infra.spec import EnvironmentSpec
from pipelines.targets.local.layout import EnvLayout
from pipelines.targets.local.secrets import SecretDescription, SecretStore
from pipelines.targets.signing_keys import cutoff_after, iso

DATABASE = "drydock"
SUPERUSER = "drydock_admin"
OWNER_ROLE = "drydock_owner"
APP_ROLE = "drydock_app"


@dataclass(frozen=True)
class SecretNames:
    superuser: str = "postgres-superuser"
    owner: str = "postgres-owner"
    app: str = "postgres-app"
    jwt: str = "jwt-signing-key"
    metrics: str = "metrics-token"
    smoke_admin: str = "smoke-admin-password"
    admin: str = "admin-password"  # the first admin's, drydock:adminEmail


NAMES = SecretNames()
# Short names accepted by `invoke secrets.rotate --name`.
ALIASES = {"jwt": NAMES.jwt, "metrics": NAMES.metrics, "db-app": NAMES.app}


def open_store(layout: EnvLayout) -> SecretStore:
    return SecretStore(layout.secrets, key_path=layout.secrets_key)


def ensure_secrets(store: SecretStore) -> None:
    """Create every secret the environment needs, once."""
    for name in (NAMES.superuser, NAMES.owner, NAMES.app):
        store.ensure(name, lambda: pysecrets.token_urlsafe(32))
    store.ensure(NAMES.jwt, lambda: pysecrets.token_urlsafe(48))
    store.ensure(NAMES.metrics, lambda: pysecrets.token_urlsafe(32))


def signing_kid(env: str, version_id: str) -> str:
    """The key id a signing-key version is known by in the tokens it signs."""
    return f"{env}-{version_id}"


def previous_key_cutoff(jwt: SecretDescription) -> datetime | None:
    """Until when the previous signing key verifies access tokens: the cutoff its rotation
    recorded, or one access-token lifetime after a rotation that recorded none."""
    if jwt.previous is None:
        return None
    if jwt.previous.not_after:
        return datetime.fromisoformat(jwt.previous.not_after)
    return cutoff_after(datetime.fromisoformat(jwt.current.created_at))


def database_url(store: SecretStore, port: int, role: str = "app") -> str:
    user, secret = {
        "app": (APP_ROLE, NAMES.app),
        "owner": (OWNER_ROLE, NAMES.owner),
        "superuser": (SUPERUSER, NAMES.superuser),
    }[role]
    database = "postgres" if role == "superuser" else DATABASE
    return f"postgresql://{user}:{store.get(secret)}@127.0.0.1:{port}/{database}"


def replica_env(
    layout: EnvLayout, spec: EnvironmentSpec, store: SecretStore, flags: Mapping[str, bool]
) -> dict[str, str]:
    jwt = store.describe(NAMES.jwt)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "ENV": layout.name,
        "DATABASE_URL": database_url(store, spec.local_postgres_port),
        "JWT_SECRET": store.get(NAMES.jwt),
        "JWT_KID": signing_kid(layout.name, jwt.current.id),
        "METRICS_TOKEN": store.get(NAMES.metrics),
        "DRAIN_SECONDS": str(spec.local_drain_seconds),
        "RATE_LIMIT_BACKEND": spec.rate_limit_backend,
        "RATE_LIMIT_AUTH_PER_MINUTE": str(spec.local_rate_limit_auth_per_minute),
        "RATE_LIMIT_API_PER_MINUTE": str(spec.local_rate_limit_api_per_minute),
        "RATE_LIMIT_INTERNAL_PER_MINUTE": str(spec.local_rate_limit_internal_per_minute),
        "LOGIN_MAX_FAILURES": str(spec.lockout_failures),
        "LOGIN_LOCKOUT_S": str(spec.lockout_minutes * 60),
        "TRUSTED_PROXIES": "127.0.0.1,::1",
        "LOG_LEVEL": "INFO",
    }
    cutoff = previous_key_cutoff(jwt)
    # Past its cutoff the previous key is not handed to a replica at all.
    if jwt.previous is not None and cutoff is not None and cutoff > datetime.now(UTC):
        env["JWT_PREVIOUS_SECRET"] = store.get(NAMES.jwt, "previous")
        env["JWT_PREVIOUS_KID"] = signing_kid(layout.name, jwt.previous.id)
        env["JWT_PREVIOUS_NOT_AFTER"] = iso(cutoff)
    for name, enabled in flags.items():
        env[f"FLAG_{name}"] = "true" if enabled else "false"
    return env


def run_release_command(
    artifact: str | None, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`python -m service <args>` as a one-off process of a release (the working tree when
    `artifact` is None): what an ECS one-off task of the release's image is on AWS."""
    full_env = {**os.environ, **env}
    if artifact:
        full_env["PYTHONPATH"] = artifact
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=full_env,
        cwd=artifact,
        capture_output=True,
        text=True,
        check=False,
    )
