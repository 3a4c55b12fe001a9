"""`python -m service migrate` with admin credentials: the AWS migrate task's path."""

from __future__ import annotations

import asyncpg
import pytest

from service.__main__ import main
from tests.conftest import SUPERUSER_PASSWORD, PgServer

pytestmark = pytest.mark.integration


async def test_migrate_with_admin_credentials_provisions_a_dml_only_app_role(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin_url = await pg_server.create_database("prov")
    database = admin_url.rsplit("/", 1)[1]
    port = pg_server.cluster.port
    app_password = "app-password-with-'quote"
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://drydock_app_x:unused@127.0.0.1:{port}/{database}"
    )
    monkeypatch.setenv("DB_ADMIN_USERNAME", pg_server.cluster.superuser)
    monkeypatch.setenv("DB_ADMIN_PASSWORD", SUPERUSER_PASSWORD)
    monkeypatch.setenv("DB_APP_PASSWORD", app_password)
    import asyncio

    assert await asyncio.to_thread(main, ["migrate"]) == 0
    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="drydock_app_x", password=app_password, database=database
    )
    try:
        await conn.execute(
            "INSERT INTO items (sku, name, price_cents, stock) VALUES ('PROV-1', 'x', 1, 1)"
        )
        assert await conn.fetchval("SELECT count(*) FROM items") == 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE intruder (id int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DROP TABLE items")
    finally:
        await conn.close()


def test_migrate_refuses_admin_without_app_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "development")
    monkeypatch.setenv("DATABASE_URL", "postgresql://a:b@127.0.0.1:1/db")
    monkeypatch.setenv("DB_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("DB_ADMIN_PASSWORD", "pw")
    monkeypatch.delenv("DB_APP_PASSWORD", raising=False)
    assert main(["migrate"]) == 2


def test_libpq_sslmode_becomes_asyncpg_ssl() -> None:
    from service.migrate import sqlalchemy_url

    assert sqlalchemy_url("postgresql://u:p@db.example.com:5432/app?sslmode=require") == (
        "postgresql+asyncpg://u:p@db.example.com:5432/app?ssl=require"
    )
    assert sqlalchemy_url("postgres://u:p@h/app?application_name=x&sslmode=verify-full") == (
        "postgresql+asyncpg://u:p@h/app?application_name=x&ssl=verify-full"
    )
