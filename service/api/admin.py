"""Administrative routes. Deleting an account removes its sessions and orders with it, which
is how the deploy's smoke suite leaves nothing behind."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.common import ResourceId, error_responses
from service.deps import DB, AdminUser
from service.errors import ApiError

router = APIRouter(prefix="/api/admin", tags=["admin"])


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
