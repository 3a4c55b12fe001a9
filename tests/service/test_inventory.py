from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.api.common import encode_cursor
from service.app import DrydockAPI
from tests.service.helpers import Caller, make_item, make_user

pytestmark = pytest.mark.integration

WIDGET = {"sku": "WID-1", "name": "Widget", "price_cents": 1250, "stock": 7}


@pytest.fixture
async def admin(app: DrydockAPI) -> Caller:
    return await make_user(app, "admin")


@pytest.fixture
async def user(app: DrydockAPI) -> Caller:
    return await make_user(app)


async def create(client: httpx.AsyncClient, admin: Caller, **changes: Any) -> httpx.Response:
    response = await client.post(
        "/api/inventory", json={**WIDGET, **changes}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    return response


async def test_reads_require_a_token(client: httpx.AsyncClient, app: DrydockAPI) -> None:
    item_id = await make_item(app)
    for path in ("/api/inventory", f"/api/inventory/{item_id}"):
        response = await client.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        bad = await client.get(path, headers={"Authorization": "Bearer not-a-jwt"})
        assert bad.status_code == 401


async def test_admin_creates_and_anyone_authenticated_reads(
    client: httpx.AsyncClient, admin: Caller, user: Caller
) -> None:
    created = await create(client, admin, name="  Widget  ")
    body = created.json()
    assert body["name"] == "Widget"  # trimmed
    assert {k: body[k] for k in WIDGET} == WIDGET
    assert body["version"] == 1
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == f"/api/inventory/{body['id']}"

    fetched = await client.get(created.headers["location"], headers=user.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert fetched.headers["etag"] == '"1"'


async def test_duplicate_sku_is_a_conflict(client: httpx.AsyncClient, admin: Caller) -> None:
    await create(client, admin)
    again = await client.post("/api/inventory", json=WIDGET, headers=admin.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_sku"


async def test_writes_are_admin_only(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    item_id = await make_item(app, "KEEP-1", stock=5)
    path = f"/api/inventory/{item_id}"
    attempts = [
        await client.post("/api/inventory", json=WIDGET, headers=user.headers),
        await client.patch(path, json={"stock": 0}, headers={**user.headers, "If-Match": '"1"'}),
        await client.delete(path, headers=user.headers),
    ]
    assert [r.status_code for r in attempts] == [403, 403, 403]
    assert all(r.json()["error"]["code"] == "forbidden" for r in attempts)
    item = (await client.get(path, headers=user.headers)).json()
    assert (item["stock"], item["version"]) == (5, 1)
    listed = await client.get("/api/inventory", headers=user.headers)
    assert [i["sku"] for i in listed.json()["items"]] == ["KEEP-1"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"extra": 1}, "extra"),
        ({"name": "bad\x07name"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "   "}, "name"),
        ({"sku": "has space"}, "sku"),
        ({"sku": "S" * 65}, "sku"),
        ({"price_cents": -1}, "price_cents"),
        ({"price_cents": 10_000_001}, "price_cents"),
        ({"stock": -1}, "stock"),
        ({"stock": 10_000_001}, "stock"),
        ({"stock": "many"}, "stock"),
        ({"stock": True}, "stock"),
        ({"price_cents": "12"}, "price_cents"),
        ({"price_cents": 12.5}, "price_cents"),
    ],
)
async def test_create_validates_every_field(
    client: httpx.AsyncClient, admin: Caller, changes: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/api/inventory", json={**WIDGET, **changes}, headers=admin.headers
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert [f["field"] for f in error["fields"]] == [field]


async def test_cursor_pagination_walks_every_item_once(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    ids = [await make_item(app) for _ in range(5)]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/api/inventory", params=params, headers=user.headers)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert str(seen[-1]) not in cursor  # opaque, not the raw id
    assert seen == ids
    assert pages == 3


async def test_page_size_defaults_to_50_and_is_capped_at_100(
    client: httpx.AsyncClient, app: DrydockAPI, user: Caller
) -> None:
    await app.drydock.db.execute(
        "INSERT INTO items (sku, name, price_cents, stock) "
        "SELECT 'BULK-' || n, 'Bulk', 1, 1 FROM generate_series(1, 120) AS n"
    )
    default = (await client.get("/api/inventory", headers=user.headers)).json()
    assert len(default["items"]) == 50
    capped = await client.get("/api/inventory", params={"limit": 1000}, headers=user.headers)
    assert capped.status_code == 200
    assert len(capped.json()["items"]) == 100
    assert capped.json()["next_cursor"] is not None
    rest = await client.get(
        "/api/inventory",
        params={"limit": 1000, "cursor": capped.json()["next_cursor"]},
        headers=user.headers,
    )
    assert len(rest.json()["items"]) == 20
    assert rest.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": encode_cursor("orders", 1)},
        {"cursor": encode_cursor("items", 2**63)},
        {"cursor": "a/b"},
        {"limit": 0},
        {"limit": "ten"},
    ],
)
async def test_bad_paging_parameters_are_422(
    client: httpx.AsyncClient, user: Caller, params: dict[str, Any]
) -> None:
    response = await client.get("/api/inventory", params=params, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] in {"invalid_cursor", "validation_failed"}


@pytest.mark.parametrize(("item_id", "status"), [("999999", 404), ("0", 422), (str(2**63), 422)])
async def test_get_missing_or_out_of_range_id(
    client: httpx.AsyncClient, user: Caller, item_id: str, status: int
) -> None:
    response = await client.get(f"/api/inventory/{item_id}", headers=user.headers)
    assert response.status_code == status


async def test_patch_requires_if_match(client: httpx.AsyncClient, admin: Caller) -> None:
    location = (await create(client, admin)).headers["location"]
    for headers in ({}, {"If-Match": "*"}):
        response = await client.patch(
            location, json={"stock": 1}, headers={**admin.headers, **headers}
        )
        assert response.status_code == 428
        assert response.json()["error"]["code"] == "precondition_required"
    item = (await client.get(location, headers=admin.headers)).json()
    assert (item["stock"], item["version"]) == (WIDGET["stock"], 1)


async def test_patch_with_current_etag_then_stale_etag(
    client: httpx.AsyncClient, admin: Caller
) -> None:
    created = await create(client, admin)
    location, first_etag = created.headers["location"], created.headers["etag"]

    updated = await client.patch(
        location,
        json={"stock": 3, "name": "Widget v2"},
        headers={**admin.headers, "If-Match": first_etag},
    )
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == '"2"'
    body = updated.json()
    assert (body["stock"], body["name"], body["version"]) == (3, "Widget v2", 2)
    assert body["price_cents"] == WIDGET["price_cents"]  # untouched
    assert body["updated_at"] >= created.json()["updated_at"]

    # A second writer still holding version 1 must not overwrite version 2.
    stale = await client.patch(
        location, json={"stock": 100}, headers={**admin.headers, "If-Match": first_etag}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "precondition_failed"
    assert stale.headers["etag"] == '"2"'
    current = await client.get(location, headers=admin.headers)
    assert current.json()["stock"] == 3

    weak = await client.patch(
        location, json={"price_cents": 99}, headers={**admin.headers, "If-Match": 'W/"2"'}
    )
    assert weak.status_code == 200
    assert weak.headers["etag"] == '"3"'


@pytest.mark.parametrize(
    "body",
    [{}, {"stock": None}, {"sku": "NEW-SKU"}, {"stock": -5}, {"name": "\x00"}],
)
async def test_patch_validates_body(
    client: httpx.AsyncClient, admin: Caller, body: dict[str, Any]
) -> None:
    location = (await create(client, admin)).headers["location"]
    response = await client.patch(location, json=body, headers={**admin.headers, "If-Match": '"1"'})
    assert response.status_code == 422


async def test_patch_missing_item_is_404(client: httpx.AsyncClient, admin: Caller) -> None:
    response = await client.patch(
        "/api/inventory/424242", json={"stock": 1}, headers={**admin.headers, "If-Match": '"1"'}
    )
    assert response.status_code == 404


async def test_delete(client: httpx.AsyncClient, admin: Caller) -> None:
    location = (await create(client, admin)).headers["location"]
    stale = await client.delete(location, headers={**admin.headers, "If-Match": '"7"'})
    assert stale.status_code == 412
    deleted = await client.delete(location, headers=admin.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(location, headers=admin.headers)).status_code == 404
    assert (await client.delete(location, headers=admin.headers)).status_code == 404


async def test_delete_refused_while_orders_reference_the_item(
    client: httpx.AsyncClient, app: DrydockAPI, admin: Caller
) -> None:
    created = (await create(client, admin)).json()
    order_id = await app.drydock.db.fetchval(
        "INSERT INTO orders (user_id, total_cents) VALUES ($1, 0) RETURNING id", admin.user_id
    )
    await app.drydock.db.execute(
        "INSERT INTO order_lines (order_id, item_id, sku, quantity, unit_price_cents) "
        "VALUES ($1, $2, $3, 1, 0)",
        order_id,
        created["id"],
        created["sku"],
    )
    location = f"/api/inventory/{created['id']}"
    refused = await client.delete(location, headers=admin.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "item_in_use"
    assert (await client.get(location, headers=admin.headers)).status_code == 200


async def test_openapi_documents_inventory_responses(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    item = spec["paths"]["/api/inventory/{item_id}"]
    assert set(item["patch"]["responses"]) >= {"200", "401", "403", "404", "412", "422", "428"}
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    error = item["get"]["responses"]["404"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/ErrorResponse")
    patch_schema = spec["components"]["schemas"]["ItemPatch"]
    assert patch_schema["minProperties"] == 1
    assert patch_schema["additionalProperties"] is False
