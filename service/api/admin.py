"""Administrative routes. Deleting an account removes its sessions and orders with it, which
is how the deploy's smoke suite leaves nothing behind. Ending an account's sessions refuses
every refresh token it holds; its access tokens lapse within ACCESS_TOKEN_TTL_S."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from service.api.common import ResourceId, error_responses
from service.deps import DB, AdminUser
from service.errors import ApiError
from service.security.events import security_event
from service.security.user_sessions import end_sessions

router = APIRouter(prefix="/api/admin", tags=["admin"])


class SessionsEnded(BaseModel):
    sessions_ended: int


@router.delete(
    "/users/{user_id}",
    status_code=204,
    summary="Delete an account with its orders and sessions (admin)",
    responses=error_responses(401, 403, 404, 409),
)
async def delete_user(user_id: ResourceId, admin: AdminUser, db: DB) -> Response:
    if user_id == admin.user_id:
        raise ApiError(409, "an admin cannot delete their own account", code="self_delete")
    deleted = await db.fetchval("DELETE FROM users WHERE id = $1 RETURNING id", user_id)
    if deleted is None:
        raise ApiError(404, f"user {user_id} not found")
    return Response(status_code=204)


@router.delete(
    "/users/{user_id}/sessions",
    summary="End every session of an account: its refresh tokens are refused (admin)",
    responses=error_responses(401, 403, 404),
)
async def end_user_sessions(user_id: ResourceId, admin: AdminUser, db: DB) -> SessionsEnded:
    if await db.fetchval("SELECT id FROM users WHERE id = $1", user_id) is None:
        raise ApiError(404, f"user {user_id} not found")
    ended = await end_sessions(db, user_id)
    security_event(
        "sessions_revoked", user_id=user_id, admin_id=admin.user_id, sessions_ended=ended
    )
    return SessionsEnded(sessions_ended=ended)
