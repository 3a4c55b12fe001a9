"""Failed logins per source address, across accounts (runbook section 5).

The lockout (lockout.py) is per account, so on its own one address could lock every
account it can name: five guesses each, as fast as the auth rate limit allows. This caps
the failed logins one address may make in a window (LOGIN_SOURCE_MAX_FAILURES per
LOGIN_SOURCE_WINDOW_S); past it, that address's logins are refused before any account is
touched, so it locks no more accounts, while every other address logs in as before.

Counts live in the rate limiter's backend (memory per replica, or PostgreSQL shared by all).
The check and the count are separate steps, so parallel failures from one address can pass
the cap by as many as are in flight; the per-account lockout still bounds each account.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.security.ratelimit import RateLimiter


class LoginThrottle:
    def __init__(self, limiter: RateLimiter, max_failures: int, window_s: int) -> None:
        self._limiter = limiter
        self._max = max_failures
        self._window_s = window_s

    @staticmethod
    def _key(source: str) -> str:
        return f"login-failures:{source}"

    async def refused(self, source: str) -> int | None:
        """Seconds until the address may try again, or None when it may try now."""
        decision = await self._limiter.peek(self._key(source), self._max, self._window_s)
        return None if decision.allowed else decision.reset_s

    async def failed(self, source: str) -> None:
        """A login from the address failed: a wrong password, or a locked account."""
        await self._limiter.hit(self._key(source), self._max, self._window_s)
