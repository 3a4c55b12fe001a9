"""Inventory: any authenticated user reads, admins write (runbook section 7, smoke "inventory").

Writes use optimistic concurrency: every change bumps `version`, the ETag is that version,
and PATCH must name it in If-Match, so a stale write gets 412 instead of silently winning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, NoReturn, Self

import asyncpg
from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from service.api.common import (
    DEFAULT_PAGE,
    MAX_BIGINT,
    Cursor,
    Limit,
    ResourceId,
    decode_cursor,
    encode_cursor,
    error_responses,
    header_doc,
    page_size,
)
from service.db import Database
from service.deps import DB, AdminUser, CurrentUser, current_user
from service.errors import ApiError
from service.models import Name, Sku, StrictModel

router = APIRouter(prefix="/api/inventory", tags=["inventory"])

MAX_AMOUNT = 10_000_000
MAX_VERSION = 2**31 - 1
# strict: JSON true/false or "5" are not numbers, and the spec says integer.
PriceCents = Annotated[
    int, Field(strict=True, ge=0, le=MAX_AMOUNT, description="Unit price in cents")
]
Stock = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT, description="Units available")]
IfMatch = Annotated[
    str | None,
    Header(alias="If-Match", max_length=512, description="The ETag from the last read"),
]


class ItemCreate(StrictModel):
    sku: Sku
    name: Name
    price_cents: PriceCents
    stock: Stock = 0


class ItemPatch(StrictModel):
    """Only the fields present change; the sku is the item's identity and never changes."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    # SkipJsonSchema keeps `null` out of the spec: an explicit null is refused below.
    name: Name | SkipJsonSchema[None] = None
    price_cents: PriceCents | SkipJsonSchema[None] = None
    stock: Stock | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give name, price_cents or stock")
        nulls = sorted(f for f in self.model_fields_set if getattr(self, f) is None)
        if nulls:
            raise ValueError(f"must not be null: {', '.join(nulls)}")
        return self


class Item(BaseModel):
    id: int
    sku: str
    name: str
    price_cents: int
    stock: int
    version: int = Field(description="Bumped by every change; the ETag carries it")
    updated_at: datetime


class ItemPage(BaseModel):
    items: list[Item]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_versions(header: str) -> list[int] | None:
    """The versions an If-Match header accepts; None for `*` (any version).

    Weak tags are accepted too: the version identifies the whole representation, so a
    proxy that weakened the tag has not changed what it refers to.
    """
    if header.strip() == "*":
        return None
    versions = []
    for tag in header.split(","):
        value = tag.strip().removeprefix("W/").strip('"')
        if value.isascii() and value.isdigit() and int(value) <= MAX_VERSION:
            versions.append(int(value))
    return versions


def item_response(row: asyncpg.Record, status: int = 200) -> Response:
    # Built straight from the row: this is the benchmark hot path, and the row already has
    # the model's exact shape, so validating it again would only cost time.
    body = Item.model_construct(**row).model_dump_json()
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"ETag": etag(row["version"])},
    )


_SELECT_ONE = (
    "SELECT id, sku, name, price_cents, stock, version, updated_at FROM items WHERE id = $1"
)
_SELECT_PAGE = (
    "SELECT id, sku, name, price_cents, stock, version, updated_at FROM items "
    "WHERE id > $1 ORDER BY id LIMIT $2"
)
_INSERT = (
    "INSERT INTO items (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4) "
    "RETURNING id, sku, name, price_cents, stock, version, updated_at"
)
_UPDATE = (
    "UPDATE items SET name = COALESCE($2::text, name), "
    "price_cents = COALESCE($3::int, price_cents), stock = COALESCE($4::int, stock), "
    "version = version + 1, updated_at = now() "
    "WHERE id = $1 AND version = ANY($5::int[]) "
    "RETURNING id, sku, name, price_cents, stock, version, updated_at"
)
_DELETE = (
    "DELETE FROM items WHERE id = $1 AND ($2::int[] IS NULL OR version = ANY($2)) RETURNING id"
)

_ETAG_HEADERS: dict[str, Any] = {"ETag": header_doc('The item version, e.g. "3"')}


@router.get(
    "",
    summary="List items (cursor pagination by id)",
    response_model=ItemPage,
    responses=error_responses(401, 422, 429),
)
async def list_items(
    _: CurrentUser, db: DB, cursor: Cursor = None, limit: Limit = DEFAULT_PAGE
) -> ItemPage:
    after = decode_cursor("items", cursor) or 0
    size = page_size(limit)
    rows = await db.fetch(_SELECT_PAGE, after, size + 1)
    items = [Item.model_validate(dict(row)) for row in rows[:size]]
    more = len(rows) > size
    return ItemPage(items=items, next_cursor=encode_cursor("items", items[-1].id) if more else None)


