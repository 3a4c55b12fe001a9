"""Deletes rows nothing will read again: refresh tokens a day past expiry, login failures
that would restart at zero anyway (see security/lockout.py), and rate-limit windows an hour
old (windows are per minute).

Every replica runs the loop; a transaction-scoped advisory lock lets one sweep at a time.
Each delete is bounded so a backlog never turns into one long transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.db import Database
from service.periodic import every

log = logging.getLogger("service.housekeeping")

# "drydock" in ASCII followed by 1: fixed, so every replica and release contends for it.
LOCK_KEY = 0x647279646F636B01
BATCH = 5000

# $1 batch size. FOR UPDATE SKIP LOCKED leaves rows a request is changing right now alone,
# and re-checks the condition on the newest version of the rows it does lock.
_REFRESH_TOKENS = """
    DELETE FROM refresh_tokens WHERE id IN (
        SELECT id FROM refresh_tokens
        WHERE expires_at < now() - interval '1 day'
        LIMIT $1 FOR UPDATE SKIP LOCKED)
"""
# $1 batch size, $2 lockout seconds.
_LOGIN_FAILURES = """
    DELETE FROM login_failures WHERE email IN (
        SELECT email FROM login_failures
        WHERE (locked_until IS NULL OR locked_until <= now())
          AND updated_at <= now() - make_interval(secs => $2)
        LIMIT $1 FOR UPDATE SKIP LOCKED)
"""
_RATE_LIMITS = """
    DELETE FROM rate_limits WHERE bucket IN (
        SELECT bucket FROM rate_limits
        WHERE window_start < now() - interval '1 hour'
        LIMIT $1 FOR UPDATE SKIP LOCKED)
"""


@dataclass(frozen=True, slots=True)
class Swept:
    refresh_tokens: int = 0
    login_failures: int = 0
    rate_limits: int = 0

    @property
    def total(self) -> int:
        return self.refresh_tokens + self.login_failures + self.rate_limits

    @property
    def most(self) -> int:
        return max(self.refresh_tokens, self.login_failures, self.rate_limits)

    def __add__(self, other: Swept) -> Swept:
        return Swept(
            self.refresh_tokens + other.refresh_tokens,
            self.login_failures + other.login_failures,
            self.rate_limits + other.rate_limits,
        )


async def sweep(db: Database, *, lockout_s: int, batch: int = BATCH) -> Swept | None:
    """Delete up to `batch` dead rows per table; None when another replica is sweeping."""
    async with db.transaction() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK_KEY):
            return None
        return Swept(
            refresh_tokens=_deleted(await conn.execute(_REFRESH_TOKENS, batch)),
            login_failures=_deleted(await conn.execute(_LOGIN_FAILURES, batch, float(lockout_s))),
            rate_limits=_deleted(await conn.execute(_RATE_LIMITS, batch)),
        )


async def run_housekeeping(db: Database, interval_s: float, lockout_s: int) -> None:
    async def job() -> None:
        swept = await _sweep_backlog(db, lockout_s)
        if swept is not None and swept.total:
            log.info(
                "housekeeping deleted dead rows",
                extra={
                    "refresh_tokens": swept.refresh_tokens,
                    "login_failures": swept.login_failures,
                    "rate_limits": swept.rate_limits,
                },
            )

    # Not at startup: a rolling deploy would otherwise sweep once per new replica.
    await every(interval_s, job, log, "housekeeping sweep", wait_first=True)


async def _sweep_backlog(db: Database, lockout_s: int) -> Swept | None:
    """A full batch means a backlog: keep sweeping, one short transaction per batch."""
    total = swept = await sweep(db, lockout_s=lockout_s)
    if total is None:
        return None
    while swept is not None and swept.most >= BATCH:
        swept = await sweep(db, lockout_s=lockout_s)
        total += swept or Swept()
    return total


def _deleted(status: str) -> int:
    # asyncpg returns the command tag, e.g. "DELETE 42".
    return int(status.rsplit(" ", 1)[1])
