"""Rate limiting (runbook section 5): fixed windows per client address and route class.

Two backends behind one interface. `MemoryRateLimiter` counts per replica, so N replicas
allow up to N times the limit; `PostgresRateLimiter` shares counts across replicas at the
cost of one round trip per limited request.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from service.db import Database


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int


class RateLimiter(Protocol):
    # Whether `hit` may wait on I/O; the edge then runs it inside the request's deadline.
    waits: bool

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        """Count one more hit in the key's current window and judge it."""
        ...

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """Whether one more hit would be allowed, without counting one."""
        ...


def _decide(count: int, limit: int, window_start: float, window_s: int, now: float) -> Decision:
    reset = max(1, math.ceil(window_start + window_s - now))
    return Decision(count <= limit, limit, max(0, limit - count), reset)


class MemoryRateLimiter:
    """Per-process counters; cheap enough for every request."""

    MAX_KEYS = 50_000
    waits = False

    def __init__(self) -> None:
        self._windows: dict[str, list[float]] = {}
        self._now = time.monotonic

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        now = self._now()
        window = self._windows.get(key)
        if window is None or now - window[0] >= window_s:
            if len(self._windows) >= self.MAX_KEYS:
                self._sweep(now, window_s)
            window = self._windows[key] = [now, 0.0]
        window[1] += 1
        return _decide(int(window[1]), limit, window[0], window_s, now)

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        now = self._now()
        window = self._windows.get(key)
        if window is None or now - window[0] >= window_s:
            return Decision(True, limit, limit, window_s)
        return _decide(int(window[1]) + 1, limit, window[0], window_s, now)

    def _sweep(self, now: float, window_s: int) -> None:
        expired = [k for k, (start, _) in self._windows.items() if now - start >= window_s]
        for key in expired:
            del self._windows[key]


class PostgresRateLimiter:
    """Counters in PostgreSQL, shared by every replica on the same database."""

    waits = True

    _HIT = """
        INSERT INTO rate_limits AS r (bucket, window_start, hits)
        VALUES ($1, now(), 1)
        ON CONFLICT (bucket) DO UPDATE SET
            window_start = CASE WHEN r.window_start <= now() - make_interval(secs => $2)
                                THEN now() ELSE r.window_start END,
            hits = CASE WHEN r.window_start <= now() - make_interval(secs => $2)
                        THEN 1 ELSE r.hits + 1 END
        RETURNING hits, extract(epoch FROM r.window_start + make_interval(secs => $2) - now())
            AS reset_in
    """

    _PEEK = """
        SELECT hits, extract(epoch FROM window_start + make_interval(secs => $2) - now())
            AS reset_in
        FROM rate_limits
        WHERE bucket = $1 AND window_start > now() - make_interval(secs => $2)
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def hit(self, key: str, limit: int, window_s: int) -> Decision:
        row = await self._db.fetchrow(self._HIT, key, float(window_s))
        assert row is not None
        return _counted(int(row["hits"]), limit, float(row["reset_in"]))

    async def peek(self, key: str, limit: int, window_s: int) -> Decision:
        row = await self._db.fetchrow(self._PEEK, key, float(window_s))
        if row is None:
            return Decision(True, limit, limit, window_s)
        return _counted(int(row["hits"]) + 1, limit, float(row["reset_in"]))


def _counted(count: int, limit: int, reset_in: float) -> Decision:
    return Decision(count <= limit, limit, max(0, limit - count), max(1, math.ceil(reset_in)))
