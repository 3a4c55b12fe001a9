"""A single heartbeat row, updated in place every few seconds.

The restore drill reads it from a restored copy: now minus its beat_at is the RPO.
"""

from __future__ import annotations

import logging

from service.db import Database
from service.periodic import every

log = logging.getLogger("service.heartbeat")

UPSERT = (
    "INSERT INTO heartbeat (id, beat_at, instance) VALUES (1, now(), $1) "
    "ON CONFLICT (id) DO UPDATE SET beat_at = now(), instance = EXCLUDED.instance"
)


async def beat(db: Database, instance: str) -> None:
    await db.execute(UPSERT, instance)


async def run_heartbeat(db: Database, instance: str, interval_s: float) -> None:
    await every(interval_s, lambda: beat(db, instance), log, "heartbeat write")
