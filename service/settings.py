"""Every runtime setting, read once from the environment (12-factor) and validated.

`ENV=production` refuses weak or missing secrets and names the variable at fault. ENV may be
left unset only in a development checkout (`service/source_tree.py`), so that a release never
falls back to development and its signing key. Staging and production refuse the development
key and any secret written in the project's source.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.flags import FlagError, resolve_flags

MIN_SECRET_BYTES = 32
DEV_JWT_SECRET = "development-only-signing-key-change-me-0000"  # noqa: S105 - refused outside development
ENVIRONMENTS = ("development", "test", "staging", "production")
# The settings whose values must never be found in the project's source (staging, production).
SOURCE_CHECKED = ("jwt_secret", "jwt_previous_secret", "metrics_token")
# How far ahead of this host's clock a previous key's cutoff may lie beyond one access-token
# lifetime: the rotation that recorded it may have run on a host whose clock is ahead.
CUTOFF_CLOCK_SLACK_S = 60
# The keys of JWT_KEYS, the signing keys as one JSON object (how the AWS secret holds them).
KEYRING_FIELDS = {
    "kid": "jwt_kid",
    "secret": "jwt_secret",
    "previous_kid": "jwt_previous_kid",
    "previous_secret": "jwt_previous_secret",
    "previous_not_after": "jwt_previous_not_after",
}


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Unset: development in a development checkout, refused anywhere else (_env_when_unset).
    env: Literal["development", "test", "staging", "production"] = "development"
    database_url: str = ""
    db_pool_min: int = Field(2, ge=1, le=100)
    db_pool_max: int = Field(10, ge=1, le=200)
    db_statement_timeout_ms: int = Field(5000, ge=100, le=600_000)
    db_ready_timeout_s: float = Field(1.0, gt=0, le=30)

    jwt_secret: str = ""
    jwt_kid: str = "k1"
    jwt_previous_secret: str = ""
    jwt_previous_kid: str = ""
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "drydock"
    jwt_audience: str = "drydock-api"
    access_token_ttl_s: int = Field(15 * 60, ge=60, le=24 * 3600)
    refresh_token_ttl_s: int = Field(7 * 24 * 3600, ge=900, le=90 * 24 * 3600)

    # Sessions and login abuse: an absolute lifetime per login that refresh rotations never
    # extend (days, fractions allowed: 0.5 is ASVS level 2's 12 hours), and a cap on failed
    # logins per source address across all accounts, so one address cannot keep many
    # accounts locked. The window stays within an hour, because housekeeping deletes
    # rate-limit windows older than that.
    session_max_days: float = 30
    login_source_max_failures: int = Field(20, ge=1, le=100_000)
    login_source_window_s: int = Field(15 * 60, ge=1, le=3600)

    login_max_failures: int = Field(5, ge=1, le=100)
    login_lockout_s: int = Field(15 * 60, ge=1, le=24 * 3600)
    rate_limit_backend: Literal["memory", "postgres"] = "memory"
    rate_limit_auth_per_minute: int = Field(30, ge=1)
    rate_limit_api_per_minute: int = Field(1200, ge=1)
    trusted_proxies: str = "127.0.0.1,::1"

    request_timeout_ms: int = Field(10_000, ge=10, le=600_000)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024)
    drain_seconds: float = Field(5.0, ge=0, le=600)
    heartbeat_interval_s: float = Field(2.0, gt=0, le=3600)
    housekeeping_interval_s: float = Field(600.0, ge=0, le=86_400)  # 0 disables the sweep
    metrics_token: str = ""
    internal_token: str = ""
    access_log: bool = True
    log_level: str = "INFO"
    instance_id: str = Field(default_factory=lambda: f"{os.uname().nodename}:{os.getpid()}")

    # -- signing-key rotation and safe defaults (runbook section 12) --------------------------
    # After this instant (a Unix time, or an ISO 8601 instant with its offset) tokens signed
    # with the previous key are refused; the rotation that kept the key recorded it. Required
    # with JWT_PREVIOUS_SECRET, and at most one access-token lifetime ahead.
    jwt_previous_not_after: datetime | None = None
    # The signing keys as one JSON object (kid, secret, previous_kid, previous_secret,
    # previous_not_after): how the AWS secret holds them, injected whole by ECS. Set either
    # this or JWT_SECRET, JWT_KID and the JWT_PREVIOUS_* variables.
    jwt_keys: str = ""

    @model_validator(mode="before")
    @classmethod
    def _env_when_unset(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("env"):
            return {**data, "env": _default_env()}
        return data

    @model_validator(mode="before")
    @classmethod
    def _keyring(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("jwt_keys"):
            return {**data, **_unpack_keyring(data)}
        return data

    @field_validator("jwt_previous_not_after", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("session_max_days")
    @classmethod
    def _session_lifetime(cls, value: float) -> float:
        if not 1 / 24 <= value <= 365:
            raise ValueError(
                f"SESSION_MAX_DAYS must be from 0.042 (one hour) to 365 days, not {value:g}; "
                "0.5 is 12 hours"
            )
        return value

    # Edge bounds (runbook sections 5 and 13). /api/_internal is limited per source like the
    # other route classes; the load balancer's own health checks are exempt (middleware.py).
    # A request waits for a pooled connection at most DB_ACQUIRE_TIMEOUT_MS, by default half
    # of REQUEST_TIMEOUT_MS, so that a busy pool answers 503 with Retry-After in time.
    rate_limit_internal_per_minute: int = Field(120, ge=1)
    db_acquire_timeout_ms: int | None = Field(None, ge=5, le=600_000)

    @model_validator(mode="after")
    def _acquire_within_request(self) -> Settings:
        if self.db_acquire_timeout_ms is None:
            self.db_acquire_timeout_ms = self.request_timeout_ms // 2
        elif self.db_acquire_timeout_ms >= self.request_timeout_ms:
            raise ValueError(
                f"DB_ACQUIRE_TIMEOUT_MS={self.db_acquire_timeout_ms} must be below "
                f"REQUEST_TIMEOUT_MS={self.request_timeout_ms}, so that a request still answers "
                "503 with Retry-After when no connection comes free; lower it, or leave it "
                "unset for half the request timeout"
            )
        return self

    @property
    def db_acquire_timeout_s(self) -> float:
        return (self.db_acquire_timeout_ms or self.request_timeout_ms // 2) / 1000

    # -- breached passwords (ASVS 2.1.7) -------------------------------------------------------
    # Have I Been Pwned's Pwned Passwords list, SHA-1 form sorted by hash, searched in place
    # (service/security/breached.py). Unset: only the bundled list of common ones is checked.
    breached_passwords_file: str = ""

    @field_validator("breached_passwords_file")
    @classmethod
    def _breached_list_readable(cls, value: str) -> str:
        if value:
            from service.security.breached import BreachedPasswords

            try:
                BreachedPasswords(Path(value))
            except OSError as exc:
                raise ValueError(f"BREACHED_PASSWORDS_FILE cannot be read: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"BREACHED_PASSWORDS_FILE: {exc}") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        return level

    @model_validator(mode="after")
    def _production_requirements(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if self.env in {"staging", "production"}:
            if not self.database_url:
                raise ValueError(f"DATABASE_URL is required when ENV={self.env}")
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"JWT_SECRET is missing or weaker than {MIN_SECRET_BYTES} bytes "
                    f'(ENV={self.env}); generate one with `python -c "import secrets; '
                    f'print(secrets.token_urlsafe(48))"`'
                )
            if len(self.metrics_token.encode()) < MIN_SECRET_BYTES:
                raise ValueError(
                    f"METRICS_TOKEN is missing or shorter than {MIN_SECRET_BYTES} bytes "
                    f"(ENV={self.env}); it guards /api/_internal/metrics, /flags and the "
                    "readiness details. The targets generate it in their secret store; by "
                    'hand: `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
                )
        elif not self.jwt_secret:
            self.jwt_secret = DEV_JWT_SECRET
        if self.refresh_token_ttl_s > self.session_max_days * 86_400:
            raise ValueError(
                f"REFRESH_TOKEN_TTL_S ({self.refresh_token_ttl_s}) is longer than "
                f"SESSION_MAX_DAYS ({self.session_max_days:g} days): a refresh token cannot "
                "outlive its session; lower the first or raise the second"
            )
        if self.jwt_previous_secret and not self.jwt_previous_kid:
            raise ValueError("JWT_PREVIOUS_KID is required when JWT_PREVIOUS_SECRET is set")
        if self.jwt_previous_kid and self.jwt_previous_kid == self.jwt_kid:
            raise ValueError("JWT_PREVIOUS_KID must differ from JWT_KID")
        self.proxy_networks  # noqa: B018 - validate early
        return self

    @model_validator(mode="after")
    def _previous_key_cutoff(self) -> Settings:
        cutoff = self.jwt_previous_not_after
        if self.jwt_previous_secret and cutoff is None:
            raise ValueError(
                "JWT_PREVIOUS_NOT_AFTER is required with JWT_PREVIOUS_SECRET: the previous key "
                "verifies tokens only until then. Rotate with `invoke secrets.rotate`, which "
                "records it (runbook section 12)"
            )
        if cutoff is None:
            return self
        if cutoff.tzinfo is None:
            raise ValueError(
                f"JWT_PREVIOUS_NOT_AFTER={cutoff.isoformat()} has no time zone; give a Unix "
                "time or an ISO 8601 instant with its offset, e.g. 2030-01-01T12:00:00Z"
            )
        latest = time.time() + self.access_token_ttl_s + CUTOFF_CLOCK_SLACK_S
        if cutoff.timestamp() > latest:
            raise ValueError(
                f"JWT_PREVIOUS_NOT_AFTER={cutoff.isoformat()} is more than one access-token "
                f"lifetime (ACCESS_TOKEN_TTL_S={self.access_token_ttl_s}) from now; a previous "
                "key is kept at most that long after a rotation"
            )
        return self

    @model_validator(mode="after")
    def _no_public_secrets(self) -> Settings:
        """Staging and production refuse the development key and any secret that is in the
        project's own source, where everyone who reads the repository finds it."""
        if self.env not in {"staging", "production"}:
            return self
        for name in ("jwt_secret", "jwt_previous_secret"):
            if getattr(self, name) == DEV_JWT_SECRET:
                raise ValueError(
                    f"{name.upper()} is the development signing key (ENV={self.env}); set a "
                    'generated one: python -c "import secrets; print(secrets.token_urlsafe(48))"'
                )
        from service.source_tree import found_in_source

        found = found_in_source({name: getattr(self, name) for name in SOURCE_CHECKED})
        if found:
            name, path = next(iter(found.items()))
            raise ValueError(
                f"{name.upper()} appears in the project's source ({path}), so it is no secret "
                f"(ENV={self.env}); generate a new value and keep it in the secret store"
            )
        return self

    @cached_property
    def proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        try:
            return tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in self.trusted_proxies.split(",")
                if part.strip()
            )
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {exc}") from None

    @cached_property
    def flags(self) -> dict[str, bool]:
        return resolve_flags(os.environ)

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    # Internal routes (/api/_internal). Outside development they are closed unless the caller
    # presents METRICS_TOKEN. Staging and production refuse to start without one (above);
    # ENV=test starts without one, with the routes closed to everyone: tests run the
    # production code path, and a missing token can only close a route, never open it.
    @property
    def internal_routes_open(self) -> bool:
        """True only in development without a token: a laptop's metrics need no secret."""
        return self.is_development and not self.metrics_token


