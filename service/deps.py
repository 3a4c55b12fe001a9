"""Typed FastAPI dependencies: the app state, the database, and the caller's identity.

All are `async def`: FastAPI runs a plain `def` dependency in a worker thread, and that hop
per dependency per request cost more than the rest of an authenticated read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.db import Database
from service.errors import ApiError
from service.security.events import security_event
from service.security.tokens import InvalidToken
from service.settings import Settings
from service.state import AppState


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    role: str
    # The session the access token belongs to (its `sid`), when the token names one.
    session_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.drydock
    return state


State = Annotated[AppState, Depends(get_state)]


async def get_db(state: State) -> Database:
    return state.db


async def get_settings(state: State) -> Settings:
    return state.settings


DB = Annotated[Database, Depends(get_db)]
Config = Annotated[Settings, Depends(get_settings)]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="drydock"'}


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def current_user(request: Request, state: State) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "missing bearer token", headers=_CHALLENGE)
    try:
        claims = state.tokens.decode(token, "access")
    except InvalidToken as exc:
        raise ApiError(401, str(exc), code="invalid_token", headers=_CHALLENGE) from None
    return Principal(claims.subject, claims.role, claims.session_id)


CurrentUser = Annotated[Principal, Depends(current_user)]


async def admin_user(user: CurrentUser) -> Principal:
    if not user.is_admin:
        security_event("access_denied", user_id=user.user_id, needed="admin")
        raise ApiError(403, "admin role required")
    return user


AdminUser = Annotated[Principal, Depends(admin_user)]
