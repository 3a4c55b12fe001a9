"""What the resource routers share: the documented error shape, opaque cursors, id bounds."""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from service.errors import ApiError
from service.state import AppState

MAX_BIGINT = 2**63 - 1
MAX_PAGE = 100
DEFAULT_PAGE = 50

# Bounded so that an out-of-range id is a 422, not an asyncpg overflow (500).
ResourceId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Opaque: pass the previous page's next_cursor unchanged.",
    ),
]
Limit = Annotated[
    int,
    Query(ge=1, description=f"Page size; values above {MAX_PAGE} are treated as {MAX_PAGE}."),
]


class FieldError(BaseModel):
    field: str
    message: str


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    requestId: str
    fields: list[FieldError] | None = Field(None, description="Present on 422 validation errors")
    skus: list[str] | None = Field(None, description="The order lines at fault (404, 409)")


class ErrorResponse(BaseModel):
    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Malformed request: the body could not be parsed",
    401: "Missing, expired or invalid bearer token",
    403: "Authenticated, but the role does not allow this",
    404: "Not found",
    409: "Conflicts with the current state",
    412: "If-Match does not match the current ETag",
    413: "Request body too large",
    415: "Request body is not application/json",
    422: "Request failed validation",
    428: "If-Match is required",
    429: "Rate limited; see Retry-After",
    500: "Internal error",
    503: "Temporarily unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entries for these statuses, all in the standard error shape."""
    return {s: {"model": ErrorResponse, "description": _DESCRIPTIONS[s]} for s in statuses}


def header_doc(description: str, *, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


def page_size(limit: int) -> int:
    return min(limit, MAX_PAGE)


def encode_cursor(kind: str, last_id: int) -> str:
    raw = f"{kind}:{last_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(kind: str, cursor: str | None) -> int | None:
    """The id a cursor points after; a cursor from another resource is refused."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except ValueError:
        text = ""
    prefix, _, number = text.partition(":")
    if prefix == kind and number.isascii() and number.isdigit() and 0 < int(number) <= MAX_BIGINT:
        return int(number)
    raise ApiError(422, "invalid cursor; pass next_cursor back unchanged", code="invalid_cursor")


async def refuse_breached(state: AppState, password: str) -> None:
    """422 `password_breached` for a new password in BREACHED_PASSWORDS_FILE (the bundled
    list of common ones is checked with the rest of the policy, in service/models.py)."""
    if state.breached is not None and await asyncio.to_thread(state.breached.seen, password):
        raise ApiError(
            422,
            "this password appears in a list of breached passwords; choose another",
            code="password_breached",
        )
