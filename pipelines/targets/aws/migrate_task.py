"""The program of the one-off migrate task on AWS: `python -m pipelines.targets.aws.migrate_task
status | upgrade | ensure-admin EMAIL`.

It runs inside the VPC, in the release's image, with the environment the `migrate` task
definition gives it (infra/task_definitions.py): DATABASE_URL (the app role's URL),
DB_APP_PASSWORD, DB_ADMIN_USERNAME and DB_ADMIN_PASSWORD. `upgrade` provisions the app
role as `python -m service migrate` does (service/provision.py), then runs Alembic as the
master user, the schema owner. Every command ends by printing the migration status on one
line after STATUS_MARKER, which the pipeline reads back from CloudWatch Logs. No boto3 here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

STATUS_MARKER = "DRYDOCK_MIGRATION_STATUS "


def alembic_url(url: str) -> str:
    """SQLAlchemy hands URL query keys to asyncpg.connect, which names TLS `ssl`, not
    `sslmode` (asyncpg accepts `sslmode` only inside a DSN)."""
    return url.replace("sslmode=", "ssl=")


def status(url: str) -> dict[str, object]:
    """This image's view of the database: current, head, pending, and whether it serves."""
    from service.migrate import schema_status

    return schema_status(url)


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
    from service.provision import ensure_app_role, with_credentials

    app_url, admin = env["DATABASE_URL"], (env["DB_ADMIN_USERNAME"], env["DB_ADMIN_PASSWORD"])
    url = with_credentials(app_url, *admin)
    command = args[0]
    if command == "upgrade":
        # The service's own provisioning: the app role with the secret's password and DML
        # grants on what the admin (the schema owner) creates.
        asyncio.run(ensure_app_role(app_url, *admin, env["DB_APP_PASSWORD"]))
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
