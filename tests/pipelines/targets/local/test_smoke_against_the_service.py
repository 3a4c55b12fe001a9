"""The deploy's smoke suite against the real service: every check passes, the internal routes
among them, and a service that shows its metrics to anyone fails that check."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pipelines.traffic.smoke import run_smoke
from service.provision import ensure_admin
from service.security.passwords import hash_password

from .served_app import ServedApp

pytestmark = pytest.mark.integration

ADMIN = ("smoke-admin@example.com", "a smoke admin password of some length")


def with_admin(database_url: str) -> None:
    async def make() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await ensure_admin(conn, ADMIN[0], hash_password(ADMIN[1]))
        finally:
            await conn.close()

    asyncio.run(make())


def test_every_check_passes_on_a_service_with_its_internal_routes_closed(
    fresh_database: str,
) -> None:
    with_admin(fresh_database)
    with ServedApp(fresh_database) as served:
        report = run_smoke(served.url, *ADMIN)
    assert report.ok, report.summary()
    checks = {check.name: check for check in report.checks}
    assert checks["internal routes"].detail.startswith("metrics and flags refused")


def test_a_service_that_shows_its_metrics_to_anyone_fails_the_smoke(fresh_database: str) -> None:
    with_admin(fresh_database)
    with ServedApp(fresh_database, env="development", metrics_token="") as served:
        report = run_smoke(served.url, *ADMIN)
    assert not report.ok
    failed = next(check for check in report.checks if not check.ok)
    assert failed.name == "internal routes"
    assert "/api/_internal/metrics without a token: expected 401" in failed.detail
