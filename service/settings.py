"""Every runtime setting, read once from the environment (12-factor) and validated.

`ENV=production` refuses weak or missing secrets and names the variable at fault.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.flags import FlagError, resolve_flags

MIN_SECRET_BYTES = 32
DEV_JWT_SECRET = "development-only-signing-key-change-me-0000"  # noqa: S105 - refused outside development


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

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
    refresh_token_ttl_s: int = Field(7 * 24 * 3600, ge=3600, le=90 * 24 * 3600)

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
        if self.jwt_previous_secret and not self.jwt_previous_kid:
            raise ValueError("JWT_PREVIOUS_KID is required when JWT_PREVIOUS_SECRET is set")
        if self.jwt_previous_kid and self.jwt_previous_kid == self.jwt_kid:
            raise ValueError("JWT_PREVIOUS_KID must differ from JWT_KID")
        self.proxy_networks  # noqa: B018 - validate early
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
