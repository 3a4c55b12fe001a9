"""`invoke bench.gameday`: the game day on a scratch production environment (free ports, a
private state directory, torn down after), so its numbers never depend on, or disturb, the
environments people use. `weaken` turns a recovery off first, to show the game day fails
the scenario that needs it (`lb`: the agent no longer restarts Caddy)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.gameday.run import REPORTS, run
from pipelines.gameday.scenarios import ScenarioError
from pipelines.targets import get_target
from pipelines.targets.base import TargetError
from pipelines.targets.local.keeper import RESTART_ENV
from pipelines.targets.local.scratch import scratch_environments

WEAKENINGS = {"lb": RESTART_ENV}


def main(names: Sequence[str] = (), weaken: str = "", reports: Path = REPORTS) -> int:
    if weaken and weaken not in WEAKENINGS:
        print(f"bench.gameday: --weaken must be one of {', '.join(WEAKENINGS)}, not {weaken!r}")
        return 2
    try:
        outcome = play(names, weaken, reports)
    except (ScenarioError, TargetError) as exc:
        print(f"bench.gameday: {exc}")
        return 2
    return 0 if outcome["passed"] else 1


def play(
    names: Sequence[str],
    weaken: str = "",
    reports: Path = REPORTS,
    settings: Mapping[str, Any] | None = None,
    timing: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """`settings`: extra `drydock:` stack settings for the scratch environments (a test
    picks the rollout strategy and a shorter bake, say); `timing`: the game day's waits."""
    saved = os.environ.get(WEAKENINGS.get(weaken, ""), None) if weaken else None
    if weaken:  # the agent reads it when it starts, inside scratch.environment()
        os.environ[WEAKENINGS[weaken]] = "0"
    try:
        with scratch_environments("drydock-gameday-", **(settings or {})) as scratch:
            production = scratch.environment("production")
            print(f"bench.gameday: scratch production at {production.url}", flush=True)
            return run(production, names, reports, target=get_target("local"), timing=timing)
    finally:
        if weaken:
            if saved is None:
                os.environ.pop(WEAKENINGS[weaken], None)
            else:
                os.environ[WEAKENINGS[weaken]] = saved
