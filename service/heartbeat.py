"""A single heartbeat row, updated in place every few seconds.

The restore drill reads it from a restored copy: now minus its beat_at is the RPO.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from service.db import Database

log = logging.getLogger("service.heartbeat")

UPSERT = (
    "INSERT INTO heartbeat (id, beat_at, instance) VALUES (1, now(), $1) "
    "ON CONFLICT (id) DO UPDATE SET beat_at = now(), instance = EXCLUDED.instance"
)


async def beat(db: Database, instance: str) -> None:
    await db.execute(UPSERT, instance)


async def run_heartbeat(db: Database, instance: str, interval_s: float) -> None:
    failing = False
    while True:
        try:
            await beat(db, instance)
            if failing:
                log.info("heartbeat recovered")
            failing = False
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError) as exc:
            if not failing:
                log.warning("heartbeat write failed", extra={"error": type(exc).__name__})
            failing = True
        await asyncio.sleep(interval_s)
