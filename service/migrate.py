"""Alembic, configured in code: upgrade, current revision, expected head, offline SQL."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

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


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def offline_sql(from_revision: str | None, to_revision: str = "head") -> str:
    """The SQL an upgrade would run, without a database (for review and linting)."""
    buffer = io.StringIO()
    config = alembic_config("postgresql+asyncpg://offline/offline")
    config.output_buffer = buffer
    span = f"{from_revision}:{to_revision}" if from_revision else to_revision
    command.upgrade(config, span, sql=True)
    return buffer.getvalue()
