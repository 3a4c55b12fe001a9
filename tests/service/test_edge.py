"""The edge middleware: headers on every response, ids, limits, timeouts, errors."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from service.app import DrydockAPI
from service.logs import JsonFormatter
from service.middleware import SECURITY_HEADERS
from tests.service.conftest import INTERNAL, AppFactory, client_for
from tests.service.helpers import make_item, make_user

pytestmark = pytest.mark.integration

REQUIRED_HEADERS = [name.decode() for name, _ in SECURITY_HEADERS] + [
    "content-security-policy",
    "x-request-id",
]


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def add_failing_routes(app: DrydockAPI) -> None:
    async def boom() -> None:
        raise RuntimeError("kaboom with password=hunter2")

    async def slow() -> dict[str, str]:
        await asyncio.sleep(2)
        return {"late": "yes"}

    app.add_api_route("/api/test/boom", boom, methods=["GET"])
    app.add_api_route("/api/test/slow", slow, methods=["GET"])


async def error_responses(app: DrydockAPI) -> dict[int, httpx.Response]:
    add_failing_routes(app)
    async with client_for(app) as c:
        return {
            404: await c.get("/api/nope"),
            413: await c.post(
                "/api/auth/login",
                content=b"{" + b" " * 70_000 + b"}",
                headers={"content-type": "application/json"},
            ),
            415: await c.post(
                "/api/auth/login",
                content=b"a=b",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            500: await c.get("/api/test/boom"),
            503: await c.get("/api/test/slow"),
        }


async def test_every_error_response_carries_security_headers(app_factory: AppFactory) -> None:
    app = await app_factory(request_timeout_ms=100, rate_limit_api_per_minute=10_000)
    responses = await error_responses(app)
    for status, response in responses.items():
        assert response.status_code == status, (status, response.text)
        for header in REQUIRED_HEADERS:
            assert header in response.headers, (status, header)
        body = response.json()
        assert set(body["error"]) >= {"code", "message", "requestId"}
        assert body["error"]["requestId"] == response.headers["x-request-id"]


async def test_500_hides_the_trace_and_logs_it(
    app_factory: AppFactory, access_lines: io.StringIO
) -> None:
    app = await app_factory()
    add_failing_routes(app)
    async with client_for(app) as c:
        response = await c.get("/api/test/boom")
    assert response.status_code == 500
    assert "kaboom" not in response.text and "Traceback" not in response.text
    logged = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    errors = [entry for entry in logged if entry["level"] == "error"]
    assert errors and "RuntimeError: kaboom" in errors[0]["exception"]
    assert errors[0]["requestId"] == response.headers["x-request-id"]


async def test_timeout_is_a_503_and_counted(app_factory: AppFactory) -> None:
    app = await app_factory(request_timeout_ms=50)
    add_failing_routes(app)
    async with client_for(app) as c:
        response = await c.get("/api/test/slow")
        metrics = (await c.get("/api/_internal/metrics", headers=INTERNAL)).text
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "timeout"
    assert 'http_request_timeouts_total{route="/api/test/slow"} 1.0' in metrics


async def test_csp_nonce_is_fresh_per_request_and_used_by_html(client: httpx.AsyncClient) -> None:
    first = await client.get("/docs")
    second = await client.get("/docs")
    nonces = []
    for response in (first, second):
        csp = response.headers["content-security-policy"]
        assert "unsafe-inline" not in csp
        nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
        assert f'nonce="{nonce}"' in response.text
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert len(set(nonces[0])) > 8


async def test_request_id_is_echoed_when_well_formed(client: httpx.AsyncClient) -> None:
    kept = await client.get("/api/_internal/health", headers={"x-request-id": "abc-123-DEF.9"})
    assert kept.headers["x-request-id"] == "abc-123-DEF.9"
    replaced = await client.get(
        "/api/_internal/health", headers={"x-request-id": "bad id\\with spaces"}
    )
    assert replaced.headers["x-request-id"] != "bad id\\with spaces"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_traceparent_is_continued_or_started(
    client: httpx.AsyncClient, access_lines: io.StringIO
) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    response = await client.get(
        "/api/_internal/health", headers={"traceparent": f"00-{trace}-{parent}-01"}
    )
    version, trace_id, span_id, _ = response.headers["traceparent"].split("-")
    assert (version, trace_id) == ("00", trace)
    assert span_id != parent
    fresh = await client.get("/api/_internal/health", headers={"traceparent": "garbage"})
    assert fresh.headers["traceparent"].split("-")[1] != trace
    record = json.loads(access_lines.getvalue().splitlines()[0])
    assert record["traceId"] == trace and record["parentSpanId"] == parent


async def test_access_log_record_fields_and_no_authorization(
    app: DrydockAPI, access_lines: io.StringIO
) -> None:
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_api_route("/api/test/items/{item_id}", item, methods=["GET"])
    async with client_for(app) as c:
        await c.get("/api/test/items/12345", headers={"authorization": "Bearer sekrit-value-x"})
    assert "sekrit-value-x" not in access_lines.getvalue()
    record = json.loads(access_lines.getvalue().splitlines()[-1])
    for key in (
        "time",
        "level",
        "message",
        "requestId",
        "traceId",
        "spanId",
        "method",
        "route",
        "status",
        "duration_ms",
        "client",
    ):
        assert key in record, key
    assert record["route"] == "/api/test/items/{item_id}"
    assert record["path"] == "/api/test/items/12345"
    assert (record["status"], record["client"]) == (200, "127.0.0.1")


async def test_metrics_use_route_templates_not_raw_paths(client: httpx.AsyncClient) -> None:
    for item in range(5):
        await client.get(f"/api/nope/{item}")
    text = (await client.get("/api/_internal/metrics", headers=INTERNAL)).text
    assert "/api/nope/3" not in text
    assert 'route="unmatched"' in text
    assert 'le="0.4"' in text
    for series in (
        "http_requests_in_flight",
        "auth_login_failures_total",
        "auth_lockouts_total",
        "db_pool_connections",
    ):
        assert series in text, series


async def test_metrics_token_required_when_set(app_factory: AppFactory) -> None:
    app = await app_factory(metrics_token="m" * 40)
    async with client_for(app) as c:
        assert (await c.get("/api/_internal/metrics")).status_code == 401
        wrong = await c.get("/api/_internal/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await c.get("/api/_internal/metrics", headers={"authorization": f"Bearer {'m' * 40}"})
        assert ok.status_code == 200 and "http_requests_total" in ok.text


async def test_body_limit_applies_without_content_length(app_factory: AppFactory) -> None:
    app = await app_factory(max_body_bytes=2048)

    async def echo(body: dict[str, object]) -> dict[str, object]:
        return body

    app.add_api_route("/api/test/echo", echo, methods=["POST"])

    async def chunks() -> object:
        for _ in range(10):
            yield b" " * 1024

    async with client_for(app) as c:
        response = await c.post(
            "/api/test/echo",
            content=chunks(),  # type: ignore[arg-type]
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413


async def test_405_lists_every_allowed_method(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/inventory/1", json={})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_every_api_response_is_no_store(app: DrydockAPI) -> None:
    admin = await make_user(app, "admin")
    item_id = await make_item(app, sku="NOSTORE-1")
    line = {"items": [{"sku": "NOSTORE-1", "quantity": 1}]}
    async with client_for(app) as c:
        placed = await c.post("/api/orders", json=line, headers=admin.headers)
        responses = {
            "order placed": placed,
            "order read": await c.get(placed.headers["location"], headers=admin.headers),
            "orders": await c.get("/api/orders", headers=admin.headers),
            "item": await c.get(f"/api/inventory/{item_id}", headers=admin.headers),
            "inventory": await c.get("/api/inventory", headers=admin.headers),
            "no token": await c.get("/api/orders"),
            "health": await c.get("/api/_internal/health"),
            "ready": await c.get("/api/_internal/ready"),
            "metrics": await c.get("/api/_internal/metrics"),
            "flags": await c.get("/api/_internal/flags"),
            "not found": await c.get("/api/nope"),
        }
    assert placed.status_code == 201, placed.text
    for name, response in responses.items():
        assert response.headers.get("cache-control") == "no-store", name


async def test_chunked_body_of_the_wrong_type_is_415(app: DrydockAPI) -> None:
    async def form() -> object:
        yield b"email=a%40example.com&"
        yield b"password=x"

    async with client_for(app) as c:
        responses = [
            await c.post(
                "/api/auth/login",
                content=form(),  # type: ignore[arg-type]
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            await c.post("/api/auth/login", content=form()),  # type: ignore[arg-type]
        ]
    for response in responses:
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.request.headers
        assert response.status_code == 415, response.text
        assert response.json()["error"]["code"] == "unsupported_media_type"
