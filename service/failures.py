"""What an error that escaped a route or the edge tells the caller.

A database that is down or saturated is the caller's cue to retry later (503 with
Retry-After); anything else is the service's own fault (500). Either way the caller gets the
standard error body; the trace goes only to the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from service.db import PoolTimeout

_DATABASE_DOWN: tuple[type[BaseException], ...] = (
    OSError,  # refused, unreachable, reset: the server is not there
    asyncpg.PostgresConnectionError,  # the connection broke mid-operation
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    code: str
    message: str
    retry_after_s: int | None = None
    # Expected failures are logged as one warning line, not a trace per request.
    expected: bool = False

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


INTERNAL = Failure(500, "internal_error", "internal error; quote the requestId to support")


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, PoolTimeout):
        # Connections come free within milliseconds once the burst passes.
        return Failure(503, "db_busy", "the service is busy; retry shortly", 1, True)
    if isinstance(exc, _DATABASE_DOWN):
        return Failure(503, "db_unavailable", "the database is unavailable; retry later", 5, True)
    return INTERNAL