@router.get(
    "/{item_id}",
    summary="Get one item; the ETag header carries its version",
    response_model=Item,
    responses={200: {"headers": _ETAG_HEADERS}, **error_responses(401, 404, 422, 429)},
)
async def get_item(item_id: ResourceId, _: CurrentUser, db: DB) -> Response:
    return await read_item(db, item_id)


async def read_item(db: Database, item_id: int) -> Response:
    row = await db.fetchrow(_SELECT_ONE, item_id)
    if row is None:
        raise ApiError(404, "item not found")
    return item_response(row)


async def get_item_fast(request: Request) -> Response:
    """`get_item` as a plain Starlette endpoint, for the hottest authenticated read.

    FastAPI's per-request dependency resolution costs more than the database round trip here
    (docs/BENCHMARKS.md), so `create_app` places this route first and the FastAPI route above
    only documents it. Same checks, same answers: 422 for an out-of-range id, 401 without a
    valid token, 404, or the item with its ETag.
    """
    item_id = request.path_params["item_id"]
    if not 1 <= item_id <= MAX_BIGINT:
        raise ApiError(
            422,
            "request validation failed",
            fields=[{"field": "path.item_id", "message": f"must be between 1 and {MAX_BIGINT}"}],
        )
    state = request.app.drydock
    await current_user(request, state)
    return await read_item(state.db, item_id)


@router.post(
    "",
    status_code=201,
    summary="Create an item (admin)",
    response_model=Item,
    responses={
        201: {"headers": {**_ETAG_HEADERS, "Location": header_doc("The new item's URL")}},
        **error_responses(400, 401, 403, 409, 413, 415, 422, 429),
    },
)
async def create_item(body: ItemCreate, _: AdminUser, db: DB) -> Response:
    try:
        row = await db.fetchrow(_INSERT, body.sku, body.name, body.price_cents, body.stock)
    except asyncpg.UniqueViolationError:
        raise ApiError(409, f"sku {body.sku!r} already exists", code="duplicate_sku") from None
    assert row is not None
    response = item_response(row, 201)
    response.headers["Location"] = f"{router.prefix}/{row['id']}"
    return response


@router.patch(
    "/{item_id}",
    summary="Change an item (admin); If-Match with its current ETag is required",
    response_model=Item,
    responses={
        200: {"headers": _ETAG_HEADERS},
        **error_responses(400, 401, 403, 404, 412, 413, 415, 422, 428, 429),
    },
)
async def update_item(
    item_id: ResourceId, body: ItemPatch, _: AdminUser, db: DB, if_match: IfMatch = None
) -> Response:
    versions = if_match_versions(if_match) if if_match is not None else None
    if versions is None:
        raise ApiError(
            428,
            "If-Match with the ETag from your last read is required, "
            'e.g. If-Match: "3" (a bare * is not accepted)',
        )
    row = await db.fetchrow(_UPDATE, item_id, body.name, body.price_cents, body.stock, versions)
    if row is None:
        await _refuse_stale(db, item_id)
    return item_response(row)


@router.delete(
    "/{item_id}",
    status_code=204,
    summary="Delete an item (admin); optional If-Match guards against stale deletes",
    response_class=Response,
    responses=error_responses(401, 403, 404, 409, 412, 422, 429),
)
async def delete_item(
    item_id: ResourceId, _: AdminUser, db: DB, if_match: IfMatch = None
) -> Response:
    versions = if_match_versions(if_match) if if_match is not None else None
    try:
        deleted = await db.fetchval(_DELETE, item_id, versions)
    except (asyncpg.RestrictViolationError, asyncpg.ForeignKeyViolationError):
        # order_lines references items ON DELETE RESTRICT
        raise ApiError(
            409, "item is referenced by existing orders and cannot be deleted", code="item_in_use"
        ) from None
    if deleted is None:
        await _refuse_stale(db, item_id)
    return Response(status_code=204)


async def _refuse_stale(db: Database, item_id: int) -> NoReturn:
    """A guarded write matched nothing: tell a missing item from a stale If-Match."""
    current = await db.fetchval("SELECT version FROM items WHERE id = $1", item_id)
    if current is None:
        raise ApiError(404, "item not found")
    raise ApiError(
        412,
        "the item changed since you read it; GET it again and retry with the new ETag",
        headers={"ETag": etag(current)},
    )
