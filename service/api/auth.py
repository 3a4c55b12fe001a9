"""Auth routes (runbook section 7): register, login, refresh, logout, and who-am-I.

Locked accounts answer **429** with code `account_locked` and `Retry-After` (seconds until
the lock lifts), not 423: clients already back off on 429 + Retry-After, and the edge's
rate limiting answers the same way. The lock is per account (normalised email, whether or
not it exists) and lives in PostgreSQL; see service/security/lockout.py. An address past
its failed-login budget across accounts answers 429 with code `login_throttled` before any
account is touched; see service/security/throttle.py.

Every response under /api/auth carries `Cache-Control: no-store` (set by the edge).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import StringConstraints

from service.api.common import ErrorResponse, error_responses, refuse_breached
from service.deps import DB, CurrentUser, State
from service.errors import ApiError
from service.models import MAX_PASSWORD, Email, Password, StrictModel
from service.security.events import email_hash, security_event
from service.security.lockout import LoginGuard, Verdict
from service.security.passwords import hash_password_async, needs_rehash, verify_password_async
from service.security.refresh import RefreshRejected, Session, Sessions
from service.security.throttle import LoginThrottle
from service.security.tokens import InvalidToken
from service.state import AppState

router = APIRouter(prefix="/api/auth", tags=["auth"])

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="drydock"'}
_AUTH_WORDING = {
    401: "Wrong credentials, or a token that is invalid, expired, revoked or reused",
    429: "Rate limited, the account is locked (code account_locked), or this address made "
    "too many failed logins (code login_throttled); see Retry-After",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
# Login checks no password policy, so that raising the policy never locks out old accounts.
LoginPassword = Annotated[
    str, StringConstraints(strip_whitespace=False, min_length=1, max_length=MAX_PASSWORD)
]
Jwt = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[A-Za-z0-9_=.-]+$")]


class Credentials(StrictModel):
    email: Email
    password: Password


class LoginRequest(StrictModel):
    email: Email
    password: LoginPassword


class RefreshRequest(StrictModel):
    refresh_token: Jwt


class TokenPair(StrictModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth 2 type, not a secret
    expires_in: int

    @classmethod
    def of(cls, session: Session) -> TokenPair:
        return cls(
            access_token=session.access_token,
            refresh_token=session.refresh_token,
            expires_in=session.expires_in,
        )


class UserOut(StrictModel):
    id: int
    email: str
    role: Literal["user", "admin"]


def auth_responses(*statuses: int, body: bool = True) -> dict[int | str, dict[str, Any]]:
    responses = error_responses(*statuses)
    if body:  # FastAPI answers 400 to a body that is not even decodable JSON
        responses[400] = {"model": ErrorResponse, "description": "Malformed JSON body"}
    for status, wording in _AUTH_WORDING.items():
        if status in responses:
            responses[status] = {**responses[status], "description": wording}
    if 429 in responses:
        responses[429]["headers"] = _RETRY_AFTER
    return responses


async def get_guard(state: State) -> LoginGuard:
    s = state.settings
    return LoginGuard(state.db, s.login_max_failures, s.login_lockout_s)


async def get_sessions(state: State) -> Sessions:
    return Sessions(state.db, state.tokens, timedelta(days=state.settings.session_max_days))


async def get_throttle(state: State) -> LoginThrottle:
    s = state.settings
    return LoginThrottle(state.limiter, s.login_source_max_failures, s.login_source_window_s)


Guard = Annotated[LoginGuard, Depends(get_guard)]
SessionStore = Annotated[Sessions, Depends(get_sessions)]
Throttle = Annotated[LoginThrottle, Depends(get_throttle)]


@router.post(
    "/register",
    status_code=201,
    summary="Create an account (403 while the REGISTRATION_OPEN flag is off)",
    responses=auth_responses(403, 409, 413, 415, 422, 429),
)
async def register(body: Credentials, state: State) -> UserOut:
    if not state.settings.flags["REGISTRATION_OPEN"]:
        raise ApiError(403, "registration is closed", code="registration_closed")
    await refuse_breached(state, body.password)
    password_hash = await hash_password_async(body.password)
    row = await state.db.fetchrow(
        "INSERT INTO users (email, password_hash) VALUES ($1, $2) "
        "ON CONFLICT (email) DO NOTHING RETURNING id, email, role",
        body.email,
        password_hash,
    )
    if row is None:
        raise ApiError(409, "an account with this email already exists", code="email_taken")
    return UserOut(id=row["id"], email=row["email"], role=row["role"])


def account_fields(email: str, user_id: int | None) -> dict[str, Any]:
    """How a security event names the account: its id, or a hash of an unknown email."""
    if user_id is not None:
        return {"user_id": user_id}
    return {"user_id": None, "email_hash": email_hash(email)}


def locked_error(state: AppState, verdict: Verdict, email: str, user_id: int | None) -> ApiError:
    if verdict.newly_locked:
        state.metrics.lockouts.inc()
        security_event("account_locked", **account_fields(email, user_id))
    return ApiError(
        429,
        "account temporarily locked after too many failed logins",
        code="account_locked",
        headers={"Retry-After": str(verdict.retry_after)},
    )


async def _user_id(state: AppState, email: str) -> int | None:
    user_id: int | None = await state.db.fetchval("SELECT id FROM users WHERE email = $1", email)
    return user_id


@router.post(
    "/login",
    summary="Exchange email and password for an access and a refresh token",
    responses=auth_responses(401, 413, 415, 422, 429),
)
async def login(
    body: LoginRequest,
    request: Request,
    state: State,
    guard: Guard,
    sessions: SessionStore,
    throttle: Throttle,
) -> TokenPair:
    source: str = request.state.client_ip  # resolved by the edge (trusted proxies only)
    retry_after = await throttle.refused(source)
    if retry_after is not None:
        security_event(
            "login_throttled", user_id=None, email_hash=email_hash(body.email), source=source
        )
        raise ApiError(
            429,
            "too many failed logins from this address; retry later",
            code="login_throttled",
            headers={"Retry-After": str(retry_after)},
        )
    verdict = await guard.claim(body.email)
    if verdict.retry_after is not None:
        await throttle.failed(source)
        # Parallel guesses locked it before any password was checked (rare): name the account.
        user_id = await _user_id(state, body.email) if verdict.newly_locked else None
        raise locked_error(state, verdict, body.email, user_id)
    user = await state.db.fetchrow(
        "SELECT id, password_hash, role FROM users WHERE email = $1", body.email
    )
    # Unknown emails are verified too (against a dummy hash) so timing reveals nothing.
    stored_hash: str | None = user["password_hash"] if user else None
    if await verify_password_async(stored_hash, body.password) and user and stored_hash:
        await guard.succeeded(body.email)
        if needs_rehash(stored_hash):
            await state.db.execute(
                "UPDATE users SET password_hash = $2 WHERE id = $1",
                user["id"],
                await hash_password_async(body.password),
            )
        pair = TokenPair.of(await sessions.start(user["id"], user["role"]))
        security_event("login_succeeded", user_id=user["id"], source=source)
        return pair
    state.metrics.login_failures.inc()
    user_id = user["id"] if user else None
    security_event("login_failed", **account_fields(body.email, user_id))
    await throttle.failed(source)
    verdict = await guard.failed(body.email)
    if verdict.retry_after is not None:
        raise locked_error(state, verdict, body.email, user_id)
    raise ApiError(401, "invalid email or password", code="invalid_credentials", headers=CHALLENGE)


@router.post(
    "/refresh",
    summary="Rotate a refresh token into a new pair; reusing a rotated one revokes its chain",
    responses=auth_responses(401, 413, 415, 422, 429),
)
async def refresh(body: RefreshRequest, sessions: SessionStore) -> TokenPair:
    try:
        return TokenPair.of(await sessions.rotate(body.refresh_token))
    except RefreshRejected as exc:
        raise ApiError(401, str(exc), code=exc.code, headers=CHALLENGE) from None
    except InvalidToken as exc:
        raise ApiError(401, str(exc), code="invalid_token", headers=CHALLENGE) from None


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    summary="Revoke the refresh token's whole chain (access tokens lapse at expiry)",
    responses=auth_responses(401, 413, 415, 422, 429),
)
async def logout(body: RefreshRequest, sessions: SessionStore) -> Response:
    try:
        await sessions.revoke(body.refresh_token)
    except InvalidToken as exc:
        raise ApiError(401, str(exc), code="invalid_token", headers=CHALLENGE) from None
    return Response(status_code=204)


@router.get(
    "/me",
    summary="The caller's account",
    responses=auth_responses(401, 429, body=False),
)
async def me(user: CurrentUser, db: DB) -> UserOut:
    row = await db.fetchrow("SELECT id, email, role FROM users WHERE id = $1", user.user_id)
    if row is None:
        raise ApiError(401, "account no longer exists", code="invalid_token", headers=CHALLENGE)
    return UserOut(id=row["id"], email=row["email"], role=row["role"])
