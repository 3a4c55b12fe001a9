"""The canary's stages in the deploy report and the release notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.deploy.canary.judge import compare
from pipelines.deploy.canary.report import add_to_release_notes, markdown_lines
from pipelines.deploy.canary.stages import CanaryOutcome
from pipelines.deploy.report import markdown
from pipelines.targets.base import CanaryWindow, ServedTraffic

pytestmark = pytest.mark.unit


def aborted() -> dict[str, object]:
    good = compare(
        CanaryWindow(
            10, 0, 20, ServedTraffic(100, 0, [0.02] * 100), ServedTraffic(900, 0, [0.02] * 900)
        )
    )
    bad = compare(
        CanaryWindow(
            50, 20, 40, ServedTraffic(500, 12, [0.02] * 500), ServedTraffic(500, 0, [0.02] * 500)
        )
    )
    outcome = CanaryOutcome(
        ok=False,
        stages=[good.as_dict() | {"baseline_from": "this stage"}, bad.as_dict()],
        reason="; ".join(bad.failures()),
        aborted_at=50,
        action="all traffic back on the stable replicas; canary stopped",
    )
    return outcome.as_dict()


def test_each_stage_shows_share_numbers_and_verdict() -> None:
    lines = markdown_lines(aborted())
    assert lines[2].startswith("Verdict: **aborted at 50 %**: errors: canary 12/500 (2.40 %)")
    assert lines[3] == "Action: all traffic back on the stable replicas; canary stopped"
    ten, fifty = lines[-2], lines[-1]
    assert ten.startswith("| 10 % | 0/100 (0.00%), p95 20 ms | 0/900 (0.00%), p95 20 ms |")
    assert ten.endswith("| promote |")
    assert fifty.startswith("| 50 % | 12/500 (2.40%), p95 20 ms |")
    assert "| **canary 12/500 (2.40 %) vs baseline 0/500" in fifty
    assert fifty.endswith("| abort |")


def test_the_deploy_report_and_the_release_notes_carry_the_stages(tmp_path: Path) -> None:
    canary = aborted()
    report = {
        "deploy_id": "d1",
        "sha": "c0ffee" * 7,
        "release": {"id": "1.2.3+c0ffee"},
        "ok": False,
        "started_at": 0.0,
        "finished_at": 90.0,
        "plan": {"6": {"summary": "production"}},
        "steps": {
            "6": {"ok": False, "duration_s": 80.0, "summary": "x", "evidence": {"canary": canary}}
        },
    }
    assert "## Canary" in markdown(report)
    assert add_to_release_notes(tmp_path, canary) is None  # step 6 alone: no notes to extend
    (tmp_path / "release-notes.json").write_text(json.dumps({"sha": "c0ffee"}))
    (tmp_path / "release-notes.md").write_text("# Release notes for c0ffee\n")
    add_to_release_notes(tmp_path, canary)
    add_to_release_notes(tmp_path, canary)  # a second write replaces, never repeats
    text = (tmp_path / "release-notes.md").read_text()
    assert text.startswith("# Release notes for c0ffee\n\n## Canary\n")
    assert text.count("## Canary") == 1
    assert json.loads((tmp_path / "release-notes.json").read_text())["canary"] == canary
