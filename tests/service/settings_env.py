"""The environment a settings test starts from: none of the service's own variables, and
one production configuration that passes every check, to vary one setting at a time."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta

import pytest

STRONG = secrets.token_urlsafe(48)  # generated: in no file anywhere
PRODUCTION = {
    "ENV": "production",
    "DATABASE_URL": "postgresql://h/db",
    "JWT_SECRET": STRONG,
    "METRICS_TOKEN": secrets.token_urlsafe(32),
}


def clear_service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset whatever the running shell or an earlier test left for the settings to read."""
    for name in list(os.environ):
        if name.startswith(("JWT_", "FLAG_")) or name in {"ENV", "DATABASE_URL", "METRICS_TOKEN"}:
            monkeypatch.delenv(name)


def previous_key(value: str) -> dict[str, str]:
    """The previous signing key's settings, still inside its cutoff."""
    cutoff = datetime.now(UTC) + timedelta(seconds=60)
    return {
        "JWT_PREVIOUS_SECRET": value,
        "JWT_PREVIOUS_KID": "k0",
        "JWT_PREVIOUS_NOT_AFTER": cutoff.isoformat(),
    }
