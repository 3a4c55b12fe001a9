"""A user's sessions as the user and admins see them: listed, ended one at a time, or all
at once (an admin's action, or a password change keeping the caller's own).

A session is a refresh-token family (security/refresh.py). It is live while its newest
token is unused, unrevoked and unexpired, and its absolute lifetime has not run out. Ending
one revokes every token of its family, so its next refresh is refused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from service.security.refresh import STARTED_AT

if TYPE_CHECKING:
    import asyncpg

    from service.db import Database

# $1 user id. One row per live family: only its newest token is unused (rotation marks the
# presented token used before it issues the successor). Its issue time is the last refresh.
_LIVE = f"""
    SELECT r.family_id, {STARTED_AT} AS started_at, r.issued_at AS last_used_at, r.expires_at
    FROM refresh_tokens r
    WHERE r.user_id = $1 AND r.used_at IS NULL AND r.revoked_at IS NULL AND r.expires_at > now()
"""  # noqa: S608 - STARTED_AT is a constant
# $1 family, $2 user: revokes the family only if it is this user's and live.
_END_ONE = """
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL
      AND EXISTS (SELECT 1 FROM refresh_tokens live
                  WHERE live.family_id = $1 AND live.user_id = $2 AND live.used_at IS NULL
                    AND live.revoked_at IS NULL AND live.expires_at > now())
"""
# $1 user, $2 a family to keep (or NULL). Counts the live sessions among those ended.
_END_ALL = """
    WITH ended AS (
        UPDATE refresh_tokens SET revoked_at = now()
        WHERE user_id = $1 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $2
        RETURNING family_id, used_at, expires_at)
    SELECT count(DISTINCT family_id) FILTER (WHERE used_at IS NULL AND expires_at > now())
    FROM ended
"""


@dataclass(frozen=True, slots=True)
class LiveSession:
    session_id: uuid.UUID
    started_at: datetime
    last_used_at: datetime
    expires_at: datetime


async def live_sessions(db: Database, user_id: int, max_age: timedelta) -> list[LiveSession]:
    """The user's live sessions, newest first; each expires at its refresh token's expiry
    or at the session's absolute end, whichever is sooner."""
    now = datetime.now(UTC)
    sessions = [
        LiveSession(
            row["family_id"],
            row["started_at"],
            row["last_used_at"],
            min(row["expires_at"], row["started_at"] + max_age),
        )
        for row in await db.fetch(_LIVE, user_id)
    ]
    live = [s for s in sessions if s.expires_at > now]
    return sorted(live, key=lambda s: s.started_at, reverse=True)


async def end_session(db: Database, user_id: int, session_id: uuid.UUID) -> bool:
    """End one of the user's live sessions; False when the user has no such session (it
    never existed, has ended, or is another user's: the caller cannot tell which)."""
    return await db.execute(_END_ONE, session_id, user_id) != "UPDATE 0"


async def end_sessions(
    conn: asyncpg.Connection | Database, user_id: int, keep: uuid.UUID | None = None
) -> int:
    """End every session of the user but `keep`; the number of live sessions ended."""
    ended: int = await conn.fetchval(_END_ALL, user_id, keep)
    return ended


async def session_is_live(db: Database, user_id: int, session_id: uuid.UUID) -> bool:
    live: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND user_id = $2 "
        "AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now())",
        session_id,
        user_id,
    )
    return live
