"""The runner: a step that lets a TargetError through fails like any failed step, with its
report and its ledger entry, and never as a traceback; steps 1-4 run together."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipelines.deploy.runner import execute, step_groups
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.targets.base import Release, TargetError
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.target import LocalTarget

pytestmark = pytest.mark.integration


class _Raises:
    reads_commit_only = False
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


class _Together:
    """A step 1-4 stand-in: waits until every other member of its group has started, so the
    group passes only if the runner really starts them together."""

    reads_commit_only = True

    def __init__(self, number: int, started: dict[int, threading.Event], ok: bool = True):
        self.number, self.name, self.title = number, f"step{number}", f"step {number}"
        self.exit_code = exit_code_for(number)
        self.started, self.ok = started, ok

    def plan(self, ctx: StepContext) -> StepPlan:
        return StepPlan("wait for the others")

    def run(self, ctx: StepContext) -> StepResult:
        self.started[self.number].set()
        others = [e for n, e in self.started.items() if n != self.number]
        together = all(event.wait(timeout=30) for event in others)
        return StepResult(self.ok and together, f"{self.title}: together={together}")


class _Later:
    reads_commit_only = False
    number, name, title, env_name = 5, "deploy.staging", "staging", "staging"
    exit_code = exit_code_for(5)

    def __init__(self) -> None:
        self.ran = False

    def plan(self, ctx: StepContext) -> StepPlan:
        return StepPlan("after 1-4")

    def run(self, ctx: StepContext) -> StepResult:
        self.ran = True
        ctx.event("snapshot", "pre-deploy snapshot s-1", env="staging", at=200.0)
        ctx.event("migration", "upgrade to 0002", env="staging", at=100.0)
        return StepResult(True, "staging")


def _ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StepContext:
    monkeypatch.setenv("DRYDOCK_STATE_DIR", str(tmp_path / "state"))
    return StepContext(
        target=LocalTarget(),
        sha="abc",
        root=tmp_path,
        reports=tmp_path / "reports",
        release=Release("1+abc", "1", "abc", str(tmp_path), "now"),
        deploy_id="together",
    )


def test_steps_1_to_4_run_together_and_step_5_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = {n: threading.Event() for n in (1, 2, 3, 4)}
    later = _Later()
    steps = [*(_Together(n, started) for n in (1, 2, 3, 4)), later]
    assert [len(g) for g in step_groups(steps)] == [4, 1]
    ctx = _ctx(tmp_path, monkeypatch)
    assert execute(ctx, FileLedger(tmp_path / "ledger.jsonl"), steps) == 0
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert [written["steps"][str(n)]["summary"] for n in (1, 2, 3, 4)] == [
        f"step {n}: together=True" for n in (1, 2, 3, 4)
    ]
    assert later.ran
    # The steps' events reach the report in time order, for its timeline.
    assert [(e["at"], e["kind"], e["env"]) for e in written["events"]] == [
        (100.0, "migration", "staging"),
        (200.0, "snapshot", "staging"),
    ]


def test_failures_beside_each_other_are_reported_in_step_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started = {n: threading.Event() for n in (1, 2, 3, 4)}
    later = _Later()
    steps = [
        _Together(1, started),
        _Together(2, started),
        _Together(3, started, ok=False),
        _Together(4, started, ok=False),
        later,
    ]
    ctx = _ctx(tmp_path, monkeypatch)
    assert execute(ctx, FileLedger(tmp_path / "ledger.jsonl"), steps) == exit_code_for(3)
    assert not later.ran
    err = capsys.readouterr().err
    assert "DEPLOY FAILED at step 3 (step 3)" in err and "Also failed: step 4" in err
    written = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert {n: written["steps"][n]["ok"] for n in ("1", "2", "3", "4")} == {
        "1": True,
        "2": True,
        "3": False,
        "4": False,
    }


def test_deploy_e2e_asks_step_1_for_the_end_to_end_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.deploy import runner

    asked: list[runner.DeployOptions] = []
    monkeypatch.setattr(runner, "run", lambda options, only=None: asked.append(options) or 0)
    assert runner.main(None, e2e=True) == 0
    assert runner.main(None, target="aws") == 0
    # None leaves it to the target: the local one does without them, AWS needs them.
    assert [(o.target, o.e2e_gates) for o in asked] == [("local", True), ("aws", None)]
