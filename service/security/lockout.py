"""Brute-force protection for logins (runbook section 5), shared by every replica.

The state lives in the `login_failures` table, keyed by the normalised email whether or
not an account exists, so the answers never reveal which emails are registered.

Every login *claims* an attempt before its password is checked: the counter is bumped
atomically first, so a burst of parallel guesses cannot all slip past a read-then-write
race. `failed_count` therefore counts attempts since the last success.

- The failure that brings the count to `max_failures` locks the account for `lockout_s`.
- A claim that finds the count already at `max_failures` without a lock (parallel guesses
  still in flight) locks it as well, so at most `max_failures` passwords get checked.
- While locked, attempts are refused without checking the password.
- A success deletes the row; an expired lock, or a count left idle for `lockout_s`,
  starts again from zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.db import Database

# $1 email, $2 max failures, $3 lockout seconds. `old`/`new` in RETURNING need PostgreSQL 18.
_CLAIM = """
    INSERT INTO login_failures AS f (email, failed_count, updated_at)
    VALUES ($1, 1, now())
    ON CONFLICT (email) DO UPDATE SET
        failed_count = CASE
            WHEN f.locked_until > now() THEN f.failed_count
            WHEN f.locked_until IS NOT NULL
                 OR f.updated_at <= now() - make_interval(secs => $3) THEN 1
            ELSE f.failed_count + 1 END,
        locked_until = CASE
            WHEN f.locked_until > now() THEN f.locked_until
            WHEN f.locked_until IS NULL AND f.failed_count >= $2
                 AND f.updated_at > now() - make_interval(secs => $3)
                THEN now() + make_interval(secs => $3)
            END,
        updated_at = CASE WHEN f.locked_until > now() THEN f.updated_at ELSE now() END
    RETURNING
        ceil(extract(epoch FROM new.locked_until - now()))::int AS retry_after,
        new.locked_until IS NOT NULL
            AND new.locked_until IS DISTINCT FROM old.locked_until AS newly_locked
"""

_FAILED = """
    UPDATE login_failures
    SET locked_until = now() + make_interval(secs => $3), updated_at = now()
    WHERE email = $1 AND failed_count >= $2 AND locked_until IS NULL
    RETURNING ceil(extract(epoch FROM locked_until - now()))::int AS retry_after
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    """`retry_after` is set (seconds until unlock) when the account is locked."""

    retry_after: int | None = None
    newly_locked: bool = False


class LoginGuard:
    def __init__(self, db: Database, max_failures: int, lockout_s: int) -> None:
        self._db = db
        self._max = max_failures
        self._lockout_s = lockout_s

    async def claim(self, email: str) -> Verdict:
        """Count an attempt before the password is checked; refuse it while locked."""
        row = await self._db.fetchrow(_CLAIM, email, self._max, float(self._lockout_s))
        assert row is not None
        return Verdict(_at_least_one(row["retry_after"]), row["newly_locked"])

    async def failed(self, email: str) -> Verdict:
        """The claimed attempt had a wrong password: lock once the budget is spent."""
        retry_after = await self._db.fetchval(_FAILED, email, self._max, float(self._lockout_s))
        return Verdict(_at_least_one(retry_after), retry_after is not None)

    async def succeeded(self, email: str) -> None:
        await self._db.execute("DELETE FROM login_failures WHERE email = $1", email)


def _at_least_one(seconds: int | None) -> int | None:
    return None if seconds is None else max(1, seconds)
