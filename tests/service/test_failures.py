"""A database in trouble: the pool held by others, the server stopped. Every answer comes in
bounded time and in the service's own shape (JSON error, security headers, requestId)."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from pipelines.host.ports import free_port
from pipelines.postgres.cluster import Cluster, data_home
from tests.service.conftest import AppFactory, client_for
from tests.service.helpers import make_user
from tests.service.test_edge import REQUIRED_HEADERS

pytestmark = pytest.mark.integration

# Far above anything the service should take; only a hang reaches it.
OUTER_LIMIT_S = 10


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    """A cluster of this test's own, migrated to head, that the test may stop."""
    from service.migrate import upgrade

    password = secrets.token_urlsafe(16)
    cluster = Cluster(home=data_home(tmp_path, "pg"), port=free_port(), durable=False)
    cluster.initialise(password)
    cluster.start()
    try:
        url = cluster.url(cluster.superuser, password)
        upgrade(url)
        yield cluster, url
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(cluster.home, ignore_errors=True)


def assert_structured(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["requestId"] == response.headers["x-request-id"]
    for header in REQUIRED_HEADERS:
        assert header in response.headers, header
    assert "'nonce-" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["retry-after"]) >= 1


async def bounded(request: asyncio.Future[httpx.Response] | object) -> httpx.Response:
    assert asyncio.iscoroutine(request)
    return await asyncio.wait_for(request, OUTER_LIMIT_S)


@pytest.fixture
async def held_pool() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.mark.parametrize("backend", ["postgres", "memory"])
async def test_exhausted_pool_answers_503_within_the_request_timeout(
    app_factory: AppFactory, held_pool: AsyncExitStack, backend: str
) -> None:
    app = await app_factory(
        rate_limit_backend=backend, request_timeout_ms=200, db_pool_min=1, db_pool_max=2
    )
    caller = await make_user(app)
    db = app.drydock.db
    for _ in range(2):
        await held_pool.enter_async_context(db.connection())
    async with client_for(app) as c:
        me = await bounded(c.get("/api/auth/me", headers=caller.headers))
        orders = await bounded(c.get("/api/orders", headers=caller.headers))
        ready = await bounded(c.get("/api/_internal/ready"))
    for response in (me, orders):
        assert_structured(response, 503, "db_busy")
        assert "retry" in response.json()["error"]["message"]
    assert ready.status_code == 503, "a replica with no connection to give is not ready"
    assert ready.json()["status"] == "unready"
    await held_pool.aclose()
    async with client_for(app) as c:
        assert (await c.get("/api/auth/me", headers=caller.headers)).status_code == 200


async def test_database_outage_answers_json_with_every_header(
    app_factory: AppFactory, own_database: tuple[Cluster, str]
) -> None:
    cluster, url = own_database
    shared = await app_factory(database_url=url, rate_limit_backend="postgres")
    local = await app_factory(database_url=url, rate_limit_backend="memory")
    caller = await make_user(shared)
    cluster.stop(mode="fast")
    for app in (shared, local):
        async with client_for(app) as c:
            for path in ("/api/auth/me", "/api/orders", "/api/inventory/1"):
                response = await bounded(c.get(path, headers=caller.headers))
                assert_structured(response, 503, "db_unavailable")
                assert "ConnectionRefused" not in response.text
