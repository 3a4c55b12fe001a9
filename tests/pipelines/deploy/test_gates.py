"""Deploy step 1: the gate runner, the record it writes and what step 1 accepts.

The gates run here are trivial commands injected in place of ruff, mypy and pytest, so the
runner, the record and the dirty-tree rule are tested without running the suite inside itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipelines.deploy import gates
from pipelines.deploy.gates import CiGreenStep, DirtyTreeError, Gate
from pipelines.deploy.steps import StepContext
from pipelines.targets.local.target import LocalTarget
from tests.pipelines.deploy.git_helpers import GitRepo


def _gate(name: str, code: str) -> Gate:
    return Gate(name, (sys.executable, "-c", code))


OK = [_gate("lint", "pass"), _gate("tests", "print('2 passed')")]


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("feat: first", {"app.py": "print('hello')\n"})
    return repo


def _ctx(repo: GitRepo, sha: str | None = None) -> StepContext:
    return StepContext(
        target=LocalTarget(state_dir=repo.path / ".state"),
        sha=sha or repo.git("rev-parse", "HEAD"),
        root=repo.path,
        reports=repo.path / "reports" / "deploy",
    )


@pytest.mark.unit
def test_the_test_task_and_check_share_the_gate_commands() -> None:
    whole = {g.name: g.argv for g in gates.quality_gates(85, python="py")}
    assert list(whole) == ["ruff-check", "ruff-format", "mypy", "pytest"]
    assert whole["ruff-check"] == ("py", "-m", "ruff", "check", ".")
    assert whole["mypy"] == ("py", "-m", "mypy")
    assert "--cov-fail-under=85" in whole["pytest"]
    assert "--cov-report=xml:reports/coverage.xml" in whole["pytest"]
    selected = {g.name: g.argv for g in gates.quality_gates(85, k="flags", python="py")}
    assert "--cov-fail-under=85" not in selected["pytest"]
    assert selected["pytest"][-2:] == ("-k", "flags")


@pytest.mark.integration
def test_check_writes_a_green_record_for_the_commit(repo: GitRepo) -> None:
    record = gates.check(repo.path, coverage=90, gates=OK)
    sha = repo.git("rev-parse", "HEAD")
    stored = json.loads((repo.path / "reports" / "gates" / f"{sha}.json").read_text())
    assert stored == record
    assert record["sha"] == sha and record["green"] is True and record["tree_clean"] is True
    assert [g["name"] for g in record["gates"]] == ["lint", "tests"]
    for entry in record["gates"]:
        assert entry["exit_status"] == 0 and entry["duration_s"] >= 0
        assert entry["command"].startswith(sys.executable) and entry["started"]
    assert record["tools"]["python"] and "pytest" in record["tools"]
    assert record["host"] and record["started"] <= record["finished"]
    assert record["coverage_threshold"] == 90 and record["coverage_percent"] is None


@pytest.mark.integration
def test_check_reads_coverage_from_the_json_report(repo: GitRepo) -> None:
    write = "import pathlib; p = pathlib.Path('reports'); p.mkdir(exist_ok=True); "
    write += "(p / 'coverage.json').write_text('{\"totals\": {\"percent_covered\": 93.456}}')"
    record = gates.check(repo.path, gates=[_gate("pytest", write)])
    assert record["coverage_percent"] == 93.46


@pytest.mark.integration
def test_check_refuses_a_dirty_tree_and_names_the_files(repo: GitRepo) -> None:
    (repo.path / "app.py").write_text("print('changed')\n")
    (repo.path / "notes.txt").write_text("untracked\n")
    with pytest.raises(DirtyTreeError) as refused:
        gates.check(repo.path, gates=OK)
    assert set(refused.value.files) == {"app.py", "notes.txt"}
    assert "app.py" in str(refused.value) and "notes.txt" in str(refused.value)
    assert not (repo.path / "reports" / "gates").exists()


@pytest.mark.integration
def test_a_failing_gate_stops_the_rest_and_the_record_is_not_green(repo: GitRepo) -> None:
    record = gates.check(
        repo.path, gates=[_gate("lint", "raise SystemExit(3)"), _gate("tests", "pass")]
    )
    assert record["green"] is False
    assert [g["exit_status"] for g in record["gates"]] == [3, None]
    verdict = gates.verify_record(repo.path, record["sha"])
    assert not verdict.ok and "lint" in verdict.reason
    result = CiGreenStep(environ={}).run(_ctx(repo))
    assert not result.ok and "not green" in result.summary


@pytest.mark.integration
def test_a_gate_that_changes_the_tree_makes_the_record_not_green(repo: GitRepo) -> None:
    touch = "import pathlib; pathlib.Path('app.py').write_text('changed')"
    record = gates.check(repo.path, gates=[_gate("format", touch)])
    assert record["green"] is False and record["changed_during_gates"] == ["app.py"]
    assert not gates.verify_record(repo.path, record["sha"]).ok


@pytest.mark.integration
def test_step_1_accepts_a_green_record_for_the_exact_sha(repo: GitRepo) -> None:
    gates.check(repo.path, gates=OK)
    step = CiGreenStep(environ={})
    plan = step.plan(_ctx(repo))
    assert "green gate record" in plan.summary and not plan.blockers
    ctx = _ctx(repo)
    result = step.run(ctx)
    assert result.ok, result.summary
    assert ctx.facts["gates"]["green"] is True


@pytest.mark.integration
def test_step_1_refuses_a_record_for_another_sha(repo: GitRepo) -> None:
    old = repo.git("rev-parse", "HEAD")
    gates.check(repo.path, gates=OK)
    new = repo.commit("fix: second")
    step = CiGreenStep(environ={})
    plan = step.plan(_ctx(repo, new))
    assert plan.blockers and "no gate record" in plan.summary
    result = step.run(_ctx(repo, new))
    assert not result.ok
    assert new[:12] in result.summary and old[:12] in result.summary


@pytest.mark.integration
def test_step_1_refuses_a_record_whose_content_names_another_sha(repo: GitRepo) -> None:
    record = gates.check(repo.path, gates=OK)
    new = repo.commit("fix: second")
    copied = repo.path / "reports" / "gates" / f"{new}.json"
    copied.write_text(json.dumps(record))
    result = CiGreenStep(environ={}).run(_ctx(repo, new))
    assert not result.ok and f"records commit {record['sha'][:12]}" in result.summary


@pytest.mark.integration
def test_in_github_actions_the_ci_job_result_stands_in_for_a_record(repo: GitRepo) -> None:
    sha = repo.git("rev-parse", "HEAD")
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": sha, "GITHUB_RUN_ID": "42"}
    passed = CiGreenStep(environ={**actions, gates.CI_RESULT_ENV: "success"}).run(_ctx(repo))
    assert passed.ok and "run 42" in passed.summary
    other_sha = {**actions, "GITHUB_SHA": "0" * 40, gates.CI_RESULT_ENV: "success"}
    assert not CiGreenStep(environ=other_sha).run(_ctx(repo)).ok
    failed = {**actions, gates.CI_RESULT_ENV: "failure"}
    assert not CiGreenStep(environ=failed).run(_ctx(repo)).ok


@pytest.mark.integration
def test_step_1_can_run_the_gates_when_asked_and_the_tree_is_clean(repo: GitRepo) -> None:
    step = CiGreenStep(environ={}, run_if_missing=True, gates=OK)
    assert step.plan(_ctx(repo)).actions == ("run the gates (invoke check) on this checkout",)
    result = step.run(_ctx(repo))
    assert result.ok, result.summary
    assert gates.verify_record(repo.path, repo.git("rev-parse", "HEAD")).ok
    second = repo.commit("fix: second")
    repo.commit("fix: third", {"lib.py": "x = 1\n"})
    (repo.path / "lib.py").write_text("x = 2\n")
    dirty = step.run(_ctx(repo))
    assert not dirty.ok and "lib.py" in dirty.summary
    older = step.run(_ctx(repo, second))
    assert not older.ok and f"check out {second}" in older.summary
