"""The program of the one-off migrate task on AWS: `python -m pipelines.targets.aws_migrate
status | upgrade | ensure-admin EMAIL`.

It runs inside the VPC, in the release's image, with the environment the `migrate` task
definition gives it (infra/task_definitions.py): DATABASE_URL (the app role's URL),
DB_APP_PASSWORD, DB_ADMIN_USERNAME and DB_ADMIN_PASSWORD. Connected as the master user it
makes sure the app role exists with the secret's password and may use the tables, then runs
Alembic as the schema owner. Every command ends by printing the migration status on one
line after STATUS_MARKER, which the pipeline reads back from CloudWatch Logs. No boto3 here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from urllib.parse import quote, urlsplit, urlunsplit

STATUS_MARKER = "DRYDOCK_MIGRATION_STATUS "


def admin_url(app_url: str, user: str, password: str) -> str:
    """The app URL with the master user's credentials instead of the app role's."""
    parts = urlsplit(app_url)
    host = parts.hostname or ""
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def alembic_url(url: str) -> str:
    """SQLAlchemy hands URL query keys to asyncpg.connect, which names TLS `ssl`, not
    `sslmode` (asyncpg accepts `sslmode` only inside a DSN)."""
    return url.replace("sslmode=", "ssl=")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


async def ensure_app_role(url: str, app_user: str, app_password: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        owner = await conn.fetchval("SELECT current_user")
        database = await conn.fetchval("SELECT current_database()")
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", app_user)
        verb = "ALTER" if exists else "CREATE"
        # ALTER keeps the role's password in step with the secret after a rotation.
        await conn.execute(
            f"{verb} ROLE {_ident(app_user)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"PASSWORD {_literal(app_password)}"
        )
        app, own = _ident(app_user), _ident(owner)
        await conn.execute(
            f"""
            REVOKE ALL ON DATABASE {_ident(database)} FROM PUBLIC;
            GRANT CONNECT, TEMPORARY ON DATABASE {_ident(database)} TO {app};
            REVOKE CREATE ON SCHEMA public FROM PUBLIC;
            GRANT USAGE ON SCHEMA public TO {app};
            ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public
                GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};
            ALTER DEFAULT PRIVILEGES FOR ROLE {own} IN SCHEMA public
                GRANT USAGE, SELECT ON SEQUENCES TO {app};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app};
            """
        )
    finally:
        await conn.close()


async def current_revision(url: str) -> str | None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('public.alembic_version')") is None:
            return None
        value = await conn.fetchval("SELECT version_num FROM alembic_version LIMIT 1")
        return str(value) if value is not None else None
    finally:
        await conn.close()


def status(url: str) -> dict[str, object]:
    from alembic.script import ScriptDirectory

    from service.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    head = str(script.get_current_head())
    current = asyncio.run(current_revision(url))
    pending = [rev.revision for rev in script.iterate_revisions(head, current)]
    return {"current": current, "head": head, "pending": list(reversed(pending))}


async def ensure_admin(url: str, email: str, password_hash: str) -> str:
    """The smoke suite's admin account, with a password hash made by the pipeline, so the
    password itself never travels in the task's overrides."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        created = await conn.fetchval(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'admin') "
            "ON CONFLICT (email) DO UPDATE SET role = 'admin', "
            "password_hash = EXCLUDED.password_hash RETURNING (xmax = 0)",
            email,
            password_hash,
        )
    finally:
        await conn.close()
    return "created" if created else "updated"


def main(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = dict(os.environ if environ is None else environ)
    if not args or args[0] not in {"status", "upgrade", "ensure-admin"}:
        print("usage: aws_migrate status | upgrade | ensure-admin EMAIL", file=sys.stderr)
        return 2
    missing = [
        k
        for k in ("DATABASE_URL", "DB_APP_PASSWORD", "DB_ADMIN_USERNAME", "DB_ADMIN_PASSWORD")
        if not env.get(k)
    ]
    if missing:
        print(f"missing environment: {', '.join(missing)}", file=sys.stderr)
        return 2
    app_url = env["DATABASE_URL"]
    url = admin_url(app_url, env["DB_ADMIN_USERNAME"], env["DB_ADMIN_PASSWORD"])
    command = args[0]
    if command == "upgrade":
        app_user = urlsplit(app_url).username or ""
        asyncio.run(ensure_app_role(url, app_user, env["DB_APP_PASSWORD"]))
        from service.migrate import upgrade

        upgrade(alembic_url(url))
    elif command == "ensure-admin":
        if len(args) != 2 or not env.get("ADMIN_PASSWORD_HASH"):
            print("ensure-admin needs EMAIL and ADMIN_PASSWORD_HASH", file=sys.stderr)
            return 2
        email = args[1].strip().lower()
        print(f"{email}: {asyncio.run(ensure_admin(url, email, env['ADMIN_PASSWORD_HASH']))}")
    print(STATUS_MARKER + json.dumps(status(url)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
