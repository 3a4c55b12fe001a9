"""The asyncpg pool: one per process, statement_timeout set on every connection, and a bounded
wait for a free connection (DB_ACQUIRE_TIMEOUT_MS)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from service.settings import Settings

log = logging.getLogger("service.db")


class PoolTimeout(Exception):
    """No pooled connection came free in time; the caller should answer 503 and retry later."""


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
        self._acquire_timeout_s = settings.db_acquire_timeout_s
        # Connections this object has handed out. While it is below the pool's size a free
        # one is waiting, so the acquire skips the timer (measurable on the hottest read).
        self._checked_out = 0

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
        """The raw pool. Requests acquire through the methods below, which keep the count
        that bounds the wait; a connection taken from here directly escapes that count."""
        if self._pool is None:
            raise RuntimeError("database pool is not open")
        return self._pool

    async def _acquire(self) -> asyncpg.Connection:
        pool = self.pool
        if self._checked_out < self._settings.db_pool_max:
            conn = await pool.acquire()
        else:
            try:
                async with asyncio.timeout(self._acquire_timeout_s):
                    conn = await pool.acquire()
            except TimeoutError:
                raise PoolTimeout(
                    f"no database connection came free within "
                    f"{self._acquire_timeout_s * 1000:g} ms (pool of {self._settings.db_pool_max})"
                ) from None
        self._checked_out += 1
        return conn

    async def _release(self, conn: asyncpg.Connection) -> None:
        try:
            await self.pool.release(conn)
        finally:
            # Counted down only once the connection is back in the pool's queue.
            self._checked_out -= 1

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self._acquire()
        try:
            yield conn
        finally:
            await self._release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self._acquire()
        try:
            async with conn.transaction():
                yield conn
        finally:
            await self._release(conn)

    # The one-statement helpers acquire and release inline rather than through `connection()`:
    # a generator-based context manager per query costs more than the check it wraps.
    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        conn = await self._acquire()
        try:
            return await conn.fetchrow(query, *args)
        finally:
            await self._release(conn)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await self._acquire()
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows
        finally:
            await self._release(conn)

    async def fetchval(self, query: str, *args: Any) -> Any:
        conn = await self._acquire()
        try:
            return await conn.fetchval(query, *args)
        finally:
            await self._release(conn)

    async def execute(self, query: str, *args: Any) -> str:
        conn = await self._acquire()
        try:
            status: str = await conn.execute(query, *args)
            return status
        finally:
            await self._release(conn)

    def stats(self) -> dict[str, int]:
        if self._pool is None:
            return {"in_use": 0, "idle": 0, "max": self._settings.db_pool_max}
        size, idle = self._pool.get_size(), self._pool.get_idle_size()
        return {"in_use": size - idle, "idle": idle, "max": self._pool.get_max_size()}
