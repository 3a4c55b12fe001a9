"""Rate limiting at the edge: per client address and route class, both backends, and
X-Forwarded-For trusted only from configured proxies."""

from __future__ import annotations

import httpx
import pytest

from service.app import DrydockAPI
from service.security.ratelimit import MemoryRateLimiter
from tests.service.conftest import INTERNAL, AppFactory, client_for

integration = pytest.mark.integration
AUTH_ROUTE = "/api/auth/me"  # 401 without a token, but counted like any auth request
API_ROUTE = "/docs"


async def statuses(
    client: httpx.AsyncClient, n: int, path: str = AUTH_ROUTE, **kw: str
) -> list[int]:
    return [(await client.get(path, headers=kw or None)).status_code for _ in range(n)]


def assert_rate_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 60


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


@integration
async def test_auth_routes_are_stricter_than_api_routes(app_factory: AppFactory) -> None:
    app = await app_factory(rate_limit_auth_per_minute=3, rate_limit_api_per_minute=6)
    async with client_for(app) as c:
        allowed = [await c.get(AUTH_ROUTE) for _ in range(3)]
        assert [r.status_code for r in allowed] == [401] * 3
        assert [r.headers["ratelimit-remaining"] for r in allowed] == ["2", "1", "0"]
        assert allowed[0].headers["ratelimit-limit"] == "3"
        assert_rate_limited(await c.get(AUTH_ROUTE), limit=3)
        login = await c.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
        assert_rate_limited(login, limit=3)

        assert await statuses(c, 6, API_ROUTE) == [200] * 6, "api routes have their own budget"
        assert_rate_limited(await c.get(API_ROUTE), limit=6)
    registry = app.drydock.metrics.registry
    assert registry.get_sample_value("http_rate_limited_total", {"route_class": "auth"}) == 2
    assert registry.get_sample_value("http_rate_limited_total", {"route_class": "api"}) == 1


@integration
async def test_internal_routes_are_rate_limited_per_source(app_factory: AppFactory) -> None:
    app = await app_factory(rate_limit_internal_per_minute=2)
    async with client_for(app, client_ip="198.51.100.7") as outsider:
        assert await statuses(outsider, 2, "/api/_internal/health") == [200, 200]
        assert_rate_limited(await outsider.get("/api/_internal/ready"), limit=2)
        assert_rate_limited(await outsider.get("/api/_internal/metrics"), limit=2)
    async with client_for(app, client_ip="127.0.0.1") as proxy:
        client = forwarded("203.0.113.9")
        with_token = {**client, **INTERNAL}
        assert await statuses(proxy, 2, "/api/_internal/flags", **with_token) == [200, 200]
        assert_rate_limited(await proxy.get("/api/_internal/health", headers=client), limit=2)
        other = forwarded("203.0.113.10")
        assert (await proxy.get("/api/_internal/health", headers=other)).status_code == 200
    registry = app.drydock.metrics.registry
    assert registry.get_sample_value("http_rate_limited_total", {"route_class": "internal"}) == 3


@integration
@pytest.mark.parametrize("backend", ["memory", "postgres"])
async def test_load_balancer_health_checks_are_not_rate_limited(
    app_factory: AppFactory, backend: str
) -> None:
    """The load balancer's probes come from a trusted proxy without X-Forwarded-For; what it
    forwards always carries one. A User-Agent claiming to be a health checker buys nothing."""
    app = await app_factory(
        rate_limit_backend=backend, rate_limit_internal_per_minute=1, trusted_proxies="10.0.0.0/8"
    )
    checker = {"User-Agent": "ELB-HealthChecker/2.0"}
    async with client_for(app, client_ip="10.0.3.4") as lb:
        assert await statuses(lb, 4, "/api/_internal/ready") == [200] * 4
        assert await statuses(lb, 4, "/api/_internal/health") == [200] * 4
    async with client_for(app, client_ip="127.0.0.1") as container_check:
        assert await statuses(container_check, 3, "/api/_internal/health") == [200] * 3
    buckets = "SELECT count(*) FROM rate_limits WHERE bucket LIKE 'internal:%'"
    if backend == "postgres":
        assert await app.drydock.db.fetchval(buckets) == 0, "exempt probes cost no query"
    async with client_for(app, client_ip="10.0.3.4") as lb:
        client = forwarded("203.0.113.5")
        assert await statuses(lb, 2, "/api/_internal/ready", **client) == [200, 429]
    async with client_for(app, client_ip="198.51.100.7") as spoofer:
        assert await statuses(spoofer, 2, "/api/_internal/health", **checker) == [200, 429]
    if backend == "postgres":
        assert await app.drydock.db.fetchval(buckets) == 2


