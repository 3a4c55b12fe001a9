"""Fixtures for the service: an app on a private migrated database, and HTTP clients."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest

from service.app import DrydockAPI, create_app
from service.settings import Settings

# Generated per process: staging and production refuse a secret written in the repository.
TEST_SECRET = "test-signing-key-" + secrets.token_hex(16)
METRICS_TOKEN = "metrics-token-for-tests-" + secrets.token_hex(16)
# What the pipelines and the monitor send to /api/_internal: the token, as a bearer.
INTERNAL = {"Authorization": f"Bearer {METRICS_TOKEN}"}

AppFactory = Callable[..., Awaitable[DrydockAPI]]


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "metrics_token": METRICS_TOKEN,
        "access_log": True,
        "drain_seconds": 0,
        "rate_limit_api_per_minute": 100_000,
        "rate_limit_auth_per_minute": 10_000,
        "login_source_max_failures": 10_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def app_factory(fresh_database: str) -> AsyncIterator[AppFactory]:
    """Start apps (lifespan included) on this test's database; stop them afterwards."""
    async with AsyncExitStack() as stack:

        async def start(
            database_url: str | None = None, heartbeat: bool = False, **overrides: Any
        ) -> DrydockAPI:
            settings = make_settings(database_url or fresh_database, **overrides)
            app = create_app(settings, heartbeat=heartbeat)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return app

        yield start


@pytest.fixture
async def app(app_factory: AppFactory) -> DrydockAPI:
    return await app_factory()


def client_for(app: DrydockAPI, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: DrydockAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c
