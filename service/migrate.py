"""Alembic, configured in code: upgrade, current revision, expected head, offline SQL, and the
schema compatibility that lets an older release serve on a newer schema.

Every revision declares its phase: `expand` (additive: a new table, a nullable column or one
with a default, an index built concurrently) or `contract` (drops, renames, narrows or
tightens). Each applied revision is recorded in `drydock_schema_phases` with the oldest head
that can still serve on it (`serves_from`): an expand revision keeps its parent's, a contract
revision (or the first one) starts anew at itself. Code is compatible with a database whose
revision's `serves_from` is one of its own revisions, so a release that does not ship the
newer migration files decides from the database alone.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """The asyncpg dialect URL for a plain postgresql:// URL. libpq's `sslmode` (as in RDS
    URLs) becomes asyncpg's `ssl`, which is what SQLAlchemy passes through to it."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            database_url = "postgresql+asyncpg://" + database_url[len(prefix) :]
            break
    return database_url.replace("?sslmode=", "?ssl=").replace("&sslmode=", "&ssl=")


def alembic_config(database_url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if database_url:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


@lru_cache(maxsize=1)
def expected_head() -> str:
    """The single head revision this code expects the database to be at."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations have {len(heads)} heads {heads}; merge them")
    return str(heads[0])


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every revision this code ships (linear history: all of them are its head's ancestors)."""
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(str(rev.revision) for rev in script.walk_revisions())


PHASES = ("expand", "contract")
COMPAT_TABLE = "drydock_schema_phases"
COMPAT_DDL = (
    f"CREATE TABLE IF NOT EXISTS {COMPAT_TABLE} ("
    "revision text PRIMARY KEY, phase text NOT NULL, serves_from text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
    """Autogenerate leaves the compatibility record alone, as it does alembic_version."""
    return not (type_ == "table" and name == COMPAT_TABLE)


def serves_from(
    phase: str | None, revision: str, down_revision: str | None, parent_serves_from: str | None
) -> str:
    """The oldest head that can serve on `revision`. A revision without a declared phase
    counts as a contract: nothing older is assumed to serve on it."""
    if phase == "expand" and down_revision is not None:
        # A parent applied before phases were recorded: only code at the parent or later.
        return parent_serves_from or down_revision
    return revision


def compatibility(
    current: str | None, head: str, serves: str | None, known: frozenset[str] | None = None
) -> tuple[bool, str]:
    """Whether code at `head`, shipping the revisions `known` (default: this code's), serves
    on a database at `current` (`serves`: its `serves_from`, None when not recorded)."""
    known = known_revisions() if known is None else known
    if current == head:
        return True, ""
    if current is None:
        return False, "migrations never ran"
    if current in known:
        return False, f"schema at {current}, code expects {head}: migrate first"
    if serves is not None and serves in known:
        return True, ""
    oldest = f"code at {serves} or later" if serves else "newer code"
    return False, (
        f"schema at {current} is past this code's head {head} by a contract (or unrecorded) "
        f"revision; it needs {oldest}"
    )


class SchemaAheadError(RuntimeError):
    """The database is past this code by a contract: migrating with it cannot go back."""


def upgrade(database_url: str, revision: str = "head") -> None:
    """Alembic's upgrade; a database already ahead of this code by expand revisions it serves
    on is left as it is (a release rolled back across an expand, then deployed again)."""
    if revision == "head":
        status = schema_status(_libpq(database_url))
        if status["current"] is not None and status["current"] not in known_revisions():
            if status["serves"]:
                return
            raise SchemaAheadError(
                f"the database is at {status['current']}, past this code's head "
                f"{status['head']}: {status['reason']}. Deploy a release at or past it"
            )
    command.upgrade(alembic_config(database_url), revision)


def _libpq(database_url: str) -> str:
    """The URL as asyncpg reads it (SQLAlchemy's spelling of TLS is `ssl=`)."""
    return database_url.replace("?ssl=", "?sslmode=").replace("&ssl=", "&sslmode=")


def offline_sql(from_revision: str | None, to_revision: str = "head") -> str:
    """The SQL an upgrade would run, without a database (for review and linting)."""
    buffer = io.StringIO()
    config = alembic_config("postgresql+asyncpg://offline/offline")
    config.output_buffer = buffer
    span = f"{from_revision}:{to_revision}" if from_revision else to_revision
    command.upgrade(config, span, sql=True)
    return buffer.getvalue()


def schema_status(database_url: str, script_location: Path | None = None) -> dict[str, Any]:
    """Where the database stands against the migrations in `script_location` (default: this
    code's): current revision, head, pending revisions, and whether that code serves on it.
    What `db.status` prints, the local target reads, and the AWS migrate task reports."""
    import asyncio

    config = alembic_config()
    if script_location is not None:
        config.set_main_option("script_location", str(script_location))
    script = ScriptDirectory.from_config(config)
    head = str(script.get_current_head())
    known = frozenset(str(rev.revision) for rev in script.walk_revisions())
    current, recorded = asyncio.run(_read_revision(database_url))
    pending = (
        [str(rev.revision) for rev in script.iterate_revisions(head, current)]
        if current is None or current in known
        else []  # the database is ahead of this code
    )
    serves, reason = compatibility(current, head, recorded, known)
    return {
        "current": current,
        "head": head,
        "pending": list(reversed(pending)),
        "serves_from": recorded,
        "serves": serves,
        "reason": reason,
    }


async def _read_revision(database_url: str) -> tuple[str | None, str | None]:
    """The database's revision and its recorded `serves_from`, either None when absent."""
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=30)
    try:
        if await conn.fetchval("SELECT to_regclass('public.alembic_version')") is None:
            return None, None
        current = await conn.fetchval("SELECT version_num FROM alembic_version LIMIT 1")
        if current is None or await conn.fetchval(f"SELECT to_regclass('{COMPAT_TABLE}')") is None:
            return current, None
        recorded = await conn.fetchval(
            f"SELECT serves_from FROM {COMPAT_TABLE} WHERE revision = $1",  # noqa: S608
            current,
        )
        return str(current), (str(recorded) if recorded is not None else None)
    finally:
        await conn.close()
