"""The stages the local canary pair holds: the spec's steps, none above half the traffic."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from infra.spec import defaults
from pipelines.targets.local.canary import PAIR_MAX_SHARE, LocalCanary

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
