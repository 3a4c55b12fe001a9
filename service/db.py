"""The asyncpg pool: one per process, statement_timeout set on every connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from service.settings import Settings

log = logging.getLogger("service.db")


def asyncpg_dsn(url: str) -> str:
    """asyncpg takes plain postgresql:// URLs; accept SQLAlchemy-style ones too."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


class Database:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Open the pool. A database that is down now is not fatal: readiness reports it
        and the pool connects lazily once it is back."""
        try:
            await self._open(self._settings.db_pool_min)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning(
                "database unavailable at startup; will retry lazily",
                extra={"error": type(exc).__name__},
            )
            await self._open(0)

    async def _open(self, min_size: int) -> None:
        s = self._settings
        self._pool = await asyncpg.create_pool(
            asyncpg_dsn(s.database_url),
            min_size=min_size,
            max_size=s.db_pool_max,
            max_inactive_connection_lifetime=60,
            server_settings={
                "statement_timeout": str(s.db_statement_timeout_ms),
                "application_name": f"drydock-api:{s.instance_id}"[:63],
            },
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database pool is not open")
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(query, *args)
        return rows

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.pool.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        status: str = await self.pool.execute(query, *args)
        return status

    def stats(self) -> dict[str, int]:
        if self._pool is None:
            return {"in_use": 0, "idle": 0, "max": self._settings.db_pool_max}
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        return {"in_use": size - idle, "idle": idle, "max": self._pool.get_max_size()}
