"""Synthetic traffic for the bake window: a throwaway shopper and item, then a mix of reads and
orders through the load balancer, so that a release that breaks orders shows up in the error
rate. Everything it creates is deleted afterwards."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx

from pipelines.traffic.loadgen import Load, LoadReport
from pipelines.traffic.smoke import bearer, expect


@dataclass
class Fixture:
    """A throwaway shopper (logged in) and an item with stock to spare, made through the API
    with the admin's credentials, and deleted the same way afterwards."""

    admin_token: str
    user_id: int
    email: str
    password: str
    user_token: str
    item_id: int
    sku: str


def login(client: httpx.Client, email: str, password: str) -> str:
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    return str(expect(response, 200, f"login {email}").json()["access_token"])


def prepare(
    base_url: str, admin_email: str, admin_password: str, purpose: str = "synthetic"
) -> Fixture:
    """`purpose` names the shopper, the item and the errors ("synthetic", "gameday"), so a
    leftover says which run made it."""
    tag = secrets.token_hex(4)
    with httpx.Client(base_url=base_url, timeout=10) as client:
        admin = login(client, admin_email, admin_password)
        email, password = f"{purpose}-{tag}@example.com", secrets.token_urlsafe(18)
        user = expect(
            client.post("/api/auth/register", json={"email": email, "password": password}),
            201,
            f"register the {purpose} shopper",
        ).json()
        sku = f"{purpose.upper()}-{tag}"
        item = expect(
            client.post(
                "/api/inventory",
                headers=bearer(admin),
                json={
                    "sku": sku,
                    "name": f"{purpose.capitalize()} traffic item",
                    "price_cents": 1,
                    "stock": 10_000_000,
                },
            ),
            201,
            f"create the {purpose} item",
        ).json()
        return Fixture(
            admin,
            int(user["id"]),
            email,
            password,
            login(client, email, password),
            int(item["id"]),
            sku,
        )


def cleanup(base_url: str, fixture: Fixture) -> list[str]:
    outcomes = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for path in (f"/api/admin/users/{fixture.user_id}", f"/api/inventory/{fixture.item_id}"):
            try:
                status = client.delete(path, headers=bearer(fixture.admin_token)).status_code
            except httpx.HTTPError as exc:
                outcomes.append(f"{path}: {type(exc).__name__}")
                continue
            outcomes.append(f"{path}: {status}")
    return outcomes


def traffic(
    base_url: str, fixture: Fixture, seconds: float, workers: int = 4, max_requests: int = 200_000
) -> Load:
    """Half orders, half reads. Returned started; stop() it or let max_seconds end it."""
    headers = bearer(fixture.user_token)
    order = {"items": [{"sku": fixture.sku, "quantity": 1}]}

    def request(client: httpx.Client, n: int) -> httpx.Response:
        if n % 2 == 0:
            return client.post("/api/orders", headers=headers, json=order)
        if n % 4 == 1:
            return client.get(f"/api/inventory/{fixture.item_id}", headers=headers)
        return client.get("/api/inventory", params={"limit": 20}, headers=headers)

    load = Load(
        base_url,
        request,
        workers=workers,
        max_requests=max_requests,
        max_seconds=seconds,
        pause_s=0.005,
    )
    load.start()
    return load


def run_bake(
    base_url: str, admin_email: str, admin_password: str, seconds: float
) -> tuple[LoadReport, list[str]]:
    fixture = prepare(base_url, admin_email, admin_password)
    try:
        report = traffic(base_url, fixture, seconds).wait(timeout=seconds + 30)
    finally:
        outcomes = cleanup(base_url, fixture)
    return report, outcomes
