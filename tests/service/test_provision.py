"""`python -m service migrate` with admin credentials: the AWS migrate task's path, and role
passwords set by SCRAM verifier so the clear password never reaches the server."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from service.__main__ import main
from service.provision import ensure_login_role, quote_literal
from service.security.scram import scram_sha256_verifier
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


ROLE_PASSWORDS = [
    "ascii-Password-0123456789",
    # mapped (no-break space), NFKC-normalised (full-width letters), and plain Latin-1
    "pässwörd\u00a0\uff46\uff55\uff4c\uff4c-wïdth",
    # SASLprep prohibits the control character: PostgreSQL then hashes the raw bytes
    "ünïcode-with-a-bell\u0007",
]


@dataclass
class Superuser:
    """A superuser connection; the roles it names through `new_role` are dropped after."""

    conn: asyncpg.Connection
    roles: list[str] = field(default_factory=list)

    def new_role(self) -> str:
        self.roles.append(f"scram_{secrets.token_hex(4)}")
        return self.roles[-1]


@pytest.fixture
async def superuser(pg_server: PgServer) -> AsyncIterator[Superuser]:
    su = Superuser(await asyncpg.connect(pg_server.url()))
    yield su
    for role in su.roles:
        await su.conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    await su.conn.close()


async def log_in(pg_server: PgServer, role: str, password: str) -> str:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=pg_server.cluster.port,
        user=role,
        password=password,
        database="postgres",
    )
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


@pytest.mark.parametrize("password", ROLE_PASSWORDS)
async def test_the_verifier_is_the_one_postgresql_makes_from_the_clear_password(
    superuser: Superuser, password: str
) -> None:
    reference = superuser.new_role()
    await superuser.conn.execute(f'CREATE ROLE "{reference}" PASSWORD {quote_literal(password)}')
    made = await superuser.conn.fetchval(
        "SELECT rolpassword FROM pg_authid WHERE rolname = $1", reference
    )
    iterations, salt = made.split("$")[1].split(":")
    ours = scram_sha256_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    assert ours == made


@pytest.mark.parametrize("password", ROLE_PASSWORDS)
async def test_a_role_set_by_verifier_logs_in_with_its_clear_password(
    pg_server: PgServer, superuser: Superuser, password: str
) -> None:
    role = superuser.new_role()
    await ensure_login_role(superuser.conn, role, "first-" + password)
    await ensure_login_role(superuser.conn, role, password)  # the rotation path: ALTER ROLE
    stored = await superuser.conn.fetchval(
        "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role
    )
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert await log_in(pg_server, role, password) == role
    with pytest.raises(asyncpg.InvalidPasswordError):
        await log_in(pg_server, role, "first-" + password)


async def test_the_clear_password_never_reaches_the_server_log(
    pg_server: PgServer, superuser: Superuser
) -> None:
    role, password = superuser.new_role(), "clear-" + secrets.token_hex(16)
    marker = "statements-logged-" + secrets.token_hex(8)
    await superuser.conn.execute("SET log_statement = 'all'")
    await ensure_login_role(superuser.conn, role, password)
    await ensure_login_role(superuser.conn, role, password)
    await superuser.conn.execute(f"SELECT '{marker}'")
    await superuser.conn.execute("RESET log_statement")
    log = await server_log_through(pg_server, marker)
    assert password not in log
    statements = [line for line in log.splitlines() if f'\\"{role}\\"' in line]
    assert len(statements) >= 2, "CREATE ROLE and ALTER ROLE were both logged"
    assert all("PASSWORD 'SCRAM-SHA-256$4096:" in line for line in statements)
    assert await log_in(pg_server, role, password) == role


async def server_log_through(pg_server: PgServer, marker: str) -> str:
    """The server's log files once the logging collector has written `marker`."""
    for _ in range(200):
        text = "".join(
            path.read_text(errors="replace") for path in pg_server.cluster.log_dir.iterdir()
        )
        if marker in text:
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"{marker} never reached {pg_server.cluster.log_dir}")


def test_an_empty_role_password_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        scram_sha256_verifier("")
