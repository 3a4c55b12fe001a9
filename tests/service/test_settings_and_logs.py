from __future__ import annotations

import json
import logging

import pytest

from service.logs import REDACTED, ConsoleFormatter, JsonFormatter, redact
from service.settings import SettingsError, load_settings

pytestmark = pytest.mark.unit

STRONG = "x" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ENV",
        "DATABASE_URL",
        "JWT_SECRET",
        "JWT_PREVIOUS_SECRET",
        "JWT_PREVIOUS_KID",
        "METRICS_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ENV": "production", "DATABASE_URL": "postgresql://h/db"}, "JWT_SECRET"),
        (
            {"ENV": "production", "DATABASE_URL": "postgresql://h/db", "JWT_SECRET": "short"},
            "JWT_SECRET",
        ),
        ({"ENV": "production", "JWT_SECRET": STRONG}, "DATABASE_URL"),
        ({"ENV": "staging", "JWT_SECRET": STRONG}, "DATABASE_URL"),
        (
            {"ENV": "production", "DATABASE_URL": "postgresql://h/db", "JWT_SECRET": STRONG},
            "METRICS_TOKEN",
        ),
        (
            {
                "ENV": "staging",
                "DATABASE_URL": "postgresql://h/db",
                "JWT_SECRET": STRONG,
                "METRICS_TOKEN": "short",
            },
            "METRICS_TOKEN",
        ),
        ({"DB_POOL_MAX": "0"}, "DB_POOL_MAX"),
        ({"REQUEST_TIMEOUT_MS": "fast"}, "REQUEST_TIMEOUT_MS"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"TRUSTED_PROXIES": "not-an-ip"}, "TRUSTED_PROXIES"),
        ({"JWT_PREVIOUS_SECRET": STRONG}, "JWT_PREVIOUS_KID"),
        ({"FLAG_REGISTRATION_OPEN": "sometimes"}, "FLAG_REGISTRATION_OPEN"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    assert needle in str(excinfo.value)


def test_production_with_strong_secret_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/db")
    monkeypatch.setenv("JWT_SECRET", STRONG)
    monkeypatch.setenv("METRICS_TOKEN", STRONG)
    settings = load_settings()
    assert settings.env == "production" and settings.jwt_secret == STRONG
    assert not settings.internal_routes_open


def test_test_env_starts_without_a_metrics_token_with_internal_routes_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENV", "test")
    assert not load_settings().internal_routes_open
    monkeypatch.setenv("ENV", "development")
    assert load_settings().internal_routes_open
    monkeypatch.setenv("METRICS_TOKEN", STRONG)
    assert not load_settings().internal_routes_open


def test_development_gets_a_default_signing_key() -> None:
    assert len(load_settings().jwt_secret) >= 32


def test_redaction_reaches_nested_dicts_and_lists() -> None:
    payload = {
        "user": {"email": "a@b.c", "Password": "p1", "profile": {"api_key": "k"}},
        "items": [{"refresh_TOKEN": "t1"}, {"note": "keep"}],
        "Authorization": "Bearer abc",
        "client_secret": "s",
    }
    cleaned = redact(payload)
    assert cleaned["user"]["Password"] == REDACTED
    assert cleaned["user"]["profile"]["api_key"] == REDACTED
    assert cleaned["items"][0]["refresh_TOKEN"] == REDACTED
    assert cleaned["items"][1]["note"] == "keep"
    assert cleaned["Authorization"] == REDACTED and cleaned["client_secret"] == REDACTED
    assert cleaned["user"]["email"] == "a@b.c"
    assert payload["user"]["Password"] == "p1", "redact must not mutate its input"


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "service.test", logging.INFO, __file__, 1, "hello %s", ("world",), None
    )
    record.__dict__.update(extra)
    return record


def test_json_formatter_writes_one_redacted_json_line() -> None:
    line = JsonFormatter().format(_record(requestId="r1", body={"password": "hunter2"}))
    entry = json.loads(line)
    assert entry["message"] == "hello world" and entry["requestId"] == "r1"
    assert entry["level"] == "info" and entry["time"].endswith("Z")
    assert "hunter2" not in line and entry["body"]["password"] == REDACTED


def test_console_formatter_is_readable_and_redacted() -> None:
    line = ConsoleFormatter().format(_record(token="abc"))
    assert "hello world" in line and "abc" not in line and REDACTED in line
