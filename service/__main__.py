"""`python -m service serve | migrate | create-admin | flags`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service import __version__

if TYPE_CHECKING:
    from service.provision import AdminOutcome
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


async def _create_admin(
    database_url: str, email: str, password: str, promote_existing: bool
) -> AdminOutcome:
    import asyncpg

    from service.db import asyncpg_dsn
    from service.provision import ensure_admin
    from service.security.passwords import hash_password

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await ensure_admin(
            conn, email, hash_password(password), promote_existing=promote_existing
        )
    finally:
        await conn.close()


def _admin_password() -> str | None:
    """ADMIN_PASSWORD, else typed twice; None when the two differ."""
    given = os.environ.get("ADMIN_PASSWORD")
    if given:
        return given
    typed = getpass.getpass("admin password: ")
    return typed if getpass.getpass("again: ") == typed else None


def cmd_create_admin(args: argparse.Namespace) -> int:
    from service.models import normalise_email, password_problem
    from service.provision import AccountExists

    settings = _settings()
    if not settings.database_url:
        print("DATABASE_URL is required", file=sys.stderr)
        return 2
    try:
        email = normalise_email(args.email)
    except ValueError as exc:
        print(f"create-admin {args.email!r}: {exc}", file=sys.stderr)
        return 2
    password = _admin_password()
    if password is None:
        print("the two passwords differ; nothing was changed", file=sys.stderr)
        return 2
    problem = password_problem(password)
    if problem is None and settings.breached_passwords_file:
        from service.security.breached import BreachedPasswords

        if BreachedPasswords(Path(settings.breached_passwords_file)).seen(password):
            problem = "it appears in BREACHED_PASSWORDS_FILE, a list of breached passwords"
    if problem:
        print(f"password rejected: {problem}", file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(
            _create_admin(settings.database_url, email, password, args.promote_existing)
        )
    except AccountExists as refusal:
        print(str(refusal), file=sys.stderr)
        return 1
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
    admin = sub.add_parser(
        "create-admin",
        help="create an admin account with the password in ADMIN_PASSWORD (or typed twice)",
    )
    admin.add_argument("email")
    admin.add_argument(
        "--promote-existing",
        action="store_true",
        help="make an existing non-admin account with this address an admin, with the given "
        "password, ending its sessions (without it, such an account is refused: whoever "
        "registered the address holds its password)",
    )
    admin.set_defaults(func=cmd_create_admin)
    flags = sub.add_parser("flags", help="list feature flags in force (runbook section 9)")
    flags.add_argument("--json", action="store_true")
    flags.set_defaults(func=cmd_flags)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
