"""The runner: a step that lets a TargetError through fails like any failed step, with its
report and its ledger entry, and never as a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.deploy.runner import execute
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.targets.base import Release, TargetError
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.target import LocalTarget

pytestmark = pytest.mark.integration


class _Raises:
    number, name, title, env_name = 6, "deploy.production", "promote", "production"
    exit_code = exit_code_for(6)

    def plan(self, ctx: StepContext) -> StepPlan:
        return StepPlan("raise")

    def run(self, ctx: StepContext) -> StepResult:
        raise TargetError("production: the agent did not answer")


def test_a_target_error_fails_the_step_with_its_report_and_ledger_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRYDOCK_STATE_DIR", str(tmp_path / "state"))
    ctx = StepContext(
        target=LocalTarget(),
        sha="abc",
        root=tmp_path,
        reports=tmp_path / "reports",
        release=Release("1+abc", "1", "abc", str(tmp_path), "now"),
        deploy_id="raises",
    )
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    assert execute(ctx, ledger, [_Raises()]) == exit_code_for(6)
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert written["ok"] is False
    assert written["steps"]["6"]["summary"] == "promote: production: the agent did not answer"
    [entry] = ledger.entries("production", "deploy")
    assert entry["ok"] is False and entry["failed_step"] == 6
