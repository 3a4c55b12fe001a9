"""Steps 1-4 leave a record per commit in the ledger, whether they run in `invoke deploy` or
alone as CI runs them; the local target builds its artifact from the commit itself, so it
has nothing to prove (the AWS side: tests/pipelines/targets/aws/test_provenance.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.deploy import provenance
from pipelines.deploy.runner import execute
from pipelines.deploy.single_step import ROOT, run_alone
from pipelines.deploy.steps import StepContext, StepPlan, StepResult, exit_code_for
from pipelines.operations.timeline import describe_entry
from pipelines.releases import resolve
from pipelines.targets.base import Release
from pipelines.targets.local.ledger import FileLedger
from pipelines.targets.local.target import LocalTarget

pytestmark = pytest.mark.integration


class _Check:
    """A step 1-4 stand-in that reads nothing and passes or fails as told."""

    reads_commit_only = True

    def __init__(self, number: int, ok: bool = True) -> None:
        self.number, self.ok = number, ok
        self.name = provenance.CHECK_STEPS[number]
        self.title = f"step {number}"
        self.exit_code = exit_code_for(number)

    def plan(self, ctx: StepContext) -> StepPlan:
        return StepPlan("read the commit")

    def run(self, ctx: StepContext) -> StepResult:
        return StepResult(self.ok, f"{self.name} {'passed' if self.ok else 'failed'}")


def test_a_step_run_alone_records_its_outcome_for_the_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRYDOCK_STATE_DIR", str(tmp_path))
    assert run_alone(lambda target: _Check(2, ok=False), "local", "HEAD") == exit_code_for(2)
    assert run_alone(lambda target: _Check(3), "local", "HEAD") == 0
    entries = FileLedger(tmp_path / "ledger.jsonl").entries("production", "checks")
    head = resolve("HEAD", ROOT)
    assert [(e["sha"], e["step"], e["name"], e["ok"]) for e in entries] == [
        (head, 2, "security.review", False),
        (head, 3, "db.migrations", True),
    ]
    assert "db.migrations: ok" in capsys.readouterr().out
    assert describe_entry(entries[0]) == f"step 2 (security.review) FAILED for {head[:12]}"


def test_invoke_deploy_records_steps_1_to_4_before_step_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRYDOCK_STATE_DIR", str(tmp_path / "state"))
    ledger = FileLedger(tmp_path / "ledger.jsonl")
    seen: list[list[int]] = []

    class _Staging:
        reads_commit_only = False
        number, name, title, env_name = 5, "deploy.staging", "staging", "staging"
        exit_code = exit_code_for(5)

        def plan(self, ctx: StepContext) -> StepPlan:
            return StepPlan("nothing")

        def run(self, ctx: StepContext) -> StepResult:
            seen.append([e["step"] for e in ledger.entries("production", "checks")])
            return StepResult(True, "ran")

    ctx = StepContext(
        target=LocalTarget(),
        sha="c" * 40,
        root=tmp_path,
        reports=tmp_path / "reports",
        release=Release("1+ccc", "1", "c" * 40, str(tmp_path), "now"),
        deploy_id="d1",
    )
    steps = [_Check(1), _Check(2), _Check(3), _Check(4), _Staging()]
    assert execute(ctx, ledger, steps) == 0
    assert [sorted(s) for s in seen] == [[1, 2, 3, 4]], "recorded before step 5 ran"
    assert provenance.missing(ledger, "c" * 40) == []
    # Locally the artifact is the commit's own archive, made by the run: nothing to prove.
    assert provenance.refusal(ctx, FileLedger(tmp_path / "empty.jsonl")) is None
