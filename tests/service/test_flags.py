from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from service import flags
from service.__main__ import main
from service.settings import SettingsError, load_settings
from tests.service.conftest import AppFactory, client_for

METRICS_TOKEN = "internal-token-for-tests-0123456789"
DEFAULTS = {flag.name: flag.default for flag in flags.REGISTRY}


@pytest.fixture(autouse=True)
def no_flag_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from the registry defaults, whatever the calling shell exports."""
    for name in os.environ:
        if name.startswith("FLAG_"):
            monkeypatch.delenv(name)


@pytest.mark.unit
def test_registry_has_the_required_flags() -> None:
    assert {"ORDERS_ENABLED", "REGISTRATION_OPEN"} <= set(DEFAULTS)
    assert all(flag.description for flag in flags.REGISTRY)
    assert flags.resolve_flags({}) == DEFAULTS


@pytest.mark.unit
@pytest.mark.parametrize(("raw", "expected"), [("false", False), (" TRUE ", True), ("0", False)])
def test_environment_overrides_the_default(raw: str, expected: bool) -> None:
    values = flags.resolve_flags({"FLAG_ORDERS_ENABLED": raw})
    assert values["ORDERS_ENABLED"] is expected
    assert values["REGISTRATION_OPEN"] is DEFAULTS["REGISTRATION_OPEN"]


@pytest.mark.unit
@pytest.mark.parametrize("raw", ["maybe", "", "2", "enabled"])
def test_a_bad_value_fails_startup_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("ENV", "test")
    monkeypatch.setenv("FLAG_ORDERS_ENABLED", raw)
    with pytest.raises(SettingsError, match="FLAG_ORDERS_ENABLED"):
        load_settings()


@pytest.mark.unit
def test_settings_carry_the_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "test")
    monkeypatch.setenv("FLAG_REGISTRATION_OPEN", "false")
    assert load_settings().flags == DEFAULTS | {"REGISTRATION_OPEN": False}


@pytest.mark.unit
def test_cli_lists_flags(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLAG_ORDERS_ENABLED", "false")
    assert main(["flags"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(flags.REGISTRY)
    orders = next(line for line in out if line.startswith("ORDERS_ENABLED "))
    assert "off" in orders
    assert "(overridden)" in orders
    registration = next(line for line in out if line.startswith("REGISTRATION_OPEN "))
    assert "on" in registration
    assert "(overridden)" not in registration

    assert main(["flags", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(DEFAULTS)
    assert rows["ORDERS_ENABLED"]["enabled"] is False
    assert rows["ORDERS_ENABLED"]["overridden"] is True
    assert rows["REGISTRATION_OPEN"]["overridden"] is False


@pytest.mark.unit
def test_cli_rejects_a_bad_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLAG_REGISTRATION_OPEN", "maybe")
    assert main(["flags"]) == 2
    assert "FLAG_REGISTRATION_OPEN" in capsys.readouterr().err


@pytest.mark.integration
def test_python_dash_m_service_flags() -> None:
    env = {**os.environ, "FLAG_ORDERS_FAULT_INJECTION": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "service", "flags", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = {row["name"]: row["enabled"] for row in json.loads(done.stdout)}
    assert rows == DEFAULTS | {"ORDERS_FAULT_INJECTION": True}


@pytest.mark.integration
async def test_flags_endpoint_requires_the_token_when_set(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAG_ORDERS_ENABLED", "false")
    app = await app_factory(metrics_token=METRICS_TOKEN)
    async with client_for(app) as client:
        missing = await client.get("/api/_internal/flags")
        wrong = await client.get(
            "/api/_internal/flags", headers={"Authorization": "Bearer not-the-token"}
        )
        assert (missing.status_code, wrong.status_code) == (401, 401)
        assert "flags" not in missing.json()
        ok = await client.get(
            "/api/_internal/flags", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
    assert ok.status_code == 200
    listed = {row["name"]: row for row in ok.json()["flags"]}
    assert listed["ORDERS_ENABLED"]["enabled"] is False
    assert listed["ORDERS_ENABLED"]["overridden"] is True
    assert listed["REGISTRATION_OPEN"]["enabled"] is True


@pytest.mark.integration
async def test_flags_endpoint_is_open_only_in_development_without_a_token(
    app_factory: AppFactory,
) -> None:
    closed = await app_factory(metrics_token="")  # ENV=test: outside development
    async with client_for(closed) as client:
        response = await client.get("/api/_internal/flags")
    assert response.status_code == 401
    assert "flags" not in response.json()
    laptop = await app_factory(env="development", metrics_token="")
    async with client_for(laptop) as client:
        response = await client.get("/api/_internal/flags")
    assert response.status_code == 200
    assert {row["name"] for row in response.json()["flags"]} == set(DEFAULTS)
