"""The caller's own sessions and password (runbook section 5), under /api/auth.

A session is one login: its id is the refresh-token family's, and access tokens name it in
their `sid` claim, which is how the caller's current session is known. Ending a session
refuses its next refresh at once; an access token already issued for it stays valid until
it expires (at most ACCESS_TOKEN_TTL_S), except here: these routes refuse a token whose own
session has ended (code `session_ended`), since they read the database anyway.

Changing the password takes the current one, checked with the same lockout as a login, and
ends every other session of the user. The caller's session is kept, refresh token included,
so the client carries on; a token that names no session (issued before tokens carried
`sid`) keeps none.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Response

from service.api.auth import (
    CHALLENGE,
    Guard,
    LoginPassword,
    auth_responses,
    locked_error,
)
from service.api.common import refuse_breached
from service.deps import CurrentUser, Principal, State
from service.errors import ApiError
from service.models import Password, StrictModel
from service.security.events import security_event
from service.security.passwords import hash_password_async, verify_password_async
from service.security.user_sessions import (
    end_session,
    end_sessions,
    live_sessions,
    session_is_live,
)
from service.state import AppState

router = APIRouter(prefix="/api/auth", tags=["auth"])


class SessionOut(StrictModel):
    id: uuid.UUID
    started_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class SessionList(StrictModel):
    sessions: list[SessionOut]


class PasswordChange(StrictModel):
    # Checked like a login password (no policy): the policy applies to the new one. The new
    # one may equal the current one: no password history (ASVS 2.1.10), and re-entering the
    # same password is a way to end every other session.
    current_password: LoginPassword
    new_password: Password


class PasswordChanged(StrictModel):
    sessions_ended: int
    current_session_kept: bool


def _responses(*statuses: int, body: bool = True) -> dict[int | str, dict[str, Any]]:
    responses = auth_responses(*statuses, body=body)
    if 401 in responses:
        responses[401]["description"] = (
            "Missing, expired or invalid bearer token, or its session has ended "
            "(code session_ended)"
        )
    return responses


def _max_age(state: AppState) -> timedelta:
    return timedelta(days=state.settings.session_max_days)


def _session_ended() -> ApiError:
    return ApiError(
        401, "this session has ended; log in again", code="session_ended", headers=CHALLENGE
    )


async def _require_live(state: AppState, user: Principal) -> None:
    if user.session_id is not None and not await session_is_live(
        state.db, user.user_id, user.session_id
    ):
        raise _session_ended()


@router.get(
    "/sessions",
    summary="The caller's live sessions, newest first; `current` marks the caller's own",
    responses=_responses(401, 429, body=False),
)
async def list_sessions(user: CurrentUser, state: State) -> SessionList:
    sessions = await live_sessions(state.db, user.user_id, _max_age(state))
    if user.session_id is not None and all(s.session_id != user.session_id for s in sessions):
        raise _session_ended()
    return SessionList(
        sessions=[
            SessionOut(
                id=s.session_id,
                started_at=s.started_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                current=s.session_id == user.session_id,
            )
            for s in sessions
        ]
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    response_class=Response,
    summary="End one of the caller's sessions (its refresh token is refused from now on)",
    responses=_responses(401, 404, 422, 429, body=False),
)
async def delete_session(session_id: uuid.UUID, user: CurrentUser, state: State) -> Response:
    await _require_live(state, user)
    if not await end_session(state.db, user.user_id, session_id):
        # The same answer whether it never existed, has ended, or is another user's.
        raise ApiError(404, "you have no live session with this id", code="session_not_found")
    security_event("session_ended", user_id=user.user_id, session_id=str(session_id), how="ended")
    return Response(status_code=204)


_PASSWORD_RESPONSES = _responses(401, 403, 413, 415, 422, 429)
_PASSWORD_RESPONSES[403]["description"] = "The current password is wrong (code invalid_credentials)"


@router.post(
    "/password",
    summary="Change the caller's password; every other session of the caller ends",
    responses=_PASSWORD_RESPONSES,
)
async def change_password(
    body: PasswordChange, user: CurrentUser, state: State, guard: Guard
) -> PasswordChanged:
    account = await state.db.fetchrow(
        "SELECT email, password_hash FROM users WHERE id = $1", user.user_id
    )
    if account is None:
        raise ApiError(401, "account no longer exists", code="invalid_token", headers=CHALLENGE)
    await _require_live(state, user)
    email = account["email"]
    verdict = await guard.claim(email)
    if verdict.retry_after is not None:
        raise locked_error(state, verdict, email, user.user_id)
    if not await verify_password_async(account["password_hash"], body.current_password):
        state.metrics.login_failures.inc()
        security_event("login_failed", user_id=user.user_id, via="password_change")
        verdict = await guard.failed(email)
        if verdict.retry_after is not None:
            raise locked_error(state, verdict, email, user.user_id)
        raise ApiError(403, "the current password is wrong", code="invalid_credentials")
    await guard.succeeded(email)
    await refuse_breached(state, body.new_password)
    password_hash = await hash_password_async(body.new_password)
    async with state.db.transaction() as conn:
        await conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", user.user_id, password_hash
        )
        ended = await end_sessions(conn, user.user_id, keep=user.session_id)
    security_event("password_changed", user_id=user.user_id, sessions_ended=ended)
    return PasswordChanged(sessions_ended=ended, current_session_kept=user.session_id is not None)
