from __future__ import annotations

import pytest

from service.app import DrydockAPI
from tests.service.conftest import client_for
from tests.service.helpers import make_item, make_user, order_count

pytestmark = pytest.mark.integration


async def test_admin_deletes_an_account_with_its_orders(app: DrydockAPI) -> None:
    admin = await make_user(app, "admin")
    shopper = await make_user(app)
    sku = "SKU-ADMIN-1"
    await make_item(app, sku=sku, stock=5)
    async with client_for(app) as c:
        placed = await c.post(
            "/api/orders", json={"items": [{"sku": sku, "quantity": 1}]}, headers=shopper.headers
        )
        assert placed.status_code == 201
        assert await order_count(app) == 1
        refused = await c.delete(f"/api/admin/users/{shopper.user_id}", headers=shopper.headers)
        assert refused.status_code == 403
        deleted = await c.delete(f"/api/admin/users/{shopper.user_id}", headers=admin.headers)
        assert deleted.status_code == 204
        assert await order_count(app) == 0
        again = await c.delete(f"/api/admin/users/{shopper.user_id}", headers=admin.headers)
        assert again.status_code == 404
        self_delete = await c.delete(f"/api/admin/users/{admin.user_id}", headers=admin.headers)
        assert self_delete.status_code == 409
