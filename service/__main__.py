"""`python -m service serve | migrate | create-admin | flags`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING

from service import __version__

if TYPE_CHECKING:
    from service.settings import Settings


def _settings() -> Settings:
    from service.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from service.server import serve

    serve(_settings(), host=args.host, port=args.port)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from service.migrate import upgrade

    settings = _settings()
    if not settings.database_url:
        print("DATABASE_URL is required", file=sys.stderr)
        return 2
    url = settings.database_url
    admin = os.environ.get("DB_ADMIN_USERNAME"), os.environ.get("DB_ADMIN_PASSWORD")
    if all(admin):
        from service.provision import ensure_app_role

        app_password = os.environ.get("DB_APP_PASSWORD")
        if not app_password:
            print("DB_APP_PASSWORD is required with DB_ADMIN_USERNAME", file=sys.stderr)
            return 2
        # The schema belongs to the admin; the app role only reads and writes rows.
        url = asyncio.run(ensure_app_role(url, str(admin[0]), str(admin[1]), app_password))
        print("app role ensured")
    upgrade(url, args.revision)
    print(f"migrated to {args.revision}")
    return 0


async def _create_admin(database_url: str, email: str, password: str) -> str:
    import asyncpg

    from service.db import asyncpg_dsn
    from service.security.passwords import hash_password

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await conn.fetchrow(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'admin') "
            "ON CONFLICT (email) DO UPDATE SET role = 'admin' RETURNING (xmax = 0) AS created",
            email,
            hash_password(password),
        )
    finally:
        await conn.close()
    return "created" if row and row["created"] else "promoted to admin"


def cmd_create_admin(args: argparse.Namespace) -> int:
    from service.models import normalise_email, password_problem

    settings = _settings()
    if not settings.database_url:
        print("DATABASE_URL is required", file=sys.stderr)
        return 2
    email = normalise_email(args.email)
    password = os.environ.get("ADMIN_PASSWORD") or getpass.getpass("admin password: ")
    problem = password_problem(password)
    if problem:
        print(f"password rejected: {problem}", file=sys.stderr)
        return 2
    outcome = asyncio.run(_create_admin(settings.database_url, email, password))
    print(f"{email}: {outcome}")
    return 0


def cmd_flags(args: argparse.Namespace) -> int:
    from service.flags import FlagError, describe, resolve_flags

    try:
        values = resolve_flags(os.environ)
    except FlagError as exc:
        print(f"invalid flag: {exc}", file=sys.stderr)
        return 2
    rows = describe(values)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "on " if row["enabled"] else "off"
        mark = " (overridden)" if row["overridden"] else ""
        print(f"{row['name']:<28} {state}{mark:<13} {row['description']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.set_defaults(func=cmd_serve)
    migrate = sub.add_parser("migrate", help="apply migrations (alembic upgrade)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.set_defaults(func=cmd_migrate)
    admin = sub.add_parser("create-admin", help="create the first admin (ADMIN_PASSWORD or prompt)")
    admin.add_argument("email")
    admin.set_defaults(func=cmd_create_admin)
    flags = sub.add_parser("flags", help="list feature flags in force (runbook section 9)")
    flags.add_argument("--json", action="store_true")
    flags.set_defaults(func=cmd_flags)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
