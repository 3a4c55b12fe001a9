"""Local environments for backup and drill tests, on the session's throwaway PostgreSQL.

Staging and production share the `pg_server` cluster: production's `drydock` database is
the source, staging's scratch databases land beside it. Both stores hold the same role
passwords, as roles are cluster-wide. No Caddy, agent or replicas: nothing is deployed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from infra.spec import load_stack_file
from pipelines.postgres.tools import ConnInfo, drop_database
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.runtime import DATABASE, NAMES, ensure_secrets
from tests.conftest import PgServer

SEED = """
INSERT INTO users (email, password_hash, role)
    SELECT 'user' || g || '@example.com', 'x', CASE WHEN g = 1 THEN 'admin' ELSE 'user' END
    FROM generate_series(1, 40) g;
INSERT INTO items (sku, name, price_cents, stock)
    SELECT 'SKU-' || g, 'item ' || g, 100 + g, g FROM generate_series(1, 300) g;
INSERT INTO orders (user_id, total_cents)
    SELECT 1 + g % 40, 1000 + g FROM generate_series(1, 120) g;
INSERT INTO order_lines (order_id, item_id, sku, quantity, unit_price_cents)
    SELECT o, i, 'SKU-' || i, 1 + (o + i) % 3, 100 + i
    FROM generate_series(1, 120) o, generate_series(1, 3) i;
INSERT INTO heartbeat (id, beat_at, instance) VALUES (1, now(), 'seed');
"""


@dataclass
class Site:
    pg: PgServer
    staging: LocalEnvironment
    production: LocalEnvironment
    ledger: FileLedger

    @property
    def admin(self) -> ConnInfo:
        return ConnInfo.from_url(self.pg.url())

    def url(self, database: str = DATABASE) -> str:
        return self.pg.url(database)

    async def execute(self, sql: str, database: str = DATABASE) -> None:
        conn = await asyncpg.connect(self.url(database))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


def environment(name: str, pg: PgServer, state: Path, shared: dict[str, str]) -> LocalEnvironment:
    spec = dataclasses.replace(load_stack_file(name), local_postgres_port=pg.cluster.port)
    env = LocalEnvironment(name, state_dir=state, spec=spec)
    env.layout.create()
    store = env.secrets
    for secret, value in shared.items():
        store.ensure(secret, lambda value=value: value)  # type: ignore[misc]
    ensure_secrets(store)
    return env


def build_site(pg: PgServer, state: Path) -> Site:
    from service.migrate import upgrade

    drop_database(ConnInfo.from_url(pg.url()), DATABASE)
    first = environment("production", pg, state, {NAMES.superuser: pg.password})
    shared = {
        name: first.secrets.get(name)
        for name in (NAMES.superuser, NAMES.owner, NAMES.app, NAMES.jwt, NAMES.metrics)
    }
    second = environment("staging", pg, state, shared)
    first.database.ensure_roles()
    upgrade(first.database.url("owner"))
    site = Site(pg, second, first, FileLedger(state / "ledger.jsonl"))
    asyncio.run(site.execute(f'SET ROLE "drydock_owner"; {SEED}'))
    return site


def teardown_site(site: Site, state: Path) -> None:
    admin = site.admin

    async def leftovers() -> list[str]:
        conn = await asyncpg.connect(site.url("postgres"))
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'drydock%' "
                "OR datname LIKE 'restore\\_%' OR datname LIKE 'drill\\_%'"
            )
        finally:
            await conn.close()
        return [r["datname"] for r in rows]

    for name in asyncio.run(leftovers()):
        drop_database(admin, name)
    shutil.rmtree(state, ignore_errors=True)
