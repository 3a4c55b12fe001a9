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


def test_in_steady_state_readiness_is_asked_once_a_second_not_every_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import time

    from pipelines.targets.base import RolloutState
    from pipelines.targets.local import agent as agent_module
    from pipelines.targets.local.agent import Rollout
    from pipelines.targets.local.replicas import ReplicaRecord, process_start

    probes: list[str] = []
    monkeypatch.setattr(
        agent_module,
        "probe",
        lambda client, port, path, headers=None: (probes.append(path), (200, ""))[1],
    )
    asked_lb: list[float] = []

    def lb_health() -> dict[int, bool]:
        asked_lb.append(time.monotonic())
        return {}

    layout = EnvLayout("staging", tmp_path / "staging")
    layout.create()
    agent = Agent(
        layout,
        slot_ports=[1],
        liveness_path="/live",
        readiness_path="/ready",
        drain_seconds=1,
        env_for=lambda target: {},
        lb_health=lb_health,
    )
    me = os.getpid()
    record = ReplicaRecord(0, 1, me, str(process_start(me)), "r1", "a", 1, time.time())
    records = {0: record}
    agent._observe(records)  # first sight: probed, and now ready
    assert probes.count("/ready") == 1 and len(asked_lb) == 1
    for _ in range(5):  # ticks within the second: nothing asked
        agent._observe(records)
    assert probes.count("/ready") == 1 and len(asked_lb) == 1
    agent._probed_at -= agent_module.STEADY_PROBE_S  # a second later
    agent._observe(records)
    assert probes.count("/ready") == 2 and len(asked_lb) == 2
    agent.rollout = Rollout(2, "r2", time.time(), RolloutState.IN_PROGRESS)
    for _ in range(3):  # a rollout running: every tick asks
        agent._observe(records)
    assert probes.count("/ready") == 5 and len(asked_lb) == 5