@integration
async def test_memory_backend_counts_per_instance(app_factory: AppFactory) -> None:
    first, second = [
        await app_factory(rate_limit_backend="memory", rate_limit_auth_per_minute=2)
        for _ in range(2)
    ]
    async with client_for(first) as a, client_for(second) as b:
        assert await statuses(a, 3) == [401, 401, 429]
        assert await statuses(b, 3) == [401, 401, 429], "each replica has its own count"


@integration
async def test_postgres_backend_is_shared_by_instances(app_factory: AppFactory) -> None:
    first, second = [
        await app_factory(rate_limit_backend="postgres", rate_limit_auth_per_minute=3)
        for _ in range(2)
    ]
    async with client_for(first) as a, client_for(second) as b:
        responses = [await client.get(AUTH_ROUTE) for client in (a, b, a)]
        assert [r.headers["ratelimit-remaining"] for r in responses] == ["2", "1", "0"]
        assert_rate_limited(await b.get(AUTH_ROUTE), limit=3)
        assert_rate_limited(await a.get(AUTH_ROUTE), limit=3)


@integration
async def test_postgres_window_expiry_releases(app_factory: AppFactory) -> None:
    app = await app_factory(rate_limit_backend="postgres", rate_limit_auth_per_minute=1)
    async with client_for(app) as c:
        assert await statuses(c, 2) == [401, 429]
        await app.drydock.db.execute(
            "UPDATE rate_limits SET window_start = now() - interval '61 s'"
        )
        assert await statuses(c, 2) == [401, 429]


@integration
async def test_forwarded_for_is_ignored_from_an_untrusted_peer(app_factory: AppFactory) -> None:
    app = await app_factory(rate_limit_auth_per_minute=2)
    async with client_for(app, client_ip="198.51.100.7") as c:
        codes = [
            (await c.get(AUTH_ROUTE, headers=forwarded(f"203.0.113.{i}"))).status_code
            for i in range(3)
        ]
    assert codes == [401, 401, 429], "a spoofed header must not buy a fresh budget"


@integration
async def test_forwarded_for_is_honoured_from_a_trusted_proxy(app_factory: AppFactory) -> None:
    app = await app_factory(rate_limit_auth_per_minute=2)
    async with client_for(app, client_ip="127.0.0.1") as c:
        for i in range(4):
            response = await c.get(AUTH_ROUTE, headers=forwarded(f"203.0.113.{i}"))
            assert response.status_code == 401, "each forwarded client has its own budget"
        # Whatever a client prepends, the proxy appends the address it saw.
        spoofing = [forwarded(f"10.9.9.{i}, 192.0.2.50") for i in range(3)]
        codes = [(await c.get(AUTH_ROUTE, headers=h)).status_code for h in spoofing]
        assert codes == [401, 401, 429]


@integration
async def test_trusted_proxies_come_from_settings(app_factory: AppFactory) -> None:
    app: DrydockAPI = await app_factory(rate_limit_auth_per_minute=1, trusted_proxies="10.0.0.0/8")
    async with client_for(app, client_ip="10.1.2.3") as proxy:
        codes = [
            (await proxy.get(AUTH_ROUTE, headers=forwarded(f"203.0.113.{i}"))).status_code
            for i in range(3)
        ]
        assert codes == [401, 401, 401]
    async with client_for(app, client_ip="127.0.0.1") as loopback:
        codes = [
            (await loopback.get(AUTH_ROUTE, headers=forwarded(f"203.0.113.{i}"))).status_code
            for i in range(10, 12)
        ]
        assert codes == [401, 429], "loopback is no longer a trusted proxy"


@pytest.mark.unit
async def test_memory_window_resets_after_its_length() -> None:
    limiter = MemoryRateLimiter()
    now = [1000.0]
    limiter._now = lambda: now[0]
    decisions = [await limiter.hit("auth:a", 2, 60) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [d.remaining for d in decisions] == [1, 0, 0]
    now[0] += 45
    blocked = await limiter.hit("auth:a", 2, 60)
    assert (blocked.allowed, blocked.reset_s) == (False, 15)
    assert (await limiter.hit("auth:b", 2, 60)).allowed, "keys are independent"
    now[0] += 15
    assert (await limiter.hit("auth:a", 2, 60)).allowed


@pytest.mark.unit
async def test_memory_limiter_bounds_its_keys() -> None:
    limiter = MemoryRateLimiter()
    limiter.MAX_KEYS = 10
    now = [0.0]
    limiter._now = lambda: now[0]
    for i in range(10):
        await limiter.hit(f"k{i}", 5, 60)
    now[0] += 61
    await limiter.hit("fresh", 5, 60)
    assert len(limiter._windows) == 1
