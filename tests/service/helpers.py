"""Test helpers that set up callers and stock directly in the database."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from service.app import DrydockAPI


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: str
    headers: dict[str, str]


async def make_user(app: DrydockAPI, role: str = "user") -> Caller:
    """A users row plus a valid access token for it (no password login involved)."""
    user_id = await app.drydock.db.fetchval(
        "INSERT INTO users (email, password_hash, role) VALUES ($1, 'not-a-hash', $2) RETURNING id",
        f"{role}-{secrets.token_hex(6)}@example.com",
        role,
    )
    token = app.drydock.tokens.issue_access(user_id, role)
    return Caller(user_id, role, {"Authorization": f"Bearer {token}"})


async def make_item(
    app: DrydockAPI, sku: str | None = None, stock: int = 10, price_cents: int = 250
) -> int:
    item_id: int = await app.drydock.db.fetchval(
        "INSERT INTO items (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4) RETURNING id",
        sku or f"SKU-{secrets.token_hex(4)}",
        "Test item",
        price_cents,
        stock,
    )
    return item_id


async def stock_of(app: DrydockAPI, sku: str) -> int:
    stock: int = await app.drydock.db.fetchval("SELECT stock FROM items WHERE sku = $1", sku)
    return stock


async def order_count(app: DrydockAPI) -> int:
    count: int = await app.drydock.db.fetchval("SELECT count(*) FROM orders")
    return count
