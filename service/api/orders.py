"""Orders (runbook section 7, smoke "orders"): place one, list your own, read one.

Idempotency: a POST carrying `Idempotency-Key` is stored with a digest of its body, unique
per user. Repeating it with the same body returns the original order (201, header
`Idempotent-Replayed: true`) without ordering again; the same key with a different body
is refused with 422. Keys do not expire.

Flags: ORDERS_ENABLED=false turns creation into 503 (code "orders_disabled");
ORDERS_FAULT_INJECTION=true fails one creation in 20 with 500 (see service/faults.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from service.api.common import (
    DEFAULT_PAGE,
    Cursor,
    Limit,
    ResourceId,
    decode_cursor,
    encode_cursor,
    error_responses,
    header_doc,
    page_size,
)
from service.deps import DB, CurrentUser, State
from service.errors import ApiError
from service.ordering import Order, OrderCreate, OrderPage, get_order, list_orders, place_order

router = APIRouter(prefix="/api/orders", tags=["orders"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Client-chosen unique key (e.g. a UUID); a retry with it never orders twice",
    ),
]


@router.post(
    "",
    status_code=201,
    summary="Place an order; stock is taken for every line or for none",
    response_model=Order,
    responses={
        201: {
            "description": "Order placed, or the original order replayed for a repeated key",
            "headers": {
                "Location": header_doc("The order's URL"),
                "Idempotent-Replayed": header_doc(
                    '"true" when this is the stored result of an earlier request',
                    required=False,
                ),
            },
        },
        **error_responses(400, 401, 404, 409, 413, 415, 422, 429, 500, 503),
    },
)
async def create_order(
    body: OrderCreate,
    user: CurrentUser,
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    flags = state.settings.flags
    if not flags["ORDERS_ENABLED"]:
        raise ApiError(
            503,
            "order creation is temporarily disabled by operators (ORDERS_ENABLED=false); "
            "retry later",
            code="orders_disabled",
        )
    faults = state.order_faults if flags["ORDERS_FAULT_INJECTION"] else None
    placed = await place_order(state.db, user.user_id, body.items, idempotency_key, faults)
    headers = {"Location": f"{router.prefix}/{placed.order.id}"}
    if placed.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        state.metrics.orders.inc()
    return Response(
        placed.order.model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers=headers,
    )


@router.get(
    "",
    summary="List your own orders, newest first (cursor pagination)",
    response_model=OrderPage,
    responses=error_responses(401, 422, 429),
)
async def list_my_orders(
    user: CurrentUser, db: DB, cursor: Cursor = None, limit: Limit = DEFAULT_PAGE
) -> OrderPage:
    size = page_size(limit)
    orders, more = await list_orders(db, user.user_id, decode_cursor("orders", cursor), size)
    next_cursor = encode_cursor("orders", orders[-1].id) if more else None
    return OrderPage(items=orders, next_cursor=next_cursor)


@router.get(
    "/{order_id}",
    summary="Get one order (its owner or an admin; anyone else gets 404)",
    response_model=Order,
    responses=error_responses(401, 404, 422, 429),
)
async def get_one_order(order_id: ResourceId, user: CurrentUser, db: DB) -> Order:
    order = await get_order(db, order_id, user.user_id, user.is_admin)
    if order is None:
        raise ApiError(404, "order not found")
    return order
