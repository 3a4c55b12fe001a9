"""The local security alarms on a real scrape: the service's counter driven inside the process
that serves it, read through /api/_internal/metrics with METRICS_TOKEN by the monitor, and
judged with CloudWatch's rules."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.spec import EnvironmentSpec, defaults
from pipelines.targets.local.layout import EnvLayout, read_json, write_json
from pipelines.targets.local.monitor import Monitor
from service.security.events import security_event
from tests.service.conftest import METRICS_TOKEN

from .served_app import ServedApp

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0  # a period boundary
PERIOD = 60
REUSE, LOCKOUT = "security-refresh-reuse", "security-account-lockout"


@pytest.fixture
def served(fresh_database: str) -> Iterator[ServedApp]:
    with ServedApp(fresh_database) as app:
        yield app


def spec() -> EnvironmentSpec:
    return dataclasses.replace(
        defaults("staging"),
        security_alarm_period_seconds=PERIOD,
        refresh_reuse_alarm_threshold=3,
        lockout_alarm_threshold=2,
    )


def monitor_of(tmp_path: Path, served: ServedApp, token: str = METRICS_TOKEN) -> Monitor:
    """A monitor whose agent sees one ready replica: the served app."""
    layout = EnvLayout("staging", tmp_path / "staging")
    layout.create()
    replica = {"slot": 0, "pid": os.getpid(), "port": served.port, "health": "ready"}
    write_json(layout.observed, {"replicas": [replica]})
    write_json(layout.desired, {"replicas": 1})
    return Monitor(layout, spec(), lambda: token)


def drive(event: str, times: int) -> None:
    for _ in range(times):
        security_event(event, user_id=7)


def test_a_reuse_spike_and_a_lockout_spike_each_raise_their_alarm(
    tmp_path: Path, served: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = monitor_of(tmp_path, served)
    monitor.tick(T0 + 1)  # the first scrape is the baseline
    drive("refresh_reused", 3)
    drive("account_locked", 1)  # below its threshold of 2
    monitor.tick(T0 + 31)
    with caplog.at_level(logging.WARNING, logger="pipelines.targets.local.alarms"):
        monitor.tick(T0 + PERIOD + 1)  # the first period is complete: judged
    states = read_json(monitor.layout.alarms / "state.json")
    assert states["security_states"] == {REUSE: "ALARM", LOCKOUT: "OK"}
    assert not set(states["states"]) & {REUSE, LOCKOUT}, "a release is not judged by attacks"
    assert any(f"alarm {REUSE}: OK -> ALARM" in r.message for r in caplog.records)

    drive("account_locked", 2)
    monitor.tick(T0 + PERIOD + 31)
    monitor.tick(T0 + 2 * PERIOD + 1)
    states = read_json(monitor.layout.alarms / "state.json")
    assert states["security_states"] == {REUSE: "OK", LOCKOUT: "ALARM"}
    history = [json.loads(line) for line in (monitor.layout.alarms / "history.jsonl").open()]
    reuse = next(h for h in history if h["alarm"] == REUSE and h["new_state"] == "ALARM")
    assert "1 out of the last 1 datapoints [3 " in reuse["reason"]
    assert "greater than or equal to the threshold (3)" in reuse["reason"]


def test_without_the_token_the_monitor_sees_nothing_to_alarm_on(
    tmp_path: Path, served: ServedApp
) -> None:
    monitor = monitor_of(tmp_path, served, token="not-the-metrics-token-" + "x" * 20)
    monitor.tick(T0 + 1)
    drive("refresh_reused", 10)
    monitor.tick(T0 + 31)
    monitor.tick(T0 + PERIOD + 1)
    states = read_json(monitor.layout.alarms / "state.json")
    assert states["security_states"][REUSE] != "ALARM"
    stored = (monitor.layout.alarms / "datapoints.jsonl").read_text()
    assert "security_events:" not in stored, "a replica that refused the scrape counts nothing"
