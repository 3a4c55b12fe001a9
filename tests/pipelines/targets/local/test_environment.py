"""The local environment with real parts: PostgreSQL, Caddy, the agent and replicas."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from pipelines.targets.base import Health
from pipelines.targets.local.replicas import Replicas, process_start
from pipelines.traffic.loadgen import Load, get
from tests.conftest import LocalStack

pytestmark = pytest.mark.e2e


def wait_until(condition: Callable[[], bool], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def ready_pids(stack: LocalStack) -> dict[int, int]:
    status = stack.environment.status()
    return {r.slot: r.pid for r in status.replicas if r.health is Health.READY and r.pid}


def replica_processes(stack: LocalStack) -> int:
    ports = {str(p) for p in stack.environment.slot_ports}
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
        except OSError:
            continue
        if b"service" in argv and b"serve" in argv and argv[-2].decode() in ports:
            count += 1
    return count


def test_up_serves_through_the_load_balancer(local_staging: LocalStack) -> None:
    env = local_staging.environment
    status = env.status()
    assert status.up and status.ready_replicas == 2, status
    assert {p.name for p in status.processes if p.running} == {"postgres", "caddy", "agent"}
    assert status.release and status.database["size_bytes"] > 0
    response = httpx.get(f"{env.url}/api/_internal/health", timeout=5)
    assert response.status_code == 200 and "x-request-id" in response.headers


def test_second_up_changes_nothing(local_staging: LocalStack) -> None:
    env = local_staging.environment
    before = env.status()
    after = env.up()
    assert [p.pid for p in after.processes] == [p.pid for p in before.processes]
    assert {r.pid for r in after.replicas} == {r.pid for r in before.replicas}


def test_killed_replica_is_replaced_and_load_balancer_routes_around_it(
    local_staging: LocalStack,
) -> None:
    env = local_staging.environment
    victim_slot, victim_pid = next(iter(ready_pids(local_staging).items()))
    workers = 4
    with Load(env.url, get("/api/_internal/health"), workers=workers, max_seconds=30) as load:
        time.sleep(1)
        os.kill(victim_pid, signal.SIGKILL)
        wait_until(
            lambda: ready_pids(local_staging).get(victim_slot) not in (None, victim_pid),
            what="the killed replica to be replaced",
        )
        time.sleep(1)
    report = load.report
    assert report.requests > 100, report.summary()
    # At most the requests in flight on the killed replica can fail: one per worker.
    assert report.failures <= workers, report.summary()
    wait_until(
        lambda: replica_processes(local_staging) == 2,
        timeout=10,
        what="exactly two replica processes",
    )


def test_dead_agent_is_reported_and_revived_without_duplicates(local_staging: LocalStack) -> None:
    env = local_staging.environment
    before = ready_pids(local_staging)
    agent = env.agent_pid()
    assert agent is not None
    os.kill(agent, signal.SIGKILL)
    wait_until(lambda: env.agent_pid() is None, what="the agent to be gone")
    status = env.status()
    assert not status.up
    assert any("agent is not running" in problem for problem in status.problems)
    env.up()
    assert env.agent_pid() not in (None, agent)
    time.sleep(1.5)  # a few agent ticks
    assert ready_pids(local_staging) == before, "replicas were adopted, not restarted"
    assert replica_processes(local_staging) == 2


def test_postgres_outage_turns_replicas_unready_then_ready_again(
    local_staging: LocalStack,
) -> None:
    env = local_staging.environment
    orders = committed_orders(local_staging, 3)
    before = ready_pids(local_staging)
    cluster = env.cluster()
    cluster.stop()
    try:
        wait_until(
            lambda: all(r.health is Health.UNREADY for r in env.status().replicas),
            what="replicas to report unready",
        )
        response = httpx.get(f"{env.url}/api/_internal/ready", timeout=10)
        assert response.status_code >= 500
    finally:
        cluster.start()
    wait_until(lambda: len(ready_pids(local_staging)) == 2, what="replicas to recover")
    assert ready_pids(local_staging) == before, "recovered without restarting"
    with httpx.Client(base_url=env.url, timeout=10, headers=orders.headers) as client:
        for order_id in orders.ids:
            assert client.get(f"/api/orders/{order_id}").status_code == 200


@dataclass
class Orders:
    headers: dict[str, str]
    ids: list[int]


def committed_orders(stack: LocalStack, count: int) -> Orders:
    """Orders placed through the load balancer, committed before anything is broken."""
    env = stack.environment
    email, password = env.ensure_smoke_admin()
    with httpx.Client(base_url=env.url, timeout=10) as client:
        token = client.post("/api/auth/login", json={"email": email, "password": password}).json()[
            "access_token"
        ]
        headers = {"Authorization": f"Bearer {token}"}
        sku = f"OUTAGE-{time.monotonic_ns()}"
        created = client.post(
            "/api/inventory",
            headers=headers,
            json={"sku": sku, "name": "outage test", "price_cents": 1, "stock": 10},
        )
        assert created.status_code == 201, created.text
        ids = []
        for _ in range(count):
            placed = client.post(
                "/api/orders", headers=headers, json={"items": [{"sku": sku, "quantity": 1}]}
            )
            assert placed.status_code == 201, placed.text
            ids.append(int(placed.json()["id"]))
    return Orders(headers, ids)


def test_replica_records_survive_in_slot_files(local_staging: LocalStack) -> None:
    records = Replicas(local_staging.environment.layout).records()
    assert len(records) == 2
    for record in records.values():
        assert process_start(record.pid) == record.pid_start


def test_a_hung_replica_fails_liveness_and_is_replaced(local_staging: LocalStack) -> None:
    victim_slot, victim_pid = next(iter(ready_pids(local_staging).items()))
    os.kill(victim_pid, signal.SIGSTOP)  # alive, but answers nothing: liveness must catch it
    try:
        wait_until(
            lambda: ready_pids(local_staging).get(victim_slot) not in (None, victim_pid),
            timeout=40,
            what="the hung replica to be replaced",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim_pid, signal.SIGCONT)
    wait_until(lambda: process_start(victim_pid) is None, timeout=10, what="the hung one gone")
    status = local_staging.environment.status()
    replaced = next(r for r in status.replicas if r.slot == victim_slot)
    assert replaced.restarts >= 1
