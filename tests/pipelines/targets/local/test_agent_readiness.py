"""The agent probes readiness with the replicas' METRICS_TOKEN, so an unready replica says
why; without it, a real service gives the verdict alone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.host.procs import process_start
from pipelines.targets.base import Health
from pipelines.targets.local.agent import Agent
from pipelines.targets.local.layout import EnvLayout
from pipelines.targets.local.replicas import ReplicaRecord, probe
from tests.service.conftest import METRICS_TOKEN

from .served_app import ServedApp

pytestmark = pytest.mark.integration


@pytest.fixture
def served(fresh_database: str) -> Iterator[ServedApp]:
    with ServedApp(fresh_database) as app:
        yield app


def test_the_agent_reads_why_a_replica_is_unready_with_the_token(
    tmp_path: Path, served: ServedApp
) -> None:
    served.app.drydock.draining = True
    with httpx.Client(timeout=5) as client:
        assert probe(client, served.port, "/api/_internal/ready") == (503, "")
    layout = EnvLayout("staging", tmp_path / "staging")
    layout.create()
    me = os.getpid()
    record = ReplicaRecord(0, served.port, me, str(process_start(me)), "r1", "a", 1, time.time())
    for token, reason in (
        (METRICS_TOKEN, "draining: shutting down; finishing requests in flight"),
        ("a-stale-token-" + "y" * 30, "readiness 503"),
    ):
        agent = Agent(
            layout,
            slot_ports=[served.port],
            liveness_path="/api/_internal/health",
            readiness_path="/api/_internal/ready",
            drain_seconds=1,
            env_for=lambda target: {},
            internal_token=lambda token=token: token,
        )
        agent._observe({0: record})
        assert (agent.health[0].health, agent.health[0].reason) == (Health.UNREADY, reason)
