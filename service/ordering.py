"""Placing and reading orders: the models and the transactions behind /api/orders.

Placing an order is one transaction:
1. insert the order row, which claims the Idempotency-Key: a concurrent retry with the same
   key waits on the unique constraint until this transaction ends, then replays its result;
2. lock the ordered items with SELECT ... FOR UPDATE ordered by id, so concurrent orders
   over the same items queue up instead of deadlocking;
3. check every line, and refuse the whole order (rolling back step 1) if any line fails;
4. decrement stock, insert the lines and set the total in one statement.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import asyncpg
from pydantic import BaseModel, Field, field_validator

from service.api.common import MAX_BIGINT
from service.db import Database
from service.errors import ApiError
from service.faults import FaultInjector
from service.models import Sku, StrictModel

log = logging.getLogger("service.orders")

MAX_LINES = 50
MAX_QUANTITY = 1000


class OrderLineIn(StrictModel):
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]


class OrderCreate(StrictModel):
    items: Annotated[list[OrderLineIn], Field(min_length=1, max_length=MAX_LINES)]

    @field_validator("items")
    @classmethod
    def _one_line_per_sku(cls, lines: list[OrderLineIn]) -> list[OrderLineIn]:
        skus = [line.sku for line in lines]
        repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
        if repeated:
            raise ValueError(f"each sku may appear once; repeated: {', '.join(repeated)}")
        return lines


class OrderLine(BaseModel):
    item_id: int
    sku: str
    quantity: int
    unit_price_cents: int


class Order(BaseModel):
    id: int
    user_id: int
    status: str
    total_cents: int
    created_at: datetime
    items: list[OrderLine] = Field(description="One line per sku, sorted by sku")


class OrderPage(BaseModel):
    items: list[Order] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    replayed: bool


def request_hash(lines: Sequence[OrderLineIn]) -> str:
    """A digest of what the request asks for, independent of JSON spacing and line order."""
    canonical = json.dumps(sorted((line.sku, line.quantity) for line in lines))
    return hashlib.sha256(canonical.encode()).hexdigest()


_CLAIM = (
    "INSERT INTO orders (user_id, total_cents, idempotency_key, request_hash) "
    "VALUES ($1, 0, $2, $3) ON CONFLICT (user_id, idempotency_key) DO NOTHING "
    "RETURNING id, status, created_at"
)
_LOCK_ITEMS = (
    "SELECT id, sku, price_cents, stock FROM items WHERE sku = ANY($1::text[]) "
    "ORDER BY id FOR UPDATE"
)
_APPLY = """
WITH lines AS (
    SELECT * FROM unnest($2::bigint[], $3::text[], $4::int[], $5::int[])
        AS l(item_id, sku, quantity, unit_price_cents)
), taken AS (
    UPDATE items AS i
    SET stock = i.stock - lines.quantity, version = i.version + 1, updated_at = now()
    FROM lines WHERE i.id = lines.item_id
), added AS (
    INSERT INTO order_lines (order_id, item_id, sku, quantity, unit_price_cents)
    SELECT $1, item_id, sku, quantity, unit_price_cents FROM lines
)
UPDATE orders SET total_cents = $6 WHERE id = $1
"""
_SELECT_BY_ID = "SELECT id, user_id, status, total_cents, created_at FROM orders WHERE id = $1"
_SELECT_VISIBLE = (
    "SELECT id, user_id, status, total_cents, created_at FROM orders "
    "WHERE id = $1 AND ($2 OR user_id = $3)"
)
_SELECT_PAGE = (
    "SELECT id, user_id, status, total_cents, created_at FROM orders "
    "WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
)
_LINES = (
    "SELECT order_id, item_id, sku, quantity, unit_price_cents FROM order_lines "
    "WHERE order_id = ANY($1::bigint[]) ORDER BY order_id, sku"
)


async def place_order(
    db: Database,
    user_id: int,
    lines: Sequence[OrderLineIn],
    idempotency_key: str | None,
    faults: FaultInjector | None = None,
) -> Placed:
    lines = sorted(lines, key=lambda line: line.sku)
    digest = request_hash(lines) if idempotency_key is not None else None
    try:
        async with db.transaction() as conn:
            claimed = await conn.fetchrow(_CLAIM, user_id, idempotency_key, digest)
            if claimed is None:
                return Placed(await _replay(conn, user_id, idempotency_key, digest), True)
            if faults is not None and faults.should_fail():
                log.warning("injected order failure", extra={"user_id": user_id})
                raise ApiError(
                    500,
                    "injected fault (ORDERS_FAULT_INJECTION is on); nothing was ordered",
                    code="injected_fault",
                )
            items = {
                row["sku"]: row for row in await conn.fetch(_LOCK_ITEMS, [x.sku for x in lines])
            }
            _check(lines, items)
            order_lines = [
                OrderLine(
                    item_id=items[x.sku]["id"],
                    sku=x.sku,
                    quantity=x.quantity,
                    unit_price_cents=items[x.sku]["price_cents"],
                )
                for x in lines
            ]
            total = sum(line.quantity * line.unit_price_cents for line in order_lines)
            await conn.execute(
                _APPLY,
                claimed["id"],
                [line.item_id for line in order_lines],
                [line.sku for line in order_lines],
                [line.quantity for line in order_lines],
                [line.unit_price_cents for line in order_lines],
                total,
            )
    except asyncpg.ForeignKeyViolationError:
        # Items are locked, so only the user can have vanished under a still-valid token.
        raise ApiError(401, "the account behind this token no longer exists") from None
    order = Order(
        id=claimed["id"],
        user_id=user_id,
        status=claimed["status"],
        total_cents=total,
        created_at=claimed["created_at"],
        items=order_lines,
    )
    return Placed(order, False)


def _check(lines: Sequence[OrderLineIn], items: dict[str, asyncpg.Record]) -> None:
    unknown = [x.sku for x in lines if x.sku not in items]
    if unknown:
        raise ApiError(404, f"unknown sku: {', '.join(unknown)}", code="unknown_sku", skus=unknown)
    short = [x.sku for x in lines if items[x.sku]["stock"] < x.quantity]
    if short:
        raise ApiError(
            409,
            f"insufficient stock for: {', '.join(short)}; nothing was ordered",
            code="insufficient_stock",
            skus=short,
        )


async def _replay(
    conn: asyncpg.Connection, user_id: int, key: str | None, digest: str | None
) -> Order:
    """The key was already used: return that order if the request is the same one."""
    row = await conn.fetchrow(
        "SELECT id, request_hash FROM orders WHERE user_id = $1 AND idempotency_key = $2",
        user_id,
        key,
    )
    if row is None:  # the first holder's row vanished between the conflict and this read
        raise ApiError(409, "this Idempotency-Key is in use; retry", code="idempotency_conflict")
    if row["request_hash"] != digest:
        raise ApiError(
            422,
            "this Idempotency-Key was already used with a different request body; "
            "use a new key for a new order",
            code="idempotency_key_reused",
        )
    orders = await _with_lines(conn, await conn.fetch(_SELECT_BY_ID, row["id"]))
    return orders[0]


async def _with_lines(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[Order]:
    if not rows:
        return []
    lines: dict[int, list[OrderLine]] = {row["id"]: [] for row in rows}
    for line in await conn.fetch(_LINES, list(lines)):
        lines[line["order_id"]].append(
            OrderLine(
                item_id=line["item_id"],
                sku=line["sku"],
                quantity=line["quantity"],
                unit_price_cents=line["unit_price_cents"],
            )
        )
    return [Order(**dict(row), items=lines[row["id"]]) for row in rows]


async def get_order(db: Database, order_id: int, user_id: int, is_admin: bool) -> Order | None:
    """The order if the viewer owns it or is an admin; None otherwise, whether or not it
    exists, so that ids of other users' orders cannot be probed."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            _SELECT_VISIBLE,
            order_id,
            is_admin,
            user_id,
        )
        orders = await _with_lines(conn, rows)
    return orders[0] if orders else None


async def list_orders(
    db: Database, user_id: int, before: int | None, limit: int
) -> tuple[list[Order], bool]:
    """A page of the user's own orders, newest first, and whether more follow."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            _SELECT_PAGE,
            user_id,
            before if before is not None else MAX_BIGINT,
            limit + 1,
        )
        orders = await _with_lines(conn, rows[:limit])
    return orders, len(rows) > limit
