"""The game day's traffic: reads, logins and orders through the load balancer, from a
throwaway shopper, with a ledger of every order the service acknowledged (a 2xx with an id).
After the game day every one of them must be in the database: an acknowledged order that is
not there is data lost, whatever else went right."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from pipelines.traffic import synthetic
from pipelines.traffic.loadgen import Load
from pipelines.traffic.smoke import bearer

# About 15 requests a second: enough that a fault shows in every second of the timeline,
# little enough that the client's own load does not trip the p95 alarm on a small machine.
# Below the service's per-source limits too (1200 a minute, 30 logins a minute, per replica),
# so a 429 means something.
WORKERS = 2
PAUSE_S = 0.1
LOGIN_EVERY = 60

Shopper = synthetic.Fixture


@dataclass
class OrderLedger:
    ids: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, order_id: int) -> None:
        with self.lock:
            self.ids.append(order_id)


def prepare(base_url: str, admin_email: str, admin_password: str) -> Shopper:
    return synthetic.prepare(base_url, admin_email, admin_password, purpose="gameday")


def traffic(base_url: str, shopper: Shopper, ledger: OrderLedger, seconds: float) -> Load:
    """Started; stop() it. Orders on even requests, a login now and then, reads otherwise."""
    order = {"items": [{"sku": shopper.sku, "quantity": 1}]}

    def request(client: httpx.Client, n: int) -> httpx.Response:
        headers = bearer(shopper.user_token)
        if n % LOGIN_EVERY == 3:
            return client.post(
                "/api/auth/login", json={"email": shopper.email, "password": shopper.password}
            )
        if n % 2 == 0:
            response = client.post("/api/orders", headers=headers, json=order)
            if 200 <= response.status_code < 300:
                ledger.add(int(response.json()["id"]))
            return response
        if n % 4 == 1:
            return client.get(f"/api/inventory/{shopper.item_id}", headers=headers)
        return client.get("/api/inventory", params={"limit": 20}, headers=headers)

    load = Load(base_url, request, workers=WORKERS, max_seconds=seconds, pause_s=PAUSE_S)
    load.start()
    return load


def missing_orders(database_url: str, ids: Sequence[int]) -> list[int]:
    """The acknowledged orders the database does not have, read from the database itself."""

    async def look() -> list[int]:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT id FROM orders WHERE id = ANY($1::bigint[])", ids)
        finally:
            await conn.close()
        found = {int(r["id"]) for r in rows}
        return sorted(set(ids) - found)

    return asyncio.run(look()) if ids else []


def cleanup(base_url: str, shopper: Shopper) -> list[str]:
    return synthetic.cleanup(base_url, shopper)
