"""Property-based checks of the whole API against its own OpenAPI spec, over real HTTP.

Bounded examples per operation; every response must be a non-5xx that conforms to the spec
(status code, content type, headers and body schema)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from pipelines.host.ports import free_port
from service.security.tokens import TokenService
from service.settings import Settings
from tests.conftest import PgServer
from tests.service.conftest import TEST_SECRET

pytestmark = pytest.mark.integration

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "allow_header_conformance",
]


async def _seed(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        admin = await conn.fetchval(
            "INSERT INTO users (email, password_hash, role) VALUES "
            "('schema-admin@example.com', 'x', 'admin') RETURNING id"
        )
        await conn.executemany(
            "INSERT INTO items (sku, name, price_cents, stock) VALUES ($1, $2, 100, 1000)",
            [(f"SKU-{i}", f"Item {i}") for i in range(1, 6)],
        )
        return int(admin)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def api_server(pg_server: PgServer) -> Iterator[tuple[str, str]]:
    from service.migrate import upgrade

    url = asyncio.run(pg_server.create_database("schema"))
    upgrade(url)
    admin = asyncio.run(_seed(url))
    port = free_port()
    env = {
        **os.environ,
        "ENV": "test",
        "DATABASE_URL": url,
        "JWT_SECRET": TEST_SECRET,
        "RATE_LIMIT_API_PER_MINUTE": "1000000",
        "RATE_LIMIT_AUTH_PER_MINUTE": "1000000",
        "DRAIN_SECONDS": "0",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/_internal/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    token = TokenService(Settings(jwt_secret=TEST_SECRET)).issue_access(admin, "admin")
    try:
        yield base, token
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_api_conforms_to_its_spec(api_server: tuple[str, str], tmp_path: object) -> None:
    base, token = api_server
    result = subprocess.run(
        [
            str(os.path.join(os.path.dirname(sys.executable), "schemathesis")),
            "run",
            f"{base}/openapi.json",
            "--url",
            base,
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            "12",
            "--seed",
            "1234",
            "--header",
            f"Authorization: Bearer {token}",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary
    assert "passed" in summary.lower()
