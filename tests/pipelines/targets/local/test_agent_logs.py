from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.targets.local import replicas
from pipelines.targets.local.agent import Agent
from pipelines.targets.local.layout import EnvLayout

pytestmark = pytest.mark.unit


def test_the_agent_rolls_process_logs_that_outgrow_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replicas, "LOG_MAX_BYTES", 1000)
    layout = EnvLayout("staging", tmp_path / "staging")
    layout.create()
    big, small = layout.logs / "replica-0.log", layout.logs / "agent.log"
    big.write_text('{"level":"info"}\n' * 100)
    small.write_text('{"level":"info"}\n')
    agent = Agent(
        layout,
        slot_ports=[1],
        liveness_path="/h",
        readiness_path="/r",
        drain_seconds=1,
        env_for=lambda target: {},
    )
    with big.open("a") as writer:  # a replica keeps its descriptor across the roll
        agent._rotate_logs()
        writer.write('{"level":"info","after":"roll"}\n')
    assert (layout.logs / "replica-0.log.1").stat().st_size >= 1600
    assert big.read_text() == '{"level":"info","after":"roll"}\n'
    assert not (layout.logs / "agent.log.1").exists()
