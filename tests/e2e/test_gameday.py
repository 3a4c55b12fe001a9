"""The game day against a scratch production environment: the system as built passes, and a
system with one recovery turned off fails the scenario that needs it, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.bench.gameday_bench import play
from pipelines.targets.local.keeper import RESTART_ENV

pytestmark = pytest.mark.e2e


def test_kill_replica_and_lb_crash_pass_with_no_acknowledged_order_lost(tmp_path: Path) -> None:
    outcome = play(["kill-replica", "lb-crash"], reports=tmp_path)
    scores = {r["score"]["scenario"]: r["score"] for r in outcome["scenarios"]}
    assert outcome["passed"], {n: s["reasons"] for n, s in scores.items()}
    for name, result in scores.items():
        assert result["acknowledged_orders"] > 0, name
        assert result["orders_lost"] == 0, name
        assert result["detection_s"] is not None and result["recovery_s"] is not None, name
    written = json.loads(Path(outcome["paths"]["json"]).read_text())
    assert [r["score"]["scenario"] for r in written["scenarios"]] == ["kill-replica", "lb-crash"]
    html = Path(outcome["paths"]["html"]).read_text()
    assert "fault: lb-crash" in html and "Plotly.newPlot" in html


def test_without_the_agents_caddy_restart_lb_crash_fails_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RESTART_ENV, raising=False)
    outcome = play(["lb-crash"], weaken="lb", reports=tmp_path)
    assert not outcome["passed"]
    result = outcome["scenarios"][0]["score"]
    assert result["detection_s"] is not None  # Caddy's death is seen...
    assert result["recovery_s"] is None  # ...and nothing brings it back
    assert "never recovered: the load balancer (Caddy) is not running" in result["reasons"]
    markdown = Path(outcome["paths"]["markdown"]).read_text()
    assert "**FAIL**: " in markdown and "Caddy) is not running" in markdown
