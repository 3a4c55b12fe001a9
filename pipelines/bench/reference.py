"""Reference apps for `invoke bench.service`, served with the same uvicorn settings as the
service: the bare ceiling (a plain Starlette endpoint) and one asyncpg primary-key SELECT."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ITEM_QUERY = (
    "SELECT id, sku, name, price_cents, stock, version, updated_at FROM items WHERE id = $1"
)


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


bare = Starlette(routes=[Route("/hello", hello)])


@contextlib.asynccontextmanager
async def _pool(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=2, max_size=int(os.environ.get("DB_POOL_MAX", "10"))
    )
    yield
    await app.state.pool.close()


async def item(request: Request) -> JSONResponse:
    row = await request.app.state.pool.fetchrow(ITEM_QUERY, int(request.path_params["item_id"]))
    if row is None:
        return JSONResponse({"error": "not found"}, status_code=404)
    body = dict(row)
    body["updated_at"] = body["updated_at"].isoformat()
    return JSONResponse(body)


select = Starlette(routes=[Route("/items/{item_id:int}", item)], lifespan=_pool)
