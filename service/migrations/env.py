"""Alembic environment: runs migrations over asyncpg with the service's metadata."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.migrate import COMPAT_DDL, COMPAT_TABLE, include_object, serves_from
from service.schema import metadata

config = context.config


def _record_phase(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """In the migration's own transaction: the revision's phase and the oldest head that can
    still serve on it (see service/migrate.py)."""
    conn, revision = ctx.connection, step.up_revision_id
    if conn is None or revision is None:  # offline SQL, or a stamp to base: nothing to record
        return
    conn.execute(text(COMPAT_DDL))
    if not step.is_upgrade:
        conn.execute(
            text(f"DELETE FROM {COMPAT_TABLE} WHERE revision = :r"),  # noqa: S608 - a constant
            {"r": revision},
        )
        return
    script = step.up_revision  # a Script: the revision's module is loaded
    down = script.down_revision if script and isinstance(script.down_revision, str) else None
    parent = (
        conn.execute(
            text(f"SELECT serves_from FROM {COMPAT_TABLE} WHERE revision = :r"),  # noqa: S608
            {"r": down},
        ).scalar()
        if down
        else None
    )
    phase = getattr(getattr(script, "module", None), "phase", None)
    conn.execute(
        text(
            f"INSERT INTO {COMPAT_TABLE} (revision, phase, serves_from) "  # noqa: S608
            "VALUES (:r, :p, :s) ON CONFLICT (revision) DO UPDATE "
            "SET phase = EXCLUDED.phase, serves_from = EXCLUDED.serves_from, applied_at = now()"
        ),
        {
            "r": revision,
            "p": phase or "undeclared",
            "s": serves_from(phase, revision, down, parent),
        },
    )


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
        include_object=include_object,
        on_version_apply=_record_phase,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(
        config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
