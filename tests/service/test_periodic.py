"""The background-job loop: a database outage is logged once, survived, and its end logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from service.db import Database
from service.periodic import every
from tests.service.conftest import make_settings
from tests.service.test_heartbeat import eventually

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("wait_first", [False, True])
async def test_an_outage_is_logged_once_and_survived(
    fresh_database: str, caplog: pytest.LogCaptureFixture, wait_first: bool
) -> None:
    log = logging.getLogger("tests.periodic")
    caplog.set_level(logging.INFO, logger=log.name)
    db = Database(make_settings(fresh_database))  # not connected yet: every run fails
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())
        await db.execute("SELECT 1")

    started = time.monotonic()
    task = asyncio.create_task(every(0.02, job, log, "probe", wait_first=wait_first))
    try:
        await eventually(lambda: asyncio.sleep(0, len(runs) >= 5), "five failed runs")
        assert not task.done()
        assert [r.message for r in caplog.records] == ["probe failed"]
        assert caplog.records[0].error == "RuntimeError"  # type: ignore[attr-defined]
        assert (runs[0] - started >= 0.02) is wait_first

        await db.connect()
        await eventually(
            lambda: asyncio.sleep(0, "probe recovered" in [r.message for r in caplog.records]),
            "the recovery line",
        )
        assert [r.message for r in caplog.records] == ["probe failed", "probe recovered"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.close()


async def test_a_saturated_pool_is_survived_like_an_outage(
    fresh_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("tests.periodic")
    caplog.set_level(logging.INFO, logger=log.name)
    db = Database(
        make_settings(fresh_database, db_pool_min=1, db_pool_max=1, request_timeout_ms=100)
    )
    await db.connect()
    held = db.connection()
    await held.__aenter__()  # the pool's only connection, taken by someone else
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())
        await db.execute("SELECT 1")

    task = asyncio.create_task(every(0.02, job, log, "probe"))
    try:
        await eventually(lambda: asyncio.sleep(0, len(runs) >= 3), "three runs")
        assert not task.done()
        assert [r.message for r in caplog.records] == ["probe failed"]
        assert caplog.records[0].error == "PoolTimeout"  # type: ignore[attr-defined]
        await held.__aexit__(None, None, None)
        await eventually(
            lambda: asyncio.sleep(0, "probe recovered" in [r.message for r in caplog.records]),
            "the recovery line",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.close()
