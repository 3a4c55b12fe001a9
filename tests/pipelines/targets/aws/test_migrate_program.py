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


async def users(url: str) -> dict[str, tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT email, role, password_hash FROM users")
    finally:
        await conn.close()
    return {r["email"]: (r["role"], r["password_hash"]) for r in rows}


def migrated(pg_server: PgServer, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """A database migrated by the program; the environment the task would have."""
    database = asyncio.run(pg_server.create_database("awsadm"))
    name = urlsplit(database).path.lstrip("/")
    role, password = f"app_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    environ = {
        "DATABASE_URL": f"postgresql://{role}:{password}@127.0.0.1:{pg_server.cluster.port}/"
        f"{name}?sslmode=disable",
        "DB_APP_PASSWORD": password,
        "DB_ADMIN_USERNAME": pg_server.cluster.superuser,
        "DB_ADMIN_PASSWORD": pg_server.password,
    }
    assert main(["upgrade"], environ) == 0
    capsys.readouterr()
    return environ


def test_upgrade_makes_the_first_admin_once_and_never_resets_it(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = migrated(pg_server, capsys)
    first = {"ADMIN_EMAIL": "Root@Example.com", "ADMIN_PASSWORD_HASH": hash_password("one")}
    assert main(["upgrade"], {**environ, **first}) == 0
    assert "root@example.com: created" in capsys.readouterr().out
    again = {**first, "ADMIN_PASSWORD_HASH": hash_password("two")}  # the next deploy's hash
    assert main(["upgrade"], {**environ, **again}) == 0
    out = capsys.readouterr().out
    assert "root@example.com: already an admin; left as it is" in out
    assert status_line(out)["current"] == expected_head()
    role, stored = asyncio.run(users(environ["DATABASE_URL"]))["root@example.com"]
    assert role == "admin" and verify_password(stored, "one")


def test_upgrade_refuses_to_promote_an_address_registered_first(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = migrated(pg_server, capsys)

    async def register() -> None:
        conn = await asyncpg.connect(environ["DATABASE_URL"])
        try:
            await conn.execute(
                "INSERT INTO users (email, password_hash) VALUES ('root@example.com', $1)",
                hash_password("the attacker's"),
            )
        finally:
            await conn.close()

    asyncio.run(register())
    first = {"ADMIN_EMAIL": "root@example.com", "ADMIN_PASSWORD_HASH": hash_password("one")}
    assert main(["upgrade"], {**environ, **first}) == 3
    captured = capsys.readouterr()
    assert "refusing to make root@example.com an admin" in captured.err
    assert STATUS_MARKER in captured.out  # the migration itself went through
    role, stored = asyncio.run(users(environ["DATABASE_URL"]))["root@example.com"]
    assert role == "user" and verify_password(stored, "the attacker's")
    # The smoke account is the pipeline's: an existing admin gets the stored password again,
    # a registered address is refused the same way.
    assert main(["ensure-admin", "root@example.com"], {**environ, **first}) == 3
    smoke = {"ADMIN_PASSWORD_HASH": hash_password("new")}
    assert main(["ensure-admin", "smoke@example.com"], {**environ, **smoke}) == 0
    assert main(["ensure-admin", "smoke@example.com"], {**environ, **smoke}) == 0
    assert "smoke@example.com: already an admin; its password set" in capsys.readouterr().out
