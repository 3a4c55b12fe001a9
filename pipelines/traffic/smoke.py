"""The smoke suite of deploy step 5: auth, inventory and orders, through the public API only,
and the internal routes closed to a caller without the token.

Every check is recorded with its outcome and timing; whatever it created (a user with its
orders, an item) is deleted at the end, pass or fail.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


class SmokeFailure(AssertionError):
    pass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    duration_ms: float


@dataclass
class SmokeReport:
    base_url: str
    checks: list[Check] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def summary(self) -> str:
        passed = sum(check.ok for check in self.checks)
        failed = [check for check in self.checks if not check.ok]
        text = f"{passed}/{len(self.checks)} smoke checks passed"
        return text + (f"; first failure: {failed[0].name}: {failed[0].detail}" if failed else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "ok": self.ok,
            "checks": [vars(check) for check in self.checks],
            "cleanup": self.cleanup,
        }


def expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        raise SmokeFailure(
            f"{what}: expected {status}, got {response.status_code} {response.text[:200]}"
        )
    return response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Smoke:
    def __init__(
        self, base_url: str, admin_email: str, admin_password: str, timeout: float = 10.0
    ) -> None:
        self.report = SmokeReport(base_url)
        self.client = httpx.Client(base_url=base_url, timeout=timeout)
        self.admin = (admin_email, admin_password)
        self.run_id = secrets.token_hex(4)
        self.user_id: int | None = None
        self.item_id: int | None = None
        self.admin_token = ""

    def check(self, name: str, body: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail, ok = body(), True
        except (SmokeFailure, httpx.HTTPError, KeyError, ValueError) as exc:
            detail, ok = str(exc) or type(exc).__name__, False
        self.report.checks.append(
            Check(name, ok, detail, round((time.monotonic() - started) * 1000, 1))
        )
        if not ok:
            raise SmokeFailure(f"{name}: {detail}")

    # -- auth ------------------------------------------------------------------

    def login(self, email: str, password: str) -> dict[str, Any]:
        response = self.client.post("/api/auth/login", json={"email": email, "password": password})
        return dict(expect(response, 200, f"login {email}").json())

    def auth_flow(self) -> str:
        email = f"smoke-{self.run_id}@example.com"
        password = secrets.token_urlsafe(18)
        created = expect(
            self.client.post("/api/auth/register", json={"email": email, "password": password}),
            201,
            "register",
        )
        self.user_id = int(created.json()["id"])
        first = self.login(email, password)
        if set(first) < {"access_token", "refresh_token", "token_type", "expires_in"}:
            raise SmokeFailure(f"login response lacks token fields: {sorted(first)}")
        expect(self.client.get("/api/auth/me", headers=bearer(first["access_token"])), 200, "me")
        second = expect(
            self.client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}),
            200,
            "refresh",
        ).json()
        if second["refresh_token"] == first["refresh_token"]:
            raise SmokeFailure("refresh did not rotate the refresh token")
        expect(
            self.client.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]}),
            401,
            "reusing a rotated refresh token",
        )
        fresh = self.login(email, password)
        expect(
            self.client.post("/api/auth/logout", json={"refresh_token": fresh["refresh_token"]}),
            204,
            "logout",
        )
        expect(
            self.client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]}),
            401,
            "refresh after logout",
        )
        self.user_token = self.login(email, password)["access_token"]
        return "register, login, refresh rotation, reuse refused, logout"

    # -- inventory -------------------------------------------------------------

    def inventory_flow(self) -> str:
        self.admin_token = self.login(*self.admin)["access_token"]
        headers = bearer(self.admin_token)
        self.sku = f"SMOKE-{self.run_id}"
        created = expect(
            self.client.post(
                "/api/inventory",
                headers=headers,
                json={"sku": self.sku, "name": "Smoke test item", "price_cents": 100, "stock": 5},
            ),
            201,
            "create item",
        )
        self.item_id = int(created.json()["id"])
        etag = created.headers["etag"]
        updated = expect(
            self.client.patch(
                f"/api/inventory/{self.item_id}",
                headers={**headers, "If-Match": etag},
                json={"price_cents": 150},
            ),
            200,
            "update item",
        )
        expect(
            self.client.patch(
                f"/api/inventory/{self.item_id}",
                headers={**headers, "If-Match": etag},
                json={"price_cents": 175},
            ),
            412,
            "stale If-Match refused",
        )
        if updated.json()["price_cents"] != 150:
            raise SmokeFailure("update did not apply")
        listed = expect(
            self.client.get(
                "/api/inventory", params={"limit": 100}, headers=bearer(self.user_token)
            ),
            200,
            "list items",
        )
        if not isinstance(listed.json().get("items"), list):
            raise SmokeFailure("list response has no items array")
        return f"item {self.sku} created, updated with If-Match, listed"

    # -- orders ----------------------------------------------------------------

    def stock(self) -> int:
        item = expect(
            self.client.get(f"/api/inventory/{self.item_id}", headers=bearer(self.user_token)),
            200,
            "get item",
        )
        return int(item.json()["stock"])

    def order_flow(self) -> str:
        headers = {**bearer(self.user_token), "Idempotency-Key": str(uuid.uuid4())}
        body = {"items": [{"sku": self.sku, "quantity": 1}]}
        placed = expect(
            self.client.post("/api/orders", headers=headers, json=body), 201, "place order"
        )
        again = expect(
            self.client.post("/api/orders", headers=headers, json=body), 201, "idempotent retry"
        )
        if again.json()["id"] != placed.json()["id"]:
            raise SmokeFailure("a retry with the same Idempotency-Key made a second order")
        if self.stock() != 4:
            raise SmokeFailure("stock should be 4 after one order of 1 from 5")
        over = {"items": [{"sku": self.sku, "quantity": 100}]}
        expect(
            self.client.post("/api/orders", headers=bearer(self.user_token), json=over),
            409,
            "order over the stock",
        )
        if self.stock() != 4:
            raise SmokeFailure("a refused order changed the stock")
        expect(
            self.client.get(f"/api/orders/{placed.json()['id']}", headers=bearer(self.user_token)),
            200,
            "read own order",
        )
        return "order placed, retry replayed, over-stock refused with 409 and no change"

    # -- internal routes -------------------------------------------------------

    def internal_routes_closed(self) -> str:
        """What the internet sees: 401 from the service, or 404 from the AWS load balancer,
        whose listener answers /api/_internal itself; the readiness verdict alone."""
        for path in ("/api/_internal/metrics", "/api/_internal/flags"):
            status = self.client.get(path).status_code
            if status not in (401, 404):
                raise SmokeFailure(
                    f"{path} without a token: expected 401 (the service) or 404 (the load "
                    f"balancer), got {status}"
                )
        shown = self.client.get("/api/_internal/ready").json()
        if set(shown) != {"status"}:
            raise SmokeFailure(
                f"readiness without a token shows more than its verdict: {sorted(shown)}"
            )
        return "metrics and flags refused without a token; readiness tells its verdict only"

    # -- cleanup ---------------------------------------------------------------

    def cleanup(self) -> None:
        token = self.admin_token or self.login(*self.admin)["access_token"]
        if self.user_id is not None:
            response = self.client.delete(f"/api/admin/users/{self.user_id}", headers=bearer(token))
            self.report.cleanup.append(f"user {self.user_id}: {response.status_code}")
        if self.item_id is not None:
            response = self.client.delete(f"/api/inventory/{self.item_id}", headers=bearer(token))
            self.report.cleanup.append(f"item {self.item_id}: {response.status_code}")

    def run(self) -> SmokeReport:
        try:
            self.check(
                "probes",
                lambda: (
                    expect(self.client.get("/api/_internal/health"), 200, "health"),
                    expect(self.client.get("/api/_internal/ready"), 200, "ready"),
                    "health and readiness 200",
                )[-1],
            )
            self.check("internal routes", self.internal_routes_closed)
            self.check("auth", self.auth_flow)
            self.check("inventory", self.inventory_flow)
            self.check("orders", self.order_flow)
        except SmokeFailure:
            pass
        finally:
            try:
                self.cleanup()
            except (httpx.HTTPError, SmokeFailure) as exc:
                self.report.cleanup.append(f"cleanup failed: {exc}")
            self.client.close()
        return self.report


def run_smoke(base_url: str, admin_email: str, admin_password: str) -> SmokeReport:
    return Smoke(base_url, admin_email, admin_password).run()
