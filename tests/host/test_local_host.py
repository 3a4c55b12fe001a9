"""The running local environment, inspected the way an operator would: testinfra on this host."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncpg
import pytest
import testinfra

from pipelines.targets.local.runtime import NAMES, SUPERUSER
from tests.conftest import LocalStack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def host() -> testinfra.host.Host:
    return testinfra.get_host("local://")


def our_ports(stack: LocalStack) -> set[int]:
    spec = stack.environment.spec
    return {spec.local_lb_port, spec.local_postgres_port, *stack.environment.slot_ports}


def test_every_listener_is_on_loopback(
    host: testinfra.host.Host, local_staging: LocalStack
) -> None:
    ports = our_ports(local_staging)
    listening = [s for s in host.socket.get_listening_sockets() if s.startswith("tcp")]
    ours = [s for s in listening if int(s.rsplit(":", 1)[1]) in ports]
    assert ours, listening
    for socket_url in ours:
        address = socket_url.split("://", 1)[1].rsplit(":", 1)[0]
        assert address in {"127.0.0.1", "::1"}, socket_url
    lb = local_staging.environment.spec.local_lb_port
    assert host.socket(f"tcp://127.0.0.1:{lb}").is_listening
    assert not host.socket(f"tcp://0.0.0.0:{lb}").is_listening


def test_processes_run_as_the_expected_users(
    host: testinfra.host.Host, local_staging: LocalStack
) -> None:
    cluster = local_staging.environment.cluster()
    postmaster = host.process.get(pid=cluster.pid())
    me = host.user().name
    assert postmaster.user == cluster.account.name
    if os.geteuid() == 0:
        assert postmaster.user != "root", "PostgreSQL must not run as root"
    agent = host.process.get(pid=local_staging.environment.agent_pid())
    assert agent.user == me
    for replica in local_staging.environment.status().replicas:
        assert host.process.get(pid=replica.pid).user == me


def test_state_directory_and_secret_files_are_private(local_staging: LocalStack) -> None:
    layout = local_staging.environment.layout
    for directory in (layout.root, layout.secrets, layout.agent, layout.logs):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    secret_files = [*list(layout.secrets.iterdir()), layout.secrets_key]
    assert len(secret_files) > 3
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_plaintext_secret_under_the_state_directory_or_in_logs(
    local_staging: LocalStack,
) -> None:
    env = local_staging.environment
    store = env.secrets
    values = [store.get(name).encode() for name in store.names()]
    assert len(values) >= 5
    roots = [env.layout.root, env.layout.postgres]
    scanned = 0
    for root in roots:
        for path in Path(root).rglob("*"):
            if not path.is_file() or path.stat().st_size > 50_000_000:
                continue
            data = path.read_bytes()
            scanned += 1
            for value in values:
                assert value not in data, f"a secret value appears in {path}"
    assert scanned > 10


def test_postgres_refuses_a_wrong_password(local_staging: LocalStack) -> None:
    env = local_staging.environment
    good = env.secrets.get(NAMES.superuser)
    port = env.spec.local_postgres_port

    async def connect(password: str) -> int:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, password=password, database="postgres"
        )
        try:
            return int(await conn.fetchval("SELECT 1"))
        finally:
            await conn.close()

    import asyncio

    assert asyncio.run(connect(good)) == 1
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(connect(good + "-wrong"))


def test_app_role_cannot_change_the_schema(local_staging: LocalStack) -> None:
    url = local_staging.environment.database.url("app")

    async def try_ddl() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE intruder (id int)")
        finally:
            await conn.close()

    import asyncio

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(try_ddl())
