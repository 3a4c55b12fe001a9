from __future__ import annotations

import httpx
import pytest

from service import __version__
from service.migrate import expected_head
from tests.service.conftest import INTERNAL

pytestmark = pytest.mark.integration


async def test_health_reports_version(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/_internal/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


async def test_ready_when_database_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/_internal/ready", headers=INTERNAL)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["checks"]["schema"] == {
        "ok": True,
        "expected": expected_head(),
        "current": expected_head(),
    }


async def test_openapi_documents_every_route_group_with_its_tag(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    tags = {
        path: {tag for operation in ops.values() for tag in operation.get("tags", ())}
        for path, ops in spec["paths"].items()
    }
    assert tags["/api/_internal/health"] == {"internal"}
    assert tags["/api/auth/login"] == {"auth"}
    assert tags["/api/inventory/{item_id}"] == {"inventory"}
    assert tags["/api/orders"] == {"orders"}
    assert tags["/api/admin/users/{user_id}"] == {"admin"}
