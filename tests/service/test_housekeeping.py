"""Housekeeping: dead rows go, live ones stay, one replica sweeps at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from service.db import Database
from service.housekeeping import BATCH, LOCK_KEY, Swept, run_housekeeping, sweep
from service.settings import SettingsError, load_settings
from tests.service.conftest import AppFactory, make_settings
from tests.service.test_heartbeat import eventually

integration = pytest.mark.integration

LOCKOUT_S = 900
LOCKOUT = timedelta(seconds=LOCKOUT_S)


@pytest.fixture
async def db(fresh_database: str) -> AsyncIterator[Database]:
    database = Database(make_settings(fresh_database))
    await database.connect()
    try:
        yield database
    finally:
        await database.close()


async def add_user(db: Database) -> int:
    user_id: int = await db.fetchval(
        "INSERT INTO users (email, password_hash) VALUES ($1, 'not-a-hash') RETURNING id",
        f"user-{secrets.token_hex(6)}@example.com",
    )
    return user_id


async def add_token(db: Database, user_id: int, expires_in: timedelta) -> uuid.UUID:
    token_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, kid, expires_at) "
        "VALUES ($1, $2, $3, $4, 'k1', now() + $5::interval)",
        token_id,
        user_id,
        uuid.uuid4(),
        secrets.token_bytes(32),
        expires_in,
    )
    return token_id


async def add_failure(
    db: Database, email: str, updated_in: timedelta, locked_for: timedelta | None = None
) -> None:
    await db.execute(
        "INSERT INTO login_failures (email, failed_count, locked_until, updated_at) "
        "VALUES ($1, 3, now() + $2::interval, now() + $3::interval)",
        email,
        locked_for,
        updated_in,
    )


async def add_window(db: Database, bucket: str, started_in: timedelta) -> None:
    await db.execute(
        "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, now() + $2::interval, 1)",
        bucket,
        started_in,
    )


async def add_dead_rows(db: Database, n: int) -> None:
    """n dead rows in each table, in three statements."""
    user_id = await add_user(db)
    await db.execute(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, kid, expires_at) "
        "SELECT gen_random_uuid(), $1, gen_random_uuid(), uuid_send(gen_random_uuid()), 'k1', "
        "now() - interval '2 days' FROM generate_series(1, $2)",
        user_id,
        n,
    )
    await db.execute(
        "INSERT INTO login_failures (email, failed_count, updated_at) "
        "SELECT 'idle-' || i || '@example.com', 2, now() - interval '1 day' "
        "FROM generate_series(1, $1) AS i",
        n,
    )
    await db.execute(
        "INSERT INTO rate_limits (bucket, window_start, hits) "
        "SELECT 'auth:' || i, now() - interval '2 hours', 1 FROM generate_series(1, $1) AS i",
        n,
    )


async def counts(db: Database) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM refresh_tokens) AS t, "
        "(SELECT count(*) FROM login_failures) AS f, (SELECT count(*) FROM rate_limits) AS r"
    )
    assert row is not None
    return row["t"], row["f"], row["r"]


@integration
async def test_sweep_deletes_exactly_the_dead_rows(db: Database) -> None:
    user_id = await add_user(db)
    await add_token(db, user_id, -timedelta(days=2))
    within_slack = await add_token(db, user_id, -timedelta(hours=1))
    valid = await add_token(db, user_id, timedelta(days=7))

    await add_failure(db, "idle@example.com", -2 * LOCKOUT)
    await add_failure(db, "lock-ended@example.com", -2 * LOCKOUT, -LOCKOUT)
    await add_failure(db, "locked@example.com", -2 * LOCKOUT, timedelta(minutes=5))
    await add_failure(db, "recent@example.com", -timedelta(minutes=1))

    await add_window(db, "auth:old", -timedelta(hours=2))
    await add_window(db, "auth:recent", -timedelta(minutes=30))
    await add_window(db, "api:current", timedelta(0))

    assert await sweep(db, lockout_s=LOCKOUT_S) == Swept(
        refresh_tokens=1, login_failures=2, rate_limits=1
    )

    tokens = {r["id"] for r in await db.fetch("SELECT id FROM refresh_tokens")}
    assert tokens == {within_slack, valid}
    emails = {r["email"] for r in await db.fetch("SELECT email FROM login_failures")}
    assert emails == {"locked@example.com", "recent@example.com"}
    buckets = {r["bucket"] for r in await db.fetch("SELECT bucket FROM rate_limits")}
    assert buckets == {"auth:recent", "api:current"}

    assert await sweep(db, lockout_s=LOCKOUT_S) == Swept(), "a second sweep finds nothing"


@integration
async def test_sweep_yields_to_a_replica_holding_the_lock(
    db: Database, fresh_database: str
) -> None:
    await add_dead_rows(db, 2)
    other = await asyncpg.connect(fresh_database)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        assert await sweep(db, lockout_s=LOCKOUT_S) is None
        assert await counts(db) == (2, 2, 2)
        await other.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    finally:
        await other.close()
    assert await sweep(db, lockout_s=LOCKOUT_S) == Swept(2, 2, 2)


@integration
async def test_sweep_deletes_in_bounded_batches(db: Database) -> None:
    await add_dead_rows(db, 7)
    results = [await sweep(db, lockout_s=LOCKOUT_S, batch=3) for _ in range(4)]
    assert results == [Swept(3, 3, 3), Swept(3, 3, 3), Swept(1, 1, 1), Swept()]
    assert await counts(db) == (0, 0, 0)


@integration
async def test_run_housekeeping_sweeps_a_backlog_in_one_round(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.housekeeping")
    await add_dead_rows(db, 2 * BATCH + 1)
    await add_window(db, "api:current", timedelta(0))

    async def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.message == "housekeeping deleted dead rows"]

    task = asyncio.create_task(run_housekeeping(db, 0.05, LOCKOUT_S))
    try:
        first = (await eventually(logged, "a sweep's log line"))[0]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # A full batch is followed by another at once, not one interval later.
    assert (first.refresh_tokens, first.login_failures, first.rate_limits) == (2 * BATCH + 1,) * 3
    assert await counts(db) == (0, 0, 1)


@integration
async def test_running_app_sweeps(app_factory: AppFactory) -> None:
    app = await app_factory(heartbeat=True, housekeeping_interval_s=0.05)
    db = app.drydock.db
    await add_window(db, "auth:old", -timedelta(hours=2))
    await eventually(lambda: db.fetchval("SELECT NOT EXISTS (SELECT FROM rate_limits)"), "a sweep")


@pytest.mark.unit
@pytest.mark.parametrize("value", ["-1", "86401", "often"])
def test_invalid_interval_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.delenv("ENV", raising=False)
    monkeypatch.setenv("HOUSEKEEPING_INTERVAL_S", value)
    with pytest.raises(SettingsError, match="HOUSEKEEPING_INTERVAL_S"):
        load_settings()


@pytest.mark.unit
def test_zero_interval_disables_housekeeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENV", raising=False)
    monkeypatch.setenv("HOUSEKEEPING_INTERVAL_S", "0")
    assert load_settings().housekeeping_interval_s == 0