def _default_env() -> str:
    """ENV when it is not set: development, but only in a development checkout."""
    from service.source_tree import PACKAGE_DIR, development_checkout

    if development_checkout() is None:
        raise ValueError(
            f"ENV is not set, and {PACKAGE_DIR} is not in a development checkout (a git work "
            f"tree whose pyproject.toml names drydock); set ENV to one of "
            f"{', '.join(ENVIRONMENTS)} (production for a release)"
        )
    return "development"


def _unpack_keyring(data: dict[str, Any]) -> dict[str, Any]:
    """JWT_KEYS as the separate settings it replaces; never echoes a value."""
    clashing = sorted(
        field.upper() for field in KEYRING_FIELDS.values() if data.get(field) not in (None, "")
    )
    if clashing:
        raise ValueError(f"set JWT_KEYS or {', '.join(clashing)}, not both")
    try:
        keyring = json.loads(data["jwt_keys"])
    except (TypeError, ValueError):
        keyring = None
    if not isinstance(keyring, dict) or not all(
        isinstance(keyring.get(key), str) and keyring[key] for key in ("kid", "secret")
    ):
        raise ValueError(
            'JWT_KEYS must be a JSON object with string "kid" and "secret" (and optionally '
            '"previous_kid", "previous_secret", "previous_not_after")'
        )
    unknown = sorted(set(keyring) - set(KEYRING_FIELDS))
    if unknown:
        raise ValueError(f"JWT_KEYS has unknown keys {unknown}; known: {sorted(KEYRING_FIELDS)}")
    return {KEYRING_FIELDS[key]: value for key, value in keyring.items() if value not in ("", None)}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; raise SettingsError naming the culprit."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        settings.flags  # noqa: B018 - a bad FLAG_* value must fail startup
    except FlagError as exc:
        raise SettingsError(str(exc)) from None
    except ValueError as exc:
        raise SettingsError(_describe(exc)) from None
    return settings


def _describe(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        where = ".".join(str(p) for p in err.get("loc", ())).upper()
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "invalid settings: " + "; ".join(parts)
