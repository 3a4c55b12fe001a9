"""The program of the one-off migrate task on AWS: `python -m pipelines.targets.aws.migrate_task
status | upgrade | ensure-admin EMAIL`.

It runs inside the VPC, in the release's image, with the environment the `migrate` task
definition gives it (infra/task_definitions.py): DATABASE_URL (the app role's URL),
DB_APP_PASSWORD, DB_ADMIN_USERNAME and DB_ADMIN_PASSWORD. `upgrade` provisions the app
role as `python -m service migrate` does (service/provision.py), then runs Alembic as the
master user, the schema owner, then, given ADMIN_EMAIL and ADMIN_PASSWORD_HASH, makes sure
the environment's first admin exists (service/provision.py's `ensure_admin`: an existing
admin is left alone, an address somebody registered is refused with exit code 3).
`ensure-admin` does the same for the smoke suite's account, whose password the pipeline
owns and sets each time. The pipeline sends an argon2 hash, never a password. Every command
ends by printing the migration status on one line after STATUS_MARKER, which the pipeline
reads back from CloudWatch Logs. No boto3 here.
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


REFUSED = 3  # an address somebody registered: never promoted by the pipeline


async def ensure_admin(url: str, email: str, password_hash: str, reset_password: bool) -> str:
    """An admin account for `email` with `password_hash`; see service/provision.py."""
    import asyncpg

    from service.provision import ensure_admin as ensure

    conn = await asyncpg.connect(url)
    try:
        return str(await ensure(conn, email, password_hash, reset_password=reset_password))
    finally:
        await conn.close()


def _admin(url: str, email: str, password_hash: str, reset_password: bool) -> int:
    from service.provision import AccountExists

    try:
        outcome = asyncio.run(ensure_admin(url, email, password_hash, reset_password))
    except AccountExists as refusal:
        print(str(refusal), file=sys.stderr, flush=True)
        return REFUSED
    print(f"{email}: {outcome}", flush=True)
    return 0


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
        code = 0
        if env.get("ADMIN_EMAIL"):
            if not env.get("ADMIN_PASSWORD_HASH"):
                print("ADMIN_EMAIL needs ADMIN_PASSWORD_HASH", file=sys.stderr)
                return 2
            email = env["ADMIN_EMAIL"].strip().lower()
            code = _admin(url, email, env["ADMIN_PASSWORD_HASH"], reset_password=False)
    elif command == "ensure-admin":
        if len(args) != 2 or not env.get("ADMIN_PASSWORD_HASH"):
            print("ensure-admin needs EMAIL and ADMIN_PASSWORD_HASH", file=sys.stderr)
            return 2
        email = args[1].strip().lower()
        code = _admin(url, email, env["ADMIN_PASSWORD_HASH"], reset_password=True)
    else:
        code = 0
    print(STATUS_MARKER + json.dumps(status(url)), flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
