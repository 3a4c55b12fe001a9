from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from service.app import DrydockAPI
from tests.service.conftest import AppFactory, client_for
from tests.service.helpers import Caller, make_item, make_user, order_count, stock_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def user(app: DrydockAPI) -> Caller:
    return await make_user(app)


@pytest.fixture
async def stocked(app: DrydockAPI) -> None:
    await make_item(app, "APPLE", stock=10, price_cents=250)
    await make_item(app, "BREAD", stock=5, price_cents=1000)


def lines(**quantities: int) -> dict[str, Any]:
    return {"items": [{"sku": sku, "quantity": q} for sku, q in quantities.items()]}


async def place(
    client: httpx.AsyncClient, caller: Caller, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    headers = caller.headers | ({"Idempotency-Key": key} if key else {})
    return await client.post("/api/orders", json=body, headers=headers)


def orders_counted(app: DrydockAPI) -> float:
    return app.drydock.metrics.registry.get_sample_value("orders_created_total") or 0.0


@pytest.mark.usefixtures("stocked")
async def test_order_takes_stock_and_is_readable(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    response = await place(client, user, lines(BREAD=2, APPLE=3))
    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["location"] == f"/api/orders/{order['id']}"
    assert "idempotent-replayed" not in response.headers
    assert order["user_id"] == user.user_id
    assert order["status"] == "placed"
    assert order["total_cents"] == 3 * 250 + 2 * 1000
    assert [(x["sku"], x["quantity"], x["unit_price_cents"]) for x in order["items"]] == [
        ("APPLE", 3, 250),
        ("BREAD", 2, 1000),
    ]
    assert (await stock_of(app, "APPLE"), await stock_of(app, "BREAD")) == (7, 3)
    assert orders_counted(app) == 1
    fetched = await client.get(response.headers["location"], headers=user.headers)
    assert fetched.json() == order
    # Taking stock is a change to the item, so its ETag moves on too.
    apple = await client.get(f"/api/inventory/{order['items'][0]['item_id']}", headers=user.headers)
    assert apple.headers["etag"] == '"2"'


async def test_orders_require_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/orders", json=lines(APPLE=1))).status_code == 401
    assert (await client.get("/api/orders")).status_code == 401
    assert (await client.get("/api/orders/1")).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"sku": f"S{n}", "quantity": 1} for n in range(51)]},
        lines(APPLE=0),
        lines(APPLE=1001),
        {"items": [{"sku": "APPLE", "quantity": True}]},
        {"items": [{"sku": "APPLE", "quantity": "1"}]},
        {"items": [{"sku": "APPLE", "quantity": 1}, {"sku": "APPLE", "quantity": 2}]},
        {"items": [{"sku": "APPLE", "quantity": 1, "price_cents": 0}]},
        {"items": [{"sku": "AP PLE", "quantity": 1}]},
        {"items": [{"sku": "APPLE"}]},
        {"lines": [{"sku": "APPLE", "quantity": 1}]},
    ],
)
@pytest.mark.usefixtures("stocked")
async def test_invalid_orders_are_422_and_change_nothing(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller, body: dict[str, Any]
) -> None:
    response = await place(client, user, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert await stock_of(app, "APPLE") == 10
    assert await order_count(app) == 0


@pytest.mark.usefixtures("stocked")
async def test_unknown_sku_is_404_and_changes_nothing(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    response = await place(client, user, lines(APPLE=1, NOPE=1))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_sku"
    assert response.json()["error"]["skus"] == ["NOPE"]
    assert await stock_of(app, "APPLE") == 10
    assert await order_count(app) == 0


@pytest.mark.usefixtures("stocked")
async def test_one_short_line_refuses_the_whole_order(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    response = await place(client, user, lines(APPLE=1, BREAD=6))
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["skus"]) == ("insufficient_stock", ["BREAD"])
    assert (await stock_of(app, "APPLE"), await stock_of(app, "BREAD")) == (10, 5)
    assert await order_count(app) == 0
    assert await app.drydock.db.fetchval("SELECT count(*) FROM order_lines") == 0
    assert orders_counted(app) == 0


@pytest.mark.usefixtures("stocked")
async def test_retry_with_same_key_returns_the_original_order(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    first = await place(client, user, lines(APPLE=2, BREAD=1), key="key-1")
    # The same request, with lines reordered: still the same order.
    retry = await place(client, user, lines(BREAD=1, APPLE=2), key="key-1")
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert await stock_of(app, "APPLE") == 8  # taken once
    assert await order_count(app) == 1
    assert orders_counted(app) == 1


@pytest.mark.usefixtures("stocked")
async def test_same_key_with_a_different_body_is_refused(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    assert (await place(client, user, lines(APPLE=1), key="key-2")).status_code == 201
    other = await place(client, user, lines(APPLE=5), key="key-2")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert "different request body" in other.json()["error"]["message"]
    assert await stock_of(app, "APPLE") == 9
    assert await order_count(app) == 1


@pytest.mark.usefixtures("stocked")
async def test_keys_are_per_user_and_a_refused_attempt_does_not_burn_its_key(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    other = await make_user(app)
    mine = await place(client, user, lines(APPLE=1), key="shared")
    theirs = await place(client, other, lines(APPLE=1), key="shared")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]

    short = await place(client, user, lines(BREAD=9), key="after-restock")
    assert short.status_code == 409
    await app.drydock.db.execute("UPDATE items SET stock = 20 WHERE sku = 'BREAD'")
    ok = await place(client, user, lines(BREAD=9), key="after-restock")
    assert ok.status_code == 201
    assert "idempotent-replayed" not in ok.headers


@pytest.mark.parametrize("key", ["k" * 256, "has space", "tab\tkey", "ключ"])
@pytest.mark.usefixtures("stocked")
async def test_malformed_idempotency_key_is_422(
    client: httpx.AsyncClient, user: Caller, key: str
) -> None:
    headers = user.headers | {"Idempotency-Key": key}
    response = await client.post(
        "/api/orders", json=lines(APPLE=1), headers={k: v.encode() for k, v in headers.items()}
    )
    assert response.status_code == 422


@pytest.mark.usefixtures("stocked")
async def test_concurrent_retries_with_one_key_order_once(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    responses = await asyncio.gather(
        *(place(client, user, lines(APPLE=1), key="racing") for _ in range(10))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert await stock_of(app, "APPLE") == 9
    assert await order_count(app) == 1


async def test_twenty_parallel_orders_for_the_last_unit(
    client: httpx.AsyncClient, app: DrydockAPI
) -> None:
    await make_item(app, "LAST", stock=1)
    buyers = [await make_user(app) for _ in range(20)]
    responses = await asyncio.gather(*(place(client, b, lines(LAST=1)) for b in buyers))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, [r.text for r in responses if r.status_code >= 500]
    assert await stock_of(app, "LAST") == 0
    assert await order_count(app) == 1


async def test_crossing_multi_line_orders_do_not_deadlock(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    await make_item(app, "XA", stock=100)
    await make_item(app, "XB", stock=100)
    bodies = [lines(XA=1, XB=1) if n % 2 else lines(XB=1, XA=1) for n in range(20)]
    responses = await asyncio.gather(*(place(client, user, body) for body in bodies))
    assert [r.status_code for r in responses] == [201] * 20
    assert (await stock_of(app, "XA"), await stock_of(app, "XB")) == (80, 80)


@pytest.mark.usefixtures("stocked")
async def test_a_deleted_account_cannot_order_with_its_old_token(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    await app.drydock.db.execute("DELETE FROM users WHERE id = $1", user.user_id)
    response = await place(client, user, lines(APPLE=1))
    assert response.status_code == 401
    assert await stock_of(app, "APPLE") == 10


@pytest.mark.usefixtures("stocked")
async def test_orders_are_visible_to_their_owner_and_admins_only(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    stranger, admin = await make_user(app), await make_user(app, "admin")
    location = (await place(client, user, lines(APPLE=1))).headers["location"]
    assert (await client.get(location, headers=user.headers)).status_code == 200
    assert (await client.get(location, headers=admin.headers)).status_code == 200
    hidden = await client.get(location, headers=stranger.headers)
    missing = await client.get("/api/orders/987654", headers=stranger.headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["message"] == missing.json()["error"]["message"]
    assert (await client.get("/api/orders", headers=stranger.headers)).json() == {
        "items": [],
        "next_cursor": None,
    }
    # Admins see everyone's orders by id, but their own list is still only their own.
    assert (await client.get("/api/orders", headers=admin.headers)).json()["items"] == []


@pytest.mark.usefixtures("stocked")
async def test_own_orders_are_listed_newest_first_with_a_cursor(
    client: httpx.AsyncClient, user: Caller
) -> None:
    ids = [(await place(client, user, lines(APPLE=1))).json()["id"] for _ in range(3)]
    first = await client.get("/api/orders", params={"limit": 2}, headers=user.headers)
    page = first.json()
    assert [o["id"] for o in page["items"]] == ids[:0:-1]
    assert page["items"][0]["items"][0]["sku"] == "APPLE"
    second = await client.get(
        "/api/orders", params={"limit": 2, "cursor": page["next_cursor"]}, headers=user.headers
    )
    assert [o["id"] for o in second.json()["items"]] == ids[:1]
    assert second.json()["next_cursor"] is None
    capped = await client.get("/api/orders", params={"limit": 10_000}, headers=user.headers)
    assert capped.status_code == 200
    assert len(capped.json()["items"]) == 3
    bad = await client.get("/api/orders", params={"cursor": "bm9wZQ"}, headers=user.headers)
    assert bad.status_code == 422


async def test_orders_disabled_flag_answers_503(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAG_ORDERS_ENABLED", "false")
    app = await app_factory()
    await make_item(app, "APPLE", stock=10)
    user = await make_user(app)
    async with client_for(app) as client:
        response = await place(client, user, lines(APPLE=1), key="while-disabled")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "orders_disabled"
        assert "ORDERS_ENABLED" in error["message"]
        # Reads keep working during the emergency disable.
        assert (await client.get("/api/orders", headers=user.headers)).status_code == 200
    assert await stock_of(app, "APPLE") == 10
    assert await order_count(app) == 0


async def test_fault_injection_fails_one_order_in_twenty(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAG_ORDERS_FAULT_INJECTION", "true")
    app = await app_factory()
    await make_item(app, "APPLE", stock=1000)
    user = await make_user(app)
    async with client_for(app) as client:
        first = await place(client, user, lines(APPLE=1), key="retry-me")
        # A failed attempt ordered nothing, so retrying its key places the order.
        retry = await place(client, user, lines(APPLE=1), key="retry-me")
        assert "idempotent-replayed" not in retry.headers
        rest = [await place(client, user, lines(APPLE=1), key=f"f-{n}") for n in range(38)]
    responses = [first, retry, *rest]
    failed = [n for n, r in enumerate(responses) if r.status_code == 500]
    assert failed == [0, 20]  # 5 %, the first attempt included
    assert {responses[n].json()["error"]["code"] for n in failed} == {"injected_fault"}
    assert all(r.status_code == 201 for n, r in enumerate(responses) if n not in failed)
    assert await stock_of(app, "APPLE") == 1000 - 38
    assert await order_count(app) == 38
    assert orders_counted(app) == 38


async def test_openapi_documents_order_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    create = spec["paths"]["/api/orders"]["post"]
    assert set(create["responses"]) >= {"201", "401", "404", "409", "422", "503"}
    assert "Idempotent-Replayed" in create["responses"]["201"]["headers"]
    assert any(p["name"] == "Idempotency-Key" for p in create["parameters"])
    assert set(spec["paths"]["/api/orders/{order_id}"]["get"]["responses"]) >= {"200", "404"}
