"""Probes and operator endpoints under /api/_internal (runbook sections 2, 3 and 9).

Liveness is public. Readiness answers everyone with its verdict, and its details only a
caller with METRICS_TOKEN; metrics and flags need the token. Outside development there is
no open mode: without a configured token those stay closed. On AWS the load balancer also
answers every /api/_internal path but the two probes with 404 (infra/load_balancer.py).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import asyncpg
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from service import __version__, flags
from service.db import PoolTimeout
from service.deps import State, bearer_token
from service.errors import ApiError
from service.migrate import COMPAT_TABLE, compatibility, expected_head
from service.state import AppState

router = APIRouter(prefix="/api/_internal", tags=["internal"])
HEALTH_PATH = "/api/_internal/health"
HEALTH_BODY = f'{{"status":"ok","version":"{__version__}"}}'.encode()


class HealthBody(BaseModel):
    status: str
    version: str


@router.get(
    "/health",
    summary="Liveness: the process is up (never touches the database)",
    response_model=HealthBody,
)
async def health() -> Response:
    return Response(HEALTH_BODY, media_type="application/json")


async def readiness(state: AppState) -> tuple[bool, dict[str, dict[str, Any]]]:
    head = expected_head()
    checks: dict[str, dict[str, Any]] = {
        "draining": {"ok": not state.draining},
        "database": {"ok": False},
        "schema": {"ok": False, "expected": head},
    }
    if state.draining:
        checks["draining"]["reason"] = "shutting down; finishing requests in flight"
    timeout = state.settings.db_ready_timeout_s
    serves: str | None = None
    try:
        async with asyncio.timeout(timeout), state.db.connection() as conn:
            await conn.fetchval("SELECT 1")
            checks["database"] = {"ok": True}
            current = await conn.fetchval("SELECT version_num FROM alembic_version LIMIT 1")
            # Only a database at another revision needs its record: same connection.
            serves = None if current in (None, head) else await _serves_from(conn, current)
    except TimeoutError:
        checks["database"]["reason"] = f"SELECT 1 did not answer within {timeout:g} s"
        current = None
    except PoolTimeout:
        checks["database"]["reason"] = "no pooled connection came free (DB_ACQUIRE_TIMEOUT_MS)"
        current = None
    except asyncpg.UndefinedTableError:
        current = None
        checks["schema"]["reason"] = "no alembic_version table: migrations never ran"
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        checks["database"]["reason"] = f"database unreachable: {type(exc).__name__}"
        current = None
    if checks["database"]["ok"] and current is not None:
        checks["schema"]["current"] = current
        ok, reason = compatibility(current, head, serves)
        checks["schema"]["ok"] = ok
        if serves is not None:
            checks["schema"]["serves_from"] = serves
        if reason:
            checks["schema"]["reason"] = reason
    ready = all(check["ok"] for check in checks.values())
    return ready, checks


async def _serves_from(conn: asyncpg.Connection, current: str) -> str | None:
    """The oldest head that serves on `current`, as its migration recorded it."""
    try:
        value = await conn.fetchval(
            f"SELECT serves_from FROM {COMPAT_TABLE} WHERE revision = $1",  # noqa: S608
            current,
        )
    except asyncpg.UndefinedTableError:
        return None  # migrated before the record existed: only equality counts
    return str(value) if value is not None else None


_UNAUTHORISED: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid internal bearer token (METRICS_TOKEN) was presented"}
}


def internal_caller(request: Request, state: AppState) -> bool:
    """Whether the caller presents METRICS_TOKEN; in development without a token, anyone."""
    settings = state.settings
    if settings.internal_routes_open:
        return True
    expected = settings.metrics_token
    token = bearer_token(request) or ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def require_internal_token(request: Request, state: AppState) -> None:
    if not internal_caller(request, state):
        raise ApiError(
            401,
            "a valid internal bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="internal"'},
        )


@router.get(
    "/ready",
    summary="Readiness: database answers, schema at head, not draining "
    "(the checks, schema revision and reasons only with the internal bearer token)",
    responses={503: {"description": "Not ready; with the token, each failing check has a reason"}},
)
async def ready(request: Request, state: State) -> JSONResponse:
    ok, checks = await readiness(state)
    status = "ready" if ok else "unready"
    # The load balancer and the world need the verdict only; the schema revision and the
    # failure reasons describe the deployment, so they are for operators and the pipeline.
    body: dict[str, object] = {"status": status}
    if internal_caller(request, state):
        body |= {"version": __version__, "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics (bearer METRICS_TOKEN)",
    response_class=Response,
    responses=_UNAUTHORISED,
)
async def metrics(request: Request, state: State) -> Response:
    require_internal_token(request, state)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/flags", summary="Feature flags in force (bearer METRICS_TOKEN)", responses=_UNAUTHORISED
)
async def list_flags(request: Request, state: State) -> dict[str, object]:
    require_internal_token(request, state)
    return {"flags": flags.describe(state.settings.flags)}
