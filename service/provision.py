"""The database roles the service expects: migrations run as the schema owner; the app role
the replicas use may read and write rows but not change the schema.

`python -m service migrate` applies this first when it is given admin credentials
(DB_ADMIN_USERNAME / DB_ADMIN_PASSWORD, plus DB_APP_PASSWORD), as the AWS migrate task is.
The local target applies the same statements with its own roles.
"""

from __future__ import annotations

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
