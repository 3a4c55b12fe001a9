"""The point-in-time drill's verification to the row, the same on every target: the copy's
orders of the drill's shopper, their lines and the item's stock, against the client's
ledger (`pitr_orders.OrderLedger`). It needs only a connection to the copy, so it runs
wherever the copy is reachable: beside a local cluster, or in a one-off task in a VPC."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from pipelines.backups.pitr_orders import Acked, OrderLedger
from pipelines.backups.pitr_report import iso_ms

# Every stamp the service writes with now() (the transaction's start) on the tables that
# take writes: the newest is a lower bound of the newest commit the copy holds.
NEWEST_WRITE_SQL = """
SELECT greatest(
    (SELECT max(created_at) FROM orders),
    (SELECT max(beat_at) FROM heartbeat),
    (SELECT max(updated_at) FROM items),
    (SELECT max(created_at) FROM users)
)
"""


async def copy_orders(url: str, user_id: int, item_id: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        orders = {
            r["id"]: int(r["total_cents"])
            for r in await conn.fetch(
                "SELECT id, total_cents FROM orders WHERE user_id = $1", user_id
            )
        }
        lines: dict[int, list[tuple[str, int, int]]] = {}
        for r in await conn.fetch(
            "SELECT order_id, sku, quantity, unit_price_cents FROM order_lines "
            "WHERE order_id = ANY($1::bigint[]) ORDER BY order_id, sku",
            list(orders),
        ):
            lines.setdefault(r["order_id"], []).append(
                (r["sku"], int(r["quantity"]), int(r["unit_price_cents"]))
            )
        stock = await conn.fetchval("SELECT stock FROM items WHERE id = $1", item_id)
        return {"orders": orders, "lines": lines, "stock": stock}
    finally:
        await conn.close()


async def newest_write(url: str) -> dt.datetime | None:
    """The newest write stamp in the copy (see NEWEST_WRITE_SQL), for the RPO where the
    recovery's own "last completed transaction" cannot be read (a managed database)."""
    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval(NEWEST_WRITE_SQL)
        return value if isinstance(value, dt.datetime) else None
    finally:
        await conn.close()


def verify(
    acked: list[Acked] | tuple[Acked, ...],
    moment: float,
    copy: dict[str, Any],
    initial_stock: int,
) -> tuple[int, list[str]]:
    """Mismatches between the client's ledger and the copy; and how many orders should be in."""
    before = [o for o in acked if o.acked <= moment]
    after = [o for o in acked if o.started > moment]
    problems = [f"order {o.id} straddles T" for o in acked if o.started <= moment < o.acked]
    orders, lines = copy["orders"], copy["lines"]
    for o in before:
        if o.id not in orders:
            problems.append(f"order {o.id} (acknowledged {iso_ms(o.acked)}) is missing")
        elif orders[o.id] != o.total_cents:
            problems.append(f"order {o.id}: total {orders[o.id]} != {o.total_cents}")
        elif tuple(lines.get(o.id, [])) != o.lines:
            problems.append(f"order {o.id}: lines {lines.get(o.id)} != {list(o.lines)}")
    problems += [
        f"order {o.id} (started {iso_ms(o.started)}, after T) is in the copy"
        for o in after
        if o.id in orders
    ]
    expected_stock = initial_stock - sum(q for o in before for _, q, _ in o.lines)
    if copy["stock"] != expected_stock:
        problems.append(f"stock {copy['stock']} != {expected_stock} expected from the orders")
    return len(before), problems


async def verify_copy(url: str, ledger: OrderLedger) -> dict[str, Any]:
    """The verdict on a copy: expected, found, mismatches, and its newest write stamp."""
    copy = await copy_orders(url, ledger.user_id, ledger.item_id)
    expected, mismatches = verify(ledger.acked, ledger.point, copy, ledger.initial_stock)
    newest = await newest_write(url)
    return {
        "point": iso_ms(ledger.point),
        "orders_written": len(ledger.acked),
        "orders_expected": expected,
        "orders_in_copy": len(copy["orders"]),
        "mismatches": mismatches,
        "newest_write": iso_ms(newest.timestamp()) if newest else None,
        "rpo_s": round(ledger.point - newest.timestamp(), 3) if newest else None,
        "ok": not mismatches and expected > 0,
    }
