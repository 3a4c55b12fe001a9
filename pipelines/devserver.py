"""`invoke service.run`: the API on an embedded PostgreSQL 18, migrations applied.

A single-process convenience for development; the staging/production environments of
the local target add the load balancer, the agent and the secret store.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from pipelines.host.ports import free_port, port_free, taken_reason
from pipelines.postgres.cluster import Cluster, data_home

DATABASE = "drydock"


def state_dir() -> Path:
    return Path(os.environ.get("DRYDOCK_STATE_DIR", ".local")).resolve()


def _password(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


async def _ensure_database(admin_url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()


def prepare(pg_port: int | None = None) -> tuple[Cluster, str]:
    """Start (or reuse) the dev cluster and migrate; return it and the app's database URL."""
    root = state_dir() / "dev"
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(home=data_home(root, "postgres"), port=pg_port or 0)
    password = _password(root / "postgres-password")
    port_file = root / "postgres-port"
    if not cluster.port:
        cluster.port = int(port_file.read_text()) if port_file.exists() else free_port()
    if not cluster.is_initialised():
        cluster.initialise(password)
    elif not cluster.is_running() and not port_free(cluster.port):
        cluster.set_port(free_port())
    port_file.write_text(str(cluster.port))
    cluster.start()
    admin_url = cluster.url(cluster.superuser, password)
    asyncio.run(_ensure_database(admin_url))
    database_url = cluster.url(cluster.superuser, password, DATABASE)

    from service.migrate import upgrade

    upgrade(database_url)
    return cluster, database_url


def run(port: int = 8000, pg_port: int | None = None, keep_db: bool = False) -> None:
    from service.server import serve
    from service.settings import load_settings

    if not port_free(port):
        raise SystemExit(
            f"port {port} on 127.0.0.1 is taken ({taken_reason(port)}); pass --port to choose"
            " another"
        )
    cluster, database_url = prepare(pg_port)
    settings = load_settings(env="development", database_url=database_url)
    print(
        f"drydock API on http://127.0.0.1:{port} (PostgreSQL 18 on 127.0.0.1:{cluster.port};"
        f" Ctrl-C stops both)",
        flush=True,
    )
    try:
        serve(settings, host="127.0.0.1", port=port)
    finally:
        if not keep_db:
            cluster.stop()
