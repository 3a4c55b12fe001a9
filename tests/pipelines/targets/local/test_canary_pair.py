"""The local canary pair: the stages it holds (none above half the traffic), and the access
log entries each stage is judged on."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra.spec import defaults
from pipelines.targets.local.canary import PAIR_MAX_SHARE, LocalCanary, _access_entries

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("configured", "held"),
    [
        ((10, 50, 100), [10, 50]),  # production's default: 100 % is the promotion
        ((5, 25, 100), [5, 25, 50]),  # the last step held at the most the pair can take
        ((10, 100), [10, 50]),  # a jump to all of it is held at half first
        ((100,), [50]),
        ((20, 60, 80, 100), [20, 50]),
    ],
)
def test_each_step_is_held_at_no_more_than_half(
    configured: tuple[int, ...], held: list[int], tmp_path: Path
) -> None:
    spec = dataclasses.replace(defaults("production"), canary_steps=configured)
    env = SimpleNamespace(spec=spec, layout=SimpleNamespace(canary=tmp_path))
    steps = LocalCanary(env).steps  # type: ignore[arg-type]
    assert list(steps) == held
    assert max(steps) <= PAIR_MAX_SHARE


def entry(ts: float, port: int = 31001, status: int = 200) -> str:
    """One line as Caddy's JSON access log writes it: "ts" first after the level."""
    body = {"level": "info", "ts": ts, "logger": "http.log.access.lb", "status": status}
    return json.dumps(body | {"upstream_port": str(port), "duration": 0.012})


def test_a_window_reads_its_own_entries_from_the_log_and_those_rolled_since(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    rolled = tmp_path / "access-2026-12-03T20-00-00.000.log"
    rolled.write_text("\n".join([entry(90.0), entry(100.0), entry(104.5)]) + "\n")
    log.write_text(
        "\n".join(
            [
                entry(105.0, status=502),
                '{"level":"info","ts":106.0,"logger":"http.log.acc',  # torn by a roll
                entry(109.999),
                entry(110.0),  # the window is [start, end)
                "not json at all",
            ]
        )
        + "\n"
    )
    os.utime(rolled, (100.0, 100.0))  # rolled after the window started
    stale = tmp_path / "access-2026-12-03T19-00-00.000.log"
    stale.write_text(entry(101.0) + "\n")
    os.utime(stale, (50.0, 50.0))  # rolled before it: not read

    found = list(_access_entries(log, 100.0, 110.0))
    assert [e["ts"] for e in found] == [100.0, 104.5, 105.0, 109.999]
    assert found[2]["status"] == 502
