"""Bad conditions around a local environment: each gets a clear message and a safe outcome."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest

from infra.spec import load_stack_file
from pipelines.host.ports import free_port, port_in_use
from pipelines.postgres.cluster import Cluster, PostgresError, data_home
from pipelines.targets.base import Release, TargetError
from pipelines.targets.local.environment import LocalEnvironment
from pipelines.targets.local.layout import EnvLayout
from tests.conftest import LocalStack

pytestmark = pytest.mark.integration


def isolated(tmp_path: Path, **overrides: int) -> LocalEnvironment:
    spec = load_stack_file("staging")
    ports = {
        "local_lb_port": free_port(),
        "local_postgres_port": free_port(),
        "local_agent_port": free_port(),
        "local_replica_base_port": 41_000,
    }
    return LocalEnvironment(
        "staging", state_dir=tmp_path, spec=dataclasses.replace(spec, **{**ports, **overrides})
    )


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = isolated(tmp_path, local_lb_port=port)
        with pytest.raises(TargetError) as excinfo:
            env.up()
    message = str(excinfo.value)
    assert f"port {port}" in message
    assert "localLoadBalancerPort" in message
    assert not env.layout.root.exists(), "nothing was created"


def test_a_stale_agent_pid_file_is_detected_and_removed(tmp_path: Path) -> None:
    env = isolated(tmp_path)
    env.layout.create()
    env.layout.agent_pid.write_text("999999")  # left by a crash or a reboot
    assert env.agent_pid() is None
    assert not env.layout.agent_pid.exists()


def test_a_data_directory_from_another_major_version_is_refused(tmp_path: Path) -> None:
    cluster = Cluster(home=tmp_path / "pg", port=free_port())
    cluster.data_dir.mkdir(parents=True)
    (cluster.data_dir / "PG_VERSION").write_text("16\n")
    with pytest.raises(PostgresError) as excinfo:
        cluster.initialise("unused-password")
    message = str(excinfo.value)
    assert "PostgreSQL 16 cluster" in message
    assert "PostgreSQL 18" in message
    assert "pg_dump" in message
    assert (cluster.data_dir / "PG_VERSION").read_text() == "16\n", "nothing was changed"


def test_a_missing_secret_key_stops_up_and_loses_nothing(tmp_path: Path) -> None:
    from pipelines.targets.local.runtime import ensure_secrets, open_store

    env = isolated(tmp_path)
    env.layout.create()
    ensure_secrets(open_store(env.layout))
    before = sorted(p.name for p in env.layout.secrets.iterdir())
    env.layout.secrets_key.unlink()
    with pytest.raises(TargetError) as excinfo:
        env.up()
    assert "secret store" in str(excinfo.value)
    assert "key" in str(excinfo.value)
    assert sorted(p.name for p in env.layout.secrets.iterdir()) == before
    assert not env.layout.secrets_key.exists(), "no new key replaced the lost one"


def test_a_corrupt_secret_key_is_refused(tmp_path: Path) -> None:
    from pipelines.targets.local.runtime import ensure_secrets, open_store

    env = isolated(tmp_path)
    env.layout.create()
    ensure_secrets(open_store(env.layout))
    env.layout.secrets_key.write_bytes(b"not a fernet key")
    with pytest.raises(TargetError) as excinfo:
        env.up()
    assert "secret store" in str(excinfo.value)


def test_a_full_disk_leaves_the_running_release_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.targets.local.rollouts as rollouts_module

    env = isolated(tmp_path)
    EnvLayout.create(env.layout)
    env.set_desired(Release("1+old", "1", "old", "/nowhere", "then"))
    before = env.layout.desired.read_text()

    def no_space(path: Path, data: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(rollouts_module, "write_json", no_space)
    with pytest.raises(TargetError) as excinfo:
        env.set_desired(Release("2+new", "2", "new", "/nowhere", "now"))
    assert "No space left on device" in str(excinfo.value)
    assert "Nothing changed" in str(excinfo.value)
    assert env.layout.desired.read_text() == before


def test_secret_rotation_under_load_fails_no_request_and_retires_refresh_tokens(
    local_staging: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    """Routine: no request fails, old access tokens live on until the cutoff, refresh tokens
    end. A second routine rotation inside the cutoff is refused. Compromise: the old access
    tokens are refused at once. Each rotation is in the ledger and the security log."""
    import httpx

    from pipelines.operations.rotation import rotate
    from pipelines.targets.local.ledger import FileLedger
    from pipelines.traffic.loadgen import Load

    env = local_staging.environment
    email, password = env.ensure_smoke_admin()

    def login() -> dict[str, str]:
        response = httpx.post(
            f"{env.url}/api/auth/login", json={"email": email, "password": password}, timeout=10
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def me(access_token: str) -> int:
        headers = {"Authorization": f"Bearer {access_token}"}
        return httpx.get(f"{env.url}/api/auth/me", headers=headers, timeout=10).status_code

    tokens = login()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    def authenticated(client: httpx.Client, _: int) -> httpx.Response:
        return client.get("/api/auth/me", headers=headers)

    caplog.set_level(logging.INFO, logger="drydock.security")
    with Load(env.url, authenticated, workers=3, max_seconds=120, pause_s=0.01) as load:
        routine = rotate("staging", "jwt")
    assert "rotated (routine)" in routine and "verifying access tokens until" in routine
    assert load.report.requests > 50
    assert load.report.failures == 0, load.report.summary()
    assert load.report.statuses.keys() == {200}, "old access tokens stay valid (previous key)"
    refused = httpx.post(
        f"{env.url}/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}, timeout=10
    )
    assert refused.status_code == 401

    key_before = env.secrets.describe("jwt-signing-key")
    with pytest.raises(TargetError, match=r"still verifies access tokens until .*--compromised"):
        rotate("staging", "jwt")
    assert env.secrets.describe("jwt-signing-key") == key_before, "nothing was changed"

    during_cutoff = login()["access_token"]  # signed with the routine rotation's key
    compromise = rotate("staging", "jwt", compromised=True)
    assert "rotated (compromise)" in compromise and "every session logs in again now" in compromise
    assert me(tokens["access_token"]) == 401, "the first key's tokens: refused at once"
    assert me(during_cutoff) == 401, "and the routine key's"
    assert me(login()["access_token"]) == 200
    assert env.secrets.describe("jwt-signing-key").previous is None

    ledger = FileLedger(local_staging.state_dir / "ledger.jsonl")
    rotations = ledger.entries("staging", "secret-rotated")[-2:]
    assert [(r["mode"], r["ok"]) for r in rotations] == [("routine", True), ("compromise", True)]
    events = [r for r in caplog.records if getattr(r, "security_event", None) == "key_rotated"]
    assert [(e.levelno, e.__dict__["mode"]) for e in events] == [
        (logging.INFO, "routine"),
        (logging.WARNING, "compromise"),
    ]


def test_a_failure_after_postgres_started_says_what_is_left_running(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)  # too long for Caddy's admin socket, fine for the rest
    env = isolated(deep)
    try:
        with pytest.raises(TargetError) as exc:
            env.up()
        message = str(exc.value)
        assert "admin socket path" in message
        assert "left running: PostgreSQL." in message
        assert "invoke env.down --env staging" in message
        assert env.cluster().is_running()
        assert env.agent_pid() is None
    finally:
        env.down(purge_data=True)
    assert not env.cluster().is_running()


def test_a_port_held_by_a_connection_is_named_with_the_way_out(tmp_path: Path) -> None:
    """Nothing listens, yet PostgreSQL could not bind: a connection holds the port as its
    local end, as outgoing connections do with ports in the kernel's ephemeral range."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        with socket.socket() as client:
            # Port 0 on purpose: the kernel hands out an ephemeral port, as it does for an
            # outgoing connection, which is the case this test is about.
            client.bind(("127.0.0.1", 0))
            held = client.getsockname()[1]
            client.connect(server.getsockname())
            env = isolated(tmp_path, local_postgres_port=held)
            with pytest.raises(TargetError) as excinfo:
                env.up()
    message = str(excinfo.value)
    assert f"PostgreSQL port {held} on 127.0.0.1 is taken" in message
    assert "a connection holds it as its local port" in message
    assert "ephemeral range" in message  # the kernel picked `held` from it
    assert "drydock:localPostgresPort" in message
    assert not env.layout.root.exists(), "nothing was created"


def test_a_new_postgres_port_takes_effect_at_the_next_start(tmp_path: Path) -> None:
    cluster = Cluster(home=data_home(tmp_path, "pg"), port=free_port(), durable=False)
    cluster.initialise("pw-" + os.urandom(4).hex())
    moved = Cluster(home=cluster.home, port=free_port(), durable=False)
    try:
        moved.start()
        assert port_in_use(moved.port)
        assert not port_in_use(cluster.port)
    finally:
        moved.stop(mode="immediate")
        shutil.rmtree(cluster.home, ignore_errors=True)
