"""Sessions: access tokens plus refresh tokens that are stored hashed and rotated on use.

A family is the chain of refresh tokens descending from one login. Each refresh marks the
presented token used and issues its successor in the same transaction. Presenting a token
that was already used means two parties hold the chain (a stolen token, or a client racing
itself, which cannot be told apart), so the whole family is revoked and both must log in
again. Refresh tokens verify only against the current signing key (see tokens.py), so
rotating the key ends every session at its next refresh.

A family is also a session with an absolute lifetime (SESSION_MAX_DAYS from its login):
each successor carries the family's start, its expiry and its access token's are cut to the
session's end, and a refresh past the end is refused, so a refresh token used every week
does not live forever. Rows written before `session_started_at` existed (by the release
before) start at the family's oldest remaining `issued_at`.

Access tokens name their session (`sid`), so a caller's current session is known; they are
not stored, so ending a session stops its refreshes at once while its access token lives
out its ACCESS_TOKEN_TTL_S.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from service.security.events import security_event
from service.security.tokens import Claims, InvalidToken, TokenService

if TYPE_CHECKING:
    import asyncpg

    from service.db import Database

_INSERT = """
    INSERT INTO refresh_tokens
        (id, user_id, family_id, token_hash, kid, expires_at, session_started_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
# The family's start, for a row `r`; see the module docstring for rows without one.
STARTED_AT = """coalesce(r.session_started_at,
             (SELECT min(f.issued_at) FROM refresh_tokens f WHERE f.family_id = r.family_id))"""
# FOR UPDATE serialises concurrent refreshes of one token: the second waits for the first
# to commit and then sees it used.
_LOCK = f"""
    SELECT r.user_id, r.family_id, r.token_hash, r.kid, r.used_at, r.revoked_at,
           r.expires_at <= now() AS expired, u.role, {STARTED_AT} AS started_at
    FROM refresh_tokens r JOIN users u ON u.id = r.user_id
    WHERE r.id = $1
    FOR UPDATE OF r
"""  # noqa: S608 - STARTED_AT is a constant
_REVOKE_FAMILY = """
    UPDATE refresh_tokens SET revoked_at = now()
    WHERE family_id = $1 AND revoked_at IS NULL
"""


class RefreshRejected(InvalidToken):
    """The refresh token must not be honoured; `code` tells the client why."""

    def __init__(self, message: str, code: str = "invalid_token") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Session:
    access_token: str
    refresh_token: str
    expires_in: int


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Sessions:
    def __init__(self, db: Database, tokens: TokenService, max_age: timedelta) -> None:
        self._db = db
        self._tokens = tokens
        self._max_age = max_age

    async def start(self, user_id: int, role: str) -> Session:
        """A new session (a new family) after a successful login."""
        async with self._db.connection() as conn:
            return await self._issue(conn, user_id, role, uuid.uuid4(), datetime.now(UTC))

    async def rotate(self, refresh_token: str) -> Session:
        """Exchange a refresh token for a new pair; raises RefreshRejected or InvalidToken."""
        claims = self._tokens.decode(refresh_token, "refresh")
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(_LOCK, claims.token_id)
            problem = _problem(row, refresh_token, claims, self._max_age)
            if problem is None:
                assert row is not None
                await conn.execute(
                    "UPDATE refresh_tokens SET used_at = now() WHERE id = $1", claims.token_id
                )
                return await self._issue(
                    conn, row["user_id"], row["role"], row["family_id"], row["started_at"]
                )
            if problem.code == "token_reused":
                assert row is not None
                # Committed before answering: the revocation must outlive this request.
                await conn.execute(_REVOKE_FAMILY, row["family_id"])
        if problem.code == "token_reused":
            assert row is not None
            security_event(
                "refresh_reused", user_id=row["user_id"], session_id=str(row["family_id"])
            )
        raise problem

    async def revoke(self, refresh_token: str) -> None:
        """Log out: revoke the token's whole family. Idempotent for a validly signed token."""
        claims = self._tokens.decode(refresh_token, "refresh")
        ended = await self._db.fetch(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND "
            "family_id = (SELECT family_id FROM refresh_tokens WHERE id = $1 AND token_hash = $2) "
            "RETURNING user_id, family_id",
            claims.token_id,
            token_digest(refresh_token),
        )
        if ended:  # one row per token of the family; nothing when it had already ended
            security_event(
                "session_ended",
                user_id=ended[0]["user_id"],
                session_id=str(ended[0]["family_id"]),
                how="logout",
            )

    async def _issue(
        self,
        conn: asyncpg.Connection,
        user_id: int,
        role: str,
        family_id: uuid.UUID,
        started_at: datetime,
    ) -> Session:
        now = datetime.now(UTC)
        # Neither token outlives the session; the check in _problem keeps this positive.
        left = max(1, int((started_at + self._max_age - now).total_seconds()))
        refresh_ttl = min(self._tokens.refresh_ttl, left)
        access_ttl = min(self._tokens.access_ttl, left)
        token_id = uuid.uuid4()
        refresh = self._tokens.issue_refresh(user_id, role, token_id, family_id, refresh_ttl)
        await conn.execute(
            _INSERT,
            token_id,
            user_id,
            family_id,
            token_digest(refresh),
            self._tokens.current_kid,
            now + timedelta(seconds=refresh_ttl),
            started_at,
        )
        access = self._tokens.issue_access(user_id, role, family_id, access_ttl)
        return Session(access, refresh, access_ttl)


def _problem(
    row: asyncpg.Record | None, refresh_token: str, claims: Claims, max_age: timedelta
) -> RefreshRejected | None:
    if row is None or not hmac.compare_digest(row["token_hash"], token_digest(refresh_token)):
        return RefreshRejected("unknown refresh token")
    if row["family_id"] != claims.family_id or row["kid"] != claims.kid:
        return RefreshRejected("refresh token does not match its record")
    if row["revoked_at"] is not None:
        return RefreshRejected("refresh token revoked; log in again", "token_revoked")
    if row["used_at"] is not None:
        return RefreshRejected(
            "refresh token already used; every session in its chain is revoked", "token_reused"
        )
    if row["started_at"] + max_age <= datetime.now(UTC):
        return RefreshRejected(
            f"the session reached its maximum lifetime of {_span(max_age)}; log in again",
            "session_expired",
        )
    if row["expired"]:
        return RefreshRejected("refresh token expired", "token_expired")
    return None


def _span(lifetime: timedelta) -> str:
    hours = lifetime.total_seconds() / 3600
    if hours % 24 == 0:
        return f"{hours / 24:g} days"
    return f"{hours:g} hour" + ("" if hours == 1 else "s")
