"""The agent's load-balancer keeper: a dead Caddy is started on the next tick, a failing start
backs off instead of spinning, and the off switch (for the weakened game day) is honoured.
The real Caddy is killed and brought back in tests/e2e/test_gameday.py."""

from __future__ import annotations

import pytest

from pipelines.targets.local.keeper import RESTART_ENV, LoadBalancerKeeper

pytestmark = pytest.mark.unit


class Caddy:
    def __init__(self, running: bool = True, start_fails: int = 0) -> None:
        self.running = running
        self.start_fails = start_fails
        self.starts = 0

    def is_running(self) -> bool:
        return self.running

    def start(self, timeout: float = 10.0) -> bool:
        self.starts += 1
        if self.start_fails:
            self.start_fails -= 1
            raise RuntimeError("port taken")
        self.running = True
        return True


def test_a_dead_caddy_is_started_on_the_next_tick() -> None:
    caddy = Caddy(running=False)
    keeper = LoadBalancerKeeper(caddy, enabled=True)
    keeper.tick(now=100.0)
    assert caddy.running and keeper.restarts == 1
    keeper.tick(now=100.25)
    assert caddy.starts == 1  # running: left alone


def test_a_failing_start_backs_off() -> None:
    caddy = Caddy(running=False, start_fails=2)
    keeper = LoadBalancerKeeper(caddy, enabled=True)
    keeper.tick(now=100.0)  # fails: next try at 102
    keeper.tick(now=101.0)
    assert caddy.starts == 1
    keeper.tick(now=102.0)  # fails again: next try at 106
    keeper.tick(now=105.0)
    assert caddy.starts == 2
    keeper.tick(now=106.0)
    assert caddy.running and caddy.starts == 3


def test_the_off_switch_leaves_caddy_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESTART_ENV, "0")
    caddy = Caddy(running=False)
    keeper = LoadBalancerKeeper(caddy)
    keeper.tick(now=100.0)
    assert not caddy.running and caddy.starts == 0
