"""The program the migrate task runs, against a real PostgreSQL 18 standing in for RDS: the
session's superuser plays the RDS master user."""

from __future__ import annotations

import asyncio
import json
import secrets
from urllib.parse import urlsplit

import asyncpg
import pytest

from pipelines.deploy.migrations.revisions import revisions
from pipelines.targets.aws.migrate_task import STATUS_MARKER, alembic_url, main
from service.migrate import MIGRATIONS, expected_head, serves_from
from service.security.passwords import hash_password, verify_password
from tests.conftest import PgServer

pytestmark = pytest.mark.integration


def test_alembic_gets_tls_as_asyncpg_names_it() -> None:
    app = "postgresql://drydock_app:p%40ss@db.example:5432/drydock?sslmode=require"
    assert alembic_url(app).endswith("/drydock?ssl=require")


def status_line(out: str) -> dict[str, object]:
    [line] = [line for line in out.splitlines() if line.startswith(STATUS_MARKER)]
    return dict(json.loads(line[len(STATUS_MARKER) :]))


async def as_app(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM users"))
    finally:
        await conn.close()


def _serves_from_head() -> str | None:
    """What the head records: the oldest head that serves on it, down its chain of expands."""
    served: str | None = None
    for rev in revisions(MIGRATIONS):
        served = serves_from(rev.phase, rev.revision, rev.down_revision, served)
    return served


def test_upgrade_makes_the_app_role_migrates_and_reports(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    database = asyncio.run(pg_server.create_database("awsmig"))
    name = urlsplit(database).path.lstrip("/")
    role, password = f"app_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    port = pg_server.cluster.port
    app_url = f"postgresql://{role}:{password}@127.0.0.1:{port}/{name}?sslmode=disable"
    environ = {
        "DATABASE_URL": app_url,
        "DB_APP_PASSWORD": password,
        "DB_ADMIN_USERNAME": pg_server.cluster.superuser,
        "DB_ADMIN_PASSWORD": pg_server.password,
    }
    assert main(["status"], environ) == 0
    before = status_line(capsys.readouterr().out)
    assert before["current"] is None and before["pending"]

    assert main(["upgrade"], environ) == 0
    after = status_line(capsys.readouterr().out)
    head = expected_head()
    assert after == {
        "current": head,
        "head": head,
        "pending": [],
        "serves_from": _serves_from_head(),
        "serves": True,
        "reason": "",
    }
    assert asyncio.run(as_app(app_url)) == 0  # the app role logs in and reads the tables

    hashed = hash_password("smoke-password")
    assert (
        main(["ensure-admin", "Smoke@Example.com"], {**environ, "ADMIN_PASSWORD_HASH": hashed}) == 0
    )
    assert "smoke@example.com: created" in capsys.readouterr().out
    assert asyncio.run(as_app(app_url)) == 1
    assert verify_password(hashed, "smoke-password")


def test_usage_and_missing_environment_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {}) == 2
    assert main(["status"], {}) == 2
    assert "missing environment: DATABASE_URL" in capsys.readouterr().err
