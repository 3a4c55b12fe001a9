"""Sessions: access tokens plus refresh tokens that are stored hashed and rotated on use.

A family is the chain of refresh tokens descending from one login. Each refresh marks the
presented token used and issues its successor in the same transaction. Presenting a token
that was already used means two parties hold the chain (a stolen token, or a client racing
itself, which cannot be told apart), so the whole family is revoked and both must log in
again. Refresh tokens verify only against the current signing key (see tokens.py), so
rotating the key ends every session at its next refresh.
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
    INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, kid, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6)
"""
# FOR UPDATE serialises concurrent refreshes of one token: the second waits for the first
# to commit and then sees it used.
_LOCK = """
    SELECT r.user_id, r.family_id, r.token_hash, r.kid, r.used_at, r.revoked_at,
           r.expires_at <= now() AS expired, u.role
    FROM refresh_tokens r JOIN users u ON u.id = r.user_id
    WHERE r.id = $1
    FOR UPDATE OF r
"""
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
    def __init__(self, db: Database, tokens: TokenService) -> None:
        self._db = db
        self._tokens = tokens

    async def start(self, user_id: int, role: str) -> Session:
        """A new session (a new family) after a successful login."""
        async with self._db.connection() as conn:
            return await self._issue(conn, user_id, role, uuid.uuid4())

    async def rotate(self, refresh_token: str) -> Session:
        """Exchange a refresh token for a new pair; raises RefreshRejected or InvalidToken."""
        claims = self._tokens.decode(refresh_token, "refresh")
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(_LOCK, claims.token_id)
            problem = _problem(row, refresh_token, claims)
            if problem is None:
                assert row is not None
                await conn.execute(
                    "UPDATE refresh_tokens SET used_at = now() WHERE id = $1", claims.token_id
                )
                return await self._issue(conn, row["user_id"], row["role"], row["family_id"])
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
        await self._db.execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND "
            "family_id = (SELECT family_id FROM refresh_tokens WHERE id = $1 AND token_hash = $2)",
            claims.token_id,
            token_digest(refresh_token),
        )

    async def _issue(
        self, conn: asyncpg.Connection, user_id: int, role: str, family_id: uuid.UUID
    ) -> Session:
        token_id = uuid.uuid4()
        refresh = self._tokens.issue_refresh(user_id, role, token_id, family_id)
        expires_at = datetime.now(UTC) + timedelta(seconds=self._tokens.refresh_ttl)
        await conn.execute(
            _INSERT,
            token_id,
            user_id,
            family_id,
            token_digest(refresh),
            self._tokens.current_kid,
            expires_at,
        )
        access = self._tokens.issue_access(user_id, role)
        return Session(access, refresh, self._tokens.access_ttl)


def _problem(
    row: asyncpg.Record | None, refresh_token: str, claims: Claims
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
    if row["expired"]:
        return RefreshRejected("refresh token expired", "token_expired")
    return None
