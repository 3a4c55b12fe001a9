"""The real server process: startup refusal, SIGTERM drain, exit code."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import httpx
import pytest

from pipelines.host.ports import free_port

pytestmark = pytest.mark.integration

# Generated per run: production refuses a key that is written in the repository.
SIGNING_KEY = secrets.token_urlsafe(48)
# Generated, not written here: production refuses a secret that appears in the repository.
METRICS_TOKEN = secrets.token_urlsafe(32)
INTERNAL = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLAG_", "JWT_"))}
    env.update(
        ENV="production",
        DATABASE_URL=database_url,
        JWT_SECRET=SIGNING_KEY,
        METRICS_TOKEN=METRICS_TOKEN,
        HEARTBEAT_INTERVAL_S="0.5",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def wait_for(
    url: str, status: int, timeout: float = 15, headers: dict[str, str] | None = None
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1, headers=headers)
            if response.status_code == status:
                return response
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {status}; last: {last}")


def test_sigterm_drains_then_exits_zero(fresh_database: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=server_env(fresh_database, DRAIN_SECONDS="1.5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/_internal/ready", 200)
        proc.send_signal(signal.SIGTERM)
        unready = wait_for(f"{base}/api/_internal/ready", 503, timeout=1, headers=INTERNAL)
        assert unready.json()["checks"]["draining"]["ok"] is False
        # Still serving during the drain window.
        assert httpx.get(f"{base}/api/_internal/health", timeout=1).status_code == 200
        assert proc.poll() is None
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
    assert "draining" in output
    assert '"level":"error"' not in output
    access = [json.loads(line) for line in output.splitlines() if '"service.access"' in line]
    assert access, "JSON access records are written straight to stdout"
    assert {"requestId", "traceId", "route", "status", "duration_ms"} <= set(access[0])


def test_production_refuses_weak_secret_and_names_it(fresh_database: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", str(free_port())],
        env=server_env(fresh_database, JWT_SECRET="short"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr


def test_production_refuses_to_start_without_a_metrics_token(fresh_database: str) -> None:
    env = server_env(fresh_database)
    env.pop("METRICS_TOKEN")
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "METRICS_TOKEN is missing" in result.stderr


def test_production_refuses_missing_database_url() -> None:
    env = server_env("")
    env.pop("DATABASE_URL")
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr


def test_bad_flag_value_refuses_start(fresh_database: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve"],
        env=server_env(fresh_database, FLAG_ORDERS_ENABLED="maybe"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "FLAG_ORDERS_ENABLED" in result.stderr
