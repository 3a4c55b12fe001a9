"""The signing-key settings: the previous key's cutoff (JWT_PREVIOUS_NOT_AFTER) and the
keyring as one JSON object (JWT_KEYS, as the AWS secret holds it)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from service.settings import SettingsError, load_settings
from tests.service.settings_env import PRODUCTION, STRONG, clear_service_env, previous_key

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_service_env(monkeypatch)


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        (
            {"JWT_PREVIOUS_SECRET": STRONG + "-old", "JWT_PREVIOUS_KID": "k0"},
            "JWT_PREVIOUS_NOT_AFTER is required with JWT_PREVIOUS_SECRET",
        ),
        (
            {**previous_key(STRONG + "-old"), "JWT_PREVIOUS_NOT_AFTER": "2030-01-01T12:00:00"},
            "has no time zone",
        ),
        (
            {**previous_key(STRONG + "-old"), "JWT_PREVIOUS_NOT_AFTER": "soon"},
            "JWT_PREVIOUS_NOT_AFTER",
        ),
        (
            {**previous_key(STRONG + "-old"), "JWT_PREVIOUS_NOT_AFTER": "4102444800"},  # 2100
            "more than one access-token lifetime (ACCESS_TOKEN_TTL_S=900) from now",
        ),
        ({"JWT_KEYS": "{not json"}, 'JWT_KEYS must be a JSON object with string "kid"'),
        ({"JWT_KEYS": json.dumps({"kid": "k1"})}, 'string "kid" and "secret"'),
        (
            {"JWT_KEYS": json.dumps({"kid": "k1", "secret": STRONG, "extra": "x"})},
            "JWT_KEYS has unknown keys ['extra']",
        ),
        (
            {"JWT_KEYS": json.dumps({"kid": "k1", "secret": STRONG}), "JWT_SECRET": STRONG},
            "set JWT_KEYS or JWT_SECRET, not both",
        ),
    ],
)
def test_bad_signing_key_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], needle: str
) -> None:
    base = {k: v for k, v in PRODUCTION.items() if "JWT_KEYS" not in variables or k != "JWT_SECRET"}
    for key, value in {**base, **variables}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert needle in str(excinfo.value)
    assert STRONG not in str(excinfo.value)


def test_jwt_keys_carries_every_signing_key_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    cutoff = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=300)
    keyring = {
        "kid": "staging-2",
        "secret": STRONG,
        "previous_kid": "staging-1",
        "previous_secret": STRONG + "-old",
        "previous_not_after": cutoff.isoformat().replace("+00:00", "Z"),
    }
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/db")
    monkeypatch.setenv("METRICS_TOKEN", secrets.token_urlsafe(32))
    monkeypatch.setenv("JWT_KEYS", json.dumps(keyring))
    settings = load_settings()
    assert (settings.jwt_kid, settings.jwt_secret) == ("staging-2", STRONG)
    assert (settings.jwt_previous_kid, settings.jwt_previous_secret) == (
        "staging-1",
        STRONG + "-old",
    )
    assert settings.jwt_previous_not_after == cutoff
    no_previous = {**keyring, "previous_kid": "", "previous_secret": "", "previous_not_after": ""}
    monkeypatch.setenv("JWT_KEYS", json.dumps(no_previous))
    assert load_settings().jwt_previous_secret == ""
