"""`invoke bench.service`: the service against its own bare references, in one run.

The server under test is pinned to core 0 and wrk to core 1. References run on the same
uvicorn settings: a plain Starlette endpoint (the ceiling) and a Starlette endpoint doing
one asyncpg primary-key SELECT.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pipelines.bench.wrk import LoadResult, pinned, run_wrk
from pipelines.host.ports import free_port
from pipelines.postgres.cluster import Cluster, data_home

SERVER_CORE, LOAD_CORE = 0, 1
ITEMS = 1000
UVICORN = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
ORDER_SCRIPT = """
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"items":[{"sku":"SKU-%06d","quantity":1}]}', (n % 1000) + 1)
  return wrk.format("POST", "/api/orders", nil, body)
end
"""


def _headers_lua(headers: dict[str, str]) -> str:
    return "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())


async def _seed(url: str) -> None:
    import asyncpg

    from service.security.passwords import hash_password

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO users (email, password_hash, role) VALUES ('bench@example.com', $1, "
            "'admin') ON CONFLICT DO NOTHING",
            hash_password("bench-password-123"),
        )
        await conn.executemany(
            "INSERT INTO items (sku, name, price_cents, stock) VALUES ($1, $2, 100, 100000000)",
            [(f"SKU-{i:06d}", f"Item {i}") for i in range(1, ITEMS + 1)],
        )
    finally:
        await conn.close()


@contextmanager
def database() -> Iterator[str]:
    scratch = Path(tempfile.mkdtemp(prefix="drydock-bench-"))
    password = secrets.token_urlsafe(16)
    cluster = Cluster(home=data_home(scratch, "pg"), port=free_port())
    cluster.initialise(password)
    cluster.start()
    try:
        url = cluster.url(cluster.superuser, password, "postgres")
        from service.migrate import upgrade

        upgrade(url)
        asyncio.run(_seed(url))
        yield url
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(cluster.home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def server(argv: list[str], env: dict[str, str], probe: str, log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(SERVER_CORE),
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + probe, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{argv} did not start; see {log}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(
    name: str,
    url: str,
    duration: float,
    connections: int,
    script: str = "",
) -> LoadResult:
    run_wrk(
        name, url, duration=min(2, duration), connections=connections, core=LOAD_CORE, script=script
    )  # warm-up
    result = run_wrk(
        name, url, duration=duration, connections=connections, core=LOAD_CORE, script=script
    )
    print(
        f"  {name:<34} {result.rps:>9.0f} req/s  p50 {result.p50_ms:6.2f}  "
        f"p95 {result.p95_ms:6.2f}  p99 {result.p99_ms:6.2f} ms  errors {result.errors}"
        f"  non-2xx {result.non2xx}",
        flush=True,
    )
    return result


def run(duration: float = 10, connections: int = 32, report: Path = Path("reports")) -> int:
    from service.security.tokens import TokenService
    from service.settings import Settings

    report.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    results: dict[str, LoadResult] = {}
    print(
        f"bench.service: {duration:g} s per scenario, {connections} connections, "
        f"server on core {SERVER_CORE}, wrk on core {LOAD_CORE}",
        flush=True,
    )
    with database() as url:
        service_env = {
            "ENV": "production",
            "DATABASE_URL": url,
            "JWT_SECRET": secret,
            "METRICS_TOKEN": secrets.token_urlsafe(32),
            "RATE_LIMIT_API_PER_MINUTE": "100000000",
            "RATE_LIMIT_AUTH_PER_MINUTE": "100000000",
            "DB_POOL_MAX": "10",
            "DRAIN_SECONDS": "0",
            "LOG_LEVEL": "INFO",
        }
        token = TokenService(Settings(jwt_secret=secret)).issue_access(1, "admin")
        auth = _headers_lua({"Authorization": f"Bearer {token}"})
        with server(
            ["-m", "uvicorn", "pipelines.bench.reference:bare", *UVICORN],
            {},
            "/hello",
            report / "bench-bare.log",
        ) as base:
            results["bare"] = measure(
                "bare Starlette hello", base + "/hello", duration, connections
            )
        with server(
            ["-m", "uvicorn", "pipelines.bench.reference:select", *UVICORN],
            service_env,
            "/items/1",
            report / "bench-select.log",
        ) as base:
            results["select"] = measure(
                "bare Starlette + asyncpg SELECT", base + "/items/1", duration, connections
            )
        with server(
            ["-m", "service", "serve"],
            service_env,
            "/api/_internal/health",
            report / "bench-service.log",
        ) as base:
            results["health"] = measure(
                "(a) service health", base + "/api/_internal/health", duration, connections
            )
            results["item"] = measure(
                "(b) service GET /api/inventory/{id}",
                base + "/api/inventory/1",
                duration,
                connections,
                auth,
            )
            order_script = auth + 'wrk.headers["Content-Type"] = "application/json"\n'
            results["order"] = measure(
                "(c) service POST /api/orders",
                base,
                duration,
                connections,
                order_script + ORDER_SCRIPT,
            )
    return _verdict(results, connections, report / "bench-service.json")


def _verdict(results: dict[str, LoadResult], connections: int, path: Path) -> int:
    a = results["health"].rps / results["bare"].rps
    b = results["item"].rps / results["select"].rps
    checks = {
        "(a) health >= 0.5 x bare": (a >= 0.5, f"{a:.2f} x"),
        "(b) item >= 0.6 x select": (b >= 0.6, f"{b:.2f} x"),
        f"(b) item p99 <= 20 ms at {connections} conns": (
            results["item"].p99_ms <= 20,
            f"{results['item'].p99_ms:.1f} ms",
        ),
        "(c) order p95 <= 50 ms": (
            results["order"].p95_ms <= 50,
            f"{results['order'].p95_ms:.1f} ms",
        ),
        "no errors": (all(r.errors == 0 and r.non2xx == 0 for r in results.values()), ""),
    }
    path.write_text(
        json.dumps(
            {
                "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]},
                "connections": connections,
                "results": {k: v.as_dict() for k, v in results.items()},
                "checks": {k: {"ok": ok, "value": value} for k, (ok, value) in checks.items()},
            },
            indent=2,
        )
    )
    print("\nbench.service targets:")
    for name, (ok, value) in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name:<40} {value}")
    print(f"report: {path}")
    return 0 if all(ok for ok, _ in checks.values()) else 1
