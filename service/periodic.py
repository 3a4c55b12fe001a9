"""The loop behind the replica's background jobs (heartbeat, housekeeping).

A database outage must not end a job, and must not flood the log either: the first failure
of a streak is logged, then the recovery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from service.db import PoolTimeout

# A busy pool (PoolTimeout) passes like an outage: the next run will likely find a connection.
TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError, PoolTimeout)


async def every(
    interval_s: float,
    job: Callable[[], Awaitable[None]],
    log: logging.Logger,
    name: str,
    *,
    wait_first: bool = False,
) -> None:
    """Run `job` every `interval_s` until cancelled; `wait_first` waits one interval first."""
    failing = False
    while True:
        if wait_first:
            await asyncio.sleep(interval_s)
        try:
            await job()
            if failing:
                log.info(f"{name} recovered")
            failing = False
        except TRANSIENT as exc:
            if not failing:
                log.warning(f"{name} failed", extra={"error": type(exc).__name__})
            failing = True
        if not wait_first:
            await asyncio.sleep(interval_s)
