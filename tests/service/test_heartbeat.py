from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from service.db import Database
from service.heartbeat import beat
from tests.service.conftest import AppFactory, make_settings

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0


async def eventually(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll until probe() is truthy; bounded so a broken heartbeat fails instead of hanging."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def test_running_app_writes_and_advances_one_row(app_factory: AppFactory) -> None:
    app = await app_factory(heartbeat=True, heartbeat_interval_s=0.2)
    db = app.drydock.db

    first = await eventually(
        lambda: db.fetchrow("SELECT beat_at, instance FROM heartbeat"), "the first beat"
    )
    assert first["instance"] == app.drydock.settings.instance_id

    async def advanced() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT beat_at FROM heartbeat WHERE beat_at > $1", first["beat_at"]
        )

    await eventually(advanced, "a later beat")
    assert await db.fetchval("SELECT count(*) FROM heartbeat") == 1


async def test_beat_updates_the_single_row_in_place(fresh_database: str) -> None:
    db = Database(make_settings(fresh_database))
    await db.connect()
    try:
        await beat(db, "replica-a")
        await beat(db, "replica-b")
        rows = await db.fetch("SELECT id, instance FROM heartbeat")
        assert [(r["id"], r["instance"]) for r in rows] == [(1, "replica-b")]
    finally:
        await db.close()
