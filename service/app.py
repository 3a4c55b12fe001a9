"""The application factory: settings in, a ready-to-serve ASGI app out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from service import __version__
from service.api import admin, auth, internal, inventory, orders, sessions
from service.db import Database
from service.docs_page import router as docs_router
from service.errors import install_error_handlers
from service.heartbeat import run_heartbeat
from service.housekeeping import run_housekeeping
from service.metrics import Metrics
from service.middleware import Edge
from service.security.breached import BreachedPasswords
from service.security.ratelimit import MemoryRateLimiter, RateLimiter
from service.security.tokens import TokenService
from service.settings import Settings, load_settings
from service.state import AppState


class DrydockAPI(FastAPI):
    """FastAPI with the edge middleware outside everything, 500 handler included,
    so that every response carries the security headers and is measured."""

    drydock: AppState

    def build_middleware_stack(self) -> Any:
        static = {internal.HEALTH_PATH: internal.HEALTH_BODY}
        return Edge(super().build_middleware_stack(), self.drydock, static)


def make_limiter(settings: Settings, db: Database) -> RateLimiter:
    if settings.rate_limit_backend == "postgres":
        from service.security.ratelimit import PostgresRateLimiter

        return PostgresRateLimiter(db)
    return MemoryRateLimiter()


def create_app(settings: Settings | None = None, *, heartbeat: bool = True) -> DrydockAPI:
    settings = settings or load_settings()
    db = Database(settings)
    state = AppState(
        settings=settings,
        db=db,
        metrics=Metrics(db.stats),
        tokens=TokenService(settings),
        limiter=make_limiter(settings, db),
        breached=(
            BreachedPasswords(Path(settings.breached_passwords_file))
            if settings.breached_passwords_file
            else None
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await db.connect()
        beats = (
            asyncio.create_task(
                run_heartbeat(db, settings.instance_id, settings.heartbeat_interval_s)
            )
            if heartbeat
            else None
        )
        sweeps = (
            asyncio.create_task(
                run_housekeeping(db, settings.housekeeping_interval_s, settings.login_lockout_s)
            )
            if heartbeat and settings.housekeeping_interval_s > 0
            else None
        )
        try:
            yield
        finally:
            for task in (beats, sweeps):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await db.close()

    app = DrydockAPI(
        title="drydock API",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        # The edge middleware already records metrics and trace context; FastAPI's built-in
        # OpenTelemetry hooks would repeat that work on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.drydock = state
    app.state.drydock = state
    install_error_handlers(app)
    # The routers' routes are added flat rather than with include_router, which in this
    # FastAPI wraps each router in a nested matcher consulted on every request (about 30 us
    # per request here). Nothing is lost: the routers carry no router-level dependencies,
    # and their prefix and tags are already part of each route.
    for router in (
        internal.router,
        auth.router,
        sessions.router,
        inventory.router,
        orders.router,
        admin.router,
        docs_router,
    ):
        assert not router.dependencies, "router-level dependencies need include_router"
        app.router.routes.extend(router.routes)
    # The hottest paths skip FastAPI's per-request machinery; their FastAPI routes stay as the
    # OpenAPI documentation (docs/BENCHMARKS.md has the measurements). Liveness is answered by
    # the edge itself (DrydockAPI.build_middleware_stack); the item read is a plain Starlette
    # route placed first.
    app.router.routes.insert(
        0, Route("/api/inventory/{item_id:int}", inventory.get_item_fast, methods=["GET"])
    )
    return app
