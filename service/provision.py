"""What an environment needs before it serves: the database roles, and its first admin.

Migrations run as the schema owner; the app role the replicas use may read and write rows
but not change the schema. `python -m service migrate` applies this first when it is given
admin credentials (DB_ADMIN_USERNAME / DB_ADMIN_PASSWORD, plus DB_APP_PASSWORD), as the AWS
migrate task is. The local target applies the same statements with its own roles.

Admins are made here and nowhere else (`ensure_admin`, behind `python -m service
create-admin` and the AWS migrate task). Registration is open and emails are not verified,
so an account that already exists under the admin's address is somebody's, possibly an
attacker's who registered it first: it is never promoted unless the operator says so.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from service.security.scram import scram_sha256_verifier


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def grants(database: str, owner: str, app: str) -> list[str]:
    """Statements run by the owner: the app role gets DML on everything the owner creates."""
    db, own, use = quote_ident(database), quote_ident(owner), quote_ident(app)
    return [
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {use}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {use}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {use}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {use}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {use}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {use}",
    ]


async def ensure_login_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    """Create the role, or set its password: after a rotation the store and the role agree.

    The statement carries a SCRAM verifier, never the password: statements can reach the
    server's log (log_statement, an error) and pg_stat_statements.
    """
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    verb = "ALTER" if exists else "CREATE"
    verifier = scram_sha256_verifier(password)
    await conn.execute(
        f"{verb} ROLE {quote_ident(role)} LOGIN NOSUPERUSER NOCREATEDB "
        f"NOCREATEROLE PASSWORD {quote_literal(verifier)}"
    )


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def ensure_app_role(
    database_url: str, admin_user: str, admin_password: str, app_password: str
) -> str:
    """As the admin (who owns the schema): make DATABASE_URL's user an app role. Returns the
    admin URL that migrations must run with."""
    parts = urlsplit(database_url)
    app_user = unquote(parts.username or "")
    database = parts.path.lstrip("/")
    admin_url = with_credentials(database_url, admin_user, admin_password)
    conn = await asyncpg.connect(admin_url)
    try:
        await ensure_login_role(conn, app_user, app_password)
        for statement in grants(database, admin_user, app_user):
            await conn.execute(statement)
    finally:
        await conn.close()
    return admin_url


class AdminOutcome(StrEnum):
    CREATED = "created"
    UNCHANGED = "already an admin; left as it is (its password was not changed)"
    PASSWORD_SET = "already an admin; its password set to the one given"  # noqa: S105
    PROMOTED = "promoted to admin; its password set to the one given, its sessions ended"


class AccountExists(Exception):
    """The address belongs to an account that is not an admin, and promotion was not asked."""

    def __init__(self, email: str, user_id: int, registered_at: datetime) -> None:
        super().__init__(email, user_id, registered_at)
        self.email = email
        self.user_id = user_id
        self.registered_at = registered_at

    def __str__(self) -> str:
        return (
            f"refusing to make {self.email} an admin: account {self.user_id} already has that "
            f"address (registered {self.registered_at:%Y-%m-%d %H:%M %Z}) and is not an admin. "
            "Registration is open and addresses are not verified, so whoever registered it "
            "holds its password. If the account is yours, run create-admin again with "
            "--promote-existing: it becomes an admin with the password given, and its "
            f"sessions end. Otherwise delete it (DELETE /api/admin/users/{self.user_id}) "
            "and run create-admin again."
        )


async def ensure_admin(
    conn: asyncpg.Connection,
    email: str,
    password_hash: str,
    *,
    promote_existing: bool = False,
    reset_password: bool = False,
) -> AdminOutcome:
    """Make `email` an admin with `password_hash` (argon2id, service/security/passwords.py).

    A new address becomes a new admin account. An existing admin is left alone unless
    `reset_password` (for an account the pipeline owns, whose password lives in the secret
    store). Any other existing account raises AccountExists, unless `promote_existing`: then
    it becomes an admin with the given password and every refresh token it holds is revoked,
    since a refresh reads the role afresh and would otherwise mint admin access tokens for
    whoever held the account before."""
    async with conn.transaction():
        created = await conn.fetchval(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'admin') "
            "ON CONFLICT (email) DO NOTHING RETURNING id",
            email,
            password_hash,
        )
        if created is not None:
            return AdminOutcome.CREATED
        row = await conn.fetchrow(
            "SELECT id, role, created_at FROM users WHERE email = $1 FOR UPDATE", email
        )
        assert row is not None, "ON CONFLICT saw the row; it is locked until we commit"
        if row["role"] == "admin":
            if not reset_password:
                return AdminOutcome.UNCHANGED
            await conn.execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], password_hash
            )
            return AdminOutcome.PASSWORD_SET
        if not promote_existing:
            raise AccountExists(email, row["id"], row["created_at"])
        await conn.execute(
            "UPDATE users SET role = 'admin', password_hash = $2 WHERE id = $1",
            row["id"],
            password_hash,
        )
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = now() "
            "WHERE user_id = $1 AND revoked_at IS NULL",
            row["id"],
        )
        return AdminOutcome.PROMOTED
