"""JWTs with a pinned algorithm, a key id per signing key, and typed tokens.

Access tokens verify against the current key, and against the previous one until its
cutoff (JWT_PREVIOUS_NOT_AFTER), so a routine rotation (runbook section 12) logs nobody out
mid-session while a leaked previous key stops minting tokens one access lifetime later.
Refresh tokens verify only against the current key, so a rotation ends every refresh token.
Whatever key signed it, a token whose `exp - iat` exceeds its type's configured lifetime is
refused: a key holder cannot mint a token that outlives the rotation that retires the key.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from service.settings import Settings

TokenType = Literal["access", "refresh"]
_CACHE_SIZE = 4096
LEEWAY_S = 5  # clock skew allowed on exp, nbf and iat, and on a token's lifetime
_REQUIRED = ["exp", "nbf", "iat", "iss", "aud", "sub", "typ", "jti"]


class InvalidToken(Exception):
    """The token must not be trusted; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class Claims:
    subject: int
    role: str
    token_type: TokenType
    token_id: uuid.UUID
    family_id: uuid.UUID | None
    kid: str
    expires_at: int
    # The session (refresh-token family) an access token was issued for; None on tokens
    # issued before access tokens carried it.
    session_id: uuid.UUID | None = None


class TokenService:
    def __init__(self, settings: Settings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.access_ttl = settings.access_token_ttl_s
        self.refresh_ttl = settings.refresh_token_ttl_s
        self._max_lifetime: dict[TokenType, int] = {
            "access": settings.access_token_ttl_s + LEEWAY_S,
            "refresh": settings.refresh_token_ttl_s + LEEWAY_S,
        }
        self.current_kid = settings.jwt_kid
        self._keys = {settings.jwt_kid: settings.jwt_secret}
        # kid -> Unix time after which its tokens are refused. A previous key already past
        # its cutoff is not loaded at all.
        self._not_after: dict[str, float] = {}
        cutoff = settings.jwt_previous_not_after
        if settings.jwt_previous_secret and cutoff and cutoff.timestamp() > time.time():
            self._keys[settings.jwt_previous_kid] = settings.jwt_previous_secret
            self._not_after[settings.jwt_previous_kid] = cutoff.timestamp()
        # Access tokens already verified by this process, each with the time it stays good
        # until: its expiry, or its key's cutoff if that comes first. Clients reuse an access
        # token for its whole life, and the keys cannot change without a restart, so a hit is
        # as good as a fresh verification and skips the HMAC and claim parsing.
        self._verified: dict[str, tuple[Claims, float]] = {}

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims,
            self._keys[self.current_kid],
            algorithm=self._algorithm,
            headers={"kid": self.current_kid},
        )

    def _base(self, user_id: int, role: str, token_type: TokenType, ttl: int) -> dict[str, Any]:
        now = int(time.time())
        return {
            "sub": str(user_id),
            "role": role,
            "typ": token_type,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
        }

    def issue_access(
        self,
        user_id: int,
        role: str,
        session_id: uuid.UUID | None = None,
        ttl: int | None = None,
    ) -> str:
        """`ttl` shortens the lifetime (a session close to its end), never lengthens it."""
        claims = self._base(user_id, role, "access", _shorter(ttl, self.access_ttl))
        if session_id is not None:
            claims["sid"] = str(session_id)
        return self._encode(claims)

    def issue_refresh(
        self,
        user_id: int,
        role: str,
        token_id: uuid.UUID,
        family_id: uuid.UUID,
        ttl: int | None = None,
    ) -> str:
        claims = self._base(user_id, role, "refresh", _shorter(ttl, self.refresh_ttl))
        claims.update(jti=str(token_id), fam=str(family_id))
        return self._encode(claims)

    def decode(self, token: str, expected: TokenType) -> Claims:
        if expected == "access":
            cached = self._verified.get(token)
            if cached is not None and cached[1] > time.time():
                return cached[0]
        claims = self._decode(token, expected)
        if expected == "access":
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            good_until = min(claims.expires_at, self._not_after.get(claims.kid, math.inf))
            self._verified[token] = (claims, good_until)
        return claims

    def _decode(self, token: str, expected: TokenType) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != self._algorithm:
            raise InvalidToken("unexpected signing algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise InvalidToken("unknown signing key")
        if expected == "refresh" and kid != self.current_kid:
            raise InvalidToken("token was signed with a retired key; log in again")
        if kid in self._not_after and time.time() > self._not_after[kid]:
            raise InvalidToken("token was signed with a retired key; log in again")
        try:
            claims = jwt.decode(
                token,
                self._keys[kid],
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED},
                leeway=LEEWAY_S,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        if claims.get("typ") != expected:
            raise InvalidToken(f"expected an {expected} token")
        # PyJWT has checked that both are numbers.
        if float(claims["exp"]) - float(claims["iat"]) > self._max_lifetime[expected]:
            raise InvalidToken("token lifetime exceeds the configured maximum")
        try:
            return Claims(
                subject=int(claims["sub"]),
                role=str(claims.get("role", "user")),
                token_type=expected,
                token_id=uuid.UUID(str(claims["jti"])),
                family_id=uuid.UUID(str(claims["fam"])) if "fam" in claims else None,
                kid=kid,
                expires_at=int(claims["exp"]),
                session_id=uuid.UUID(str(claims["sid"])) if "sid" in claims else None,
            )
        except (ValueError, KeyError):
            raise InvalidToken("invalid token claims") from None


def _shorter(ttl: int | None, configured: int) -> int:
    return configured if ttl is None else max(1, min(ttl, configured))
