from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.logs import REDACTED, ConsoleFormatter, JsonFormatter, redact
from service.security.tokens import TokenService
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
        ({"SESSION_MAX_DAYS": "0"}, "SESSION_MAX_DAYS"),
        ({"SESSION_MAX_DAYS": "forever"}, "SESSION_MAX_DAYS"),
        ({"SESSION_MAX_DAYS": "0.01"}, "SESSION_MAX_DAYS must be from 0.042 (one hour)"),
        ({"SESSION_MAX_DAYS": "3"}, "REFRESH_TOKEN_TTL_S (604800) is longer than SESSION_MAX"),
        ({"LOGIN_SOURCE_WINDOW_S": "7200"}, "LOGIN_SOURCE_WINDOW_S"),
        ({"LOGIN_SOURCE_MAX_FAILURES": "0"}, "LOGIN_SOURCE_MAX_FAILURES"),
        ({"REQUEST_TIMEOUT_MS": "200", "DB_ACQUIRE_TIMEOUT_MS": "200"}, "DB_ACQUIRE_TIMEOUT_MS"),
        ({"DB_ACQUIRE_TIMEOUT_MS": "0"}, "DB_ACQUIRE_TIMEOUT_MS"),
        ({"RATE_LIMIT_INTERNAL_PER_MINUTE": "0"}, "RATE_LIMIT_INTERNAL_PER_MINUTE"),
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


def test_pool_acquire_waits_half_the_request_timeout_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUEST_TIMEOUT_MS", "3000")
    assert load_settings().db_acquire_timeout_s == 1.5
    monkeypatch.setenv("DB_ACQUIRE_TIMEOUT_MS", "250")
    assert load_settings().db_acquire_timeout_s == 0.25


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


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger writing through both formatters, JSON and console."""
    logger = logging.getLogger("service.test.scrub")
    streams = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(stream) for stream in streams]
    handlers[0].setFormatter(JsonFormatter())
    handlers[1].setFormatter(ConsoleFormatter())
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield logger, *streams
    for handler in handlers:
        logger.removeHandler(handler)


def test_a_logged_exception_shows_neither_the_jwt_nor_the_password(
    captured: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, json_out, console_out = captured
    jwt = TokenService(load_settings(jwt_secret=STRONG)).issue_access(7, "admin")
    header, payload, signature = jwt.split(".")
    try:
        raise RuntimeError(
            f"login failed for {{'email': 'a@example.com', 'password': 'hunter2-quoted'}} "
            f"with {jwt}; dsn postgresql://app:db-s3cret@db:5432/app; password=hunter2-bare"
        )
    except RuntimeError:
        logger.exception(
            "request failed: %s, Authorization: Bearer %s",
            "password=hunter2-arg",
            jwt,
            extra={"detail": f'{{"password": "hunter2-field", "token": "{jwt}"}}'},
        )
    logger.info("settings %(api_key)s %(note)s", {"api_key": "hunter2-mapped", "note": "kept"})
    for output in (json_out.getvalue(), console_out.getvalue()):
        for secret in (header, payload, signature, "hunter2", "db-s3cret"):
            assert secret not in output, (secret, output)
        assert "RuntimeError: login failed" in output and "a@example.com" in output
        assert "postgresql://app:[REDACTED]@db:5432/app" in output
        assert "kept" in output
    entry = json.loads(json_out.getvalue().splitlines()[0])
    assert entry["message"] == (
        f"request failed: password={REDACTED}, Authorization: Bearer {REDACTED}"
    )
    assert "password=[REDACTED]" in entry["exception"]
