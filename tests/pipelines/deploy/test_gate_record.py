"""Deploy step 1's gate record: what `invoke check` writes, which commits reuse it, and
what step 1 accepts on each target (with and without the end-to-end tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipelines.deploy import gates
from pipelines.deploy.gates import CiGreenStep, DirtyTreeError
from pipelines.deploy.gates.commands import LOGS
from pipelines.targets.aws.target import AwsTarget
from tests.pipelines.deploy.gate_helpers import OK, first_commit, py_gate, step_context
from tests.pipelines.deploy.git_helpers import GitRepo

# What step 1 plans on the local target when no record fits: its own gates run, without the
# end-to-end tests.
RUNS_LOCALLY = ("run the gates (invoke check) on this checkout, without the end-to-end tests",)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return first_commit(tmp_path / "repo")


@pytest.mark.integration
def test_check_writes_a_green_record_for_the_commit(repo: GitRepo) -> None:
    record = gates.check(repo.path, coverage=90, gates=OK, echo=lambda line: None)
    sha = repo.git("rev-parse", "HEAD")
    stored = json.loads((repo.path / "reports" / "gates" / f"{sha}.json").read_text())
    assert stored == record
    assert record["sha"] == sha and record["green"] is True and record["tree_clean"] is True
    assert [g["name"] for g in record["gates"]] == ["lint", "tests"]
    for entry in record["gates"]:
        assert entry["exit_status"] == 0 and entry["passed"] and entry["duration_s"] >= 0
        assert entry["command"].startswith(sys.executable) and entry["started"]
        assert (repo.path / entry["log"]).exists()
    assert record["failed_gates"] == []
    assert len(record["content_key"]) == 64
    assert record["inputs"]["files"] == 2  # app.py, .gitignore; CHANGES.md is read by no gate
    assert any(d.startswith("pytest==") for d in record["inputs"]["dependencies"])
    assert record["tools"]["python"] and "pytest-xdist" in record["tools"]
    assert record["host"] and record["started"] <= record["finished"]
    assert record["coverage_threshold"] == 90 and record["coverage_percent"] is None


@pytest.mark.integration
def test_check_reads_coverage_from_the_json_report(repo: GitRepo) -> None:
    write = "import pathlib; p = pathlib.Path('reports'); p.mkdir(exist_ok=True); "
    write += "(p / 'coverage.json').write_text('{\"totals\": {\"percent_covered\": 93.456}}')"
    record = gates.check(repo.path, gates=[py_gate("pytest", write)], echo=lambda line: None)
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
def test_the_record_says_which_gates_failed(repo: GitRepo) -> None:
    record = gates.check(
        repo.path,
        gates=[
            py_gate("lint", "raise SystemExit(3)"),
            py_gate("mypy", "raise SystemExit(1)"),
        ],
        keep_going=True,
        echo=lambda line: None,
    )
    assert record["green"] is False
    assert record["failed_gates"] == ["lint", "mypy"]
    verdict = gates.verify_record(repo.path, record["sha"])
    assert not verdict.ok and "lint, mypy" in verdict.reason
    result = CiGreenStep(environ={}).run(step_context(repo))
    assert not result.ok and "not green" in result.summary


@pytest.mark.integration
def test_a_gate_that_changes_the_tree_makes_the_record_not_green(repo: GitRepo) -> None:
    touch = "import pathlib; pathlib.Path('app.py').write_text('changed')"
    record = gates.check(repo.path, gates=[py_gate("format", touch)], echo=lambda line: None)
    assert record["green"] is False and record["changed_during_gates"] == ["app.py"]
    assert not gates.verify_record(repo.path, record["sha"]).ok


@pytest.mark.integration
def test_step_1_accepts_a_green_record_for_the_exact_sha(repo: GitRepo) -> None:
    gates.check(repo.path, gates=OK, echo=lambda line: None)
    step = CiGreenStep(environ={})
    plan = step.plan(step_context(repo))
    assert "green gate record" in plan.summary and not plan.blockers
    ctx = step_context(repo)
    result = step.run(ctx)
    assert result.ok, result.summary
    assert ctx.facts["gates"]["green"] is True and "reused_from" not in ctx.facts["gates"]


@pytest.mark.integration
def test_a_docs_only_commit_reuses_the_green_record(repo: GitRepo) -> None:
    first = repo.git("rev-parse", "HEAD")
    gates.check(repo.path, gates=OK, echo=lambda line: None)
    docs = repo.commit("docs: explain", {"CHANGES.md": "# app\n\nMore.\n", "docs/HOW.md": "x\n"})
    ctx = step_context(repo, docs)
    result = CiGreenStep(environ={}).run(ctx)
    assert result.ok, result.summary
    assert f"green gate record for {first[:12]} reused" in result.summary
    assert "CHANGES.md" in result.summary and "docs/HOW.md" in result.summary
    assert ctx.facts["gates"]["reused_from"] == first
    assert not (repo.path / "reports" / "gates" / f"{docs}.json").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("changed", "text"),
    [
        ("tests/test_app.py", "def test_it():\n    assert True\n"),
        ("pyproject.toml", "[project]\nname = 'app'\n"),
        ("app.py", "print('bye')\n"),
    ],
)
def test_a_change_to_what_the_gates_read_needs_a_new_record(
    repo: GitRepo, changed: str, text: str
) -> None:
    gates.check(repo.path, gates=OK, echo=lambda line: None)
    sha = repo.commit(f"change {changed}", {changed: text})
    verdict = gates.verify_record(repo.path, sha)
    assert not verdict.ok
    assert f"no gate record for {sha[:12]}" in verdict.reason
    assert changed in verdict.reason  # it says which file the gates read changed
    runs = CiGreenStep(environ={}, run_if_missing=True, gates=OK)
    assert runs.plan(step_context(repo, sha)).actions == RUNS_LOCALLY


@pytest.mark.integration
def test_other_installed_packages_invalidate_the_record(
    repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.git("rev-parse", "HEAD")
    gates.check(repo.path, gates=OK, echo=lambda line: None)
    installed = gates.inputs.installed_dependencies()
    changed = (*(d for d in installed if not d.startswith("ruff==")), "ruff==0.0.1")
    monkeypatch.setattr(gates.inputs, "installed_dependencies", lambda: changed)
    verdict = gates.verify_record(repo.path, sha, environ={})
    assert not verdict.ok and "+ruff==0.0.1" in verdict.reason
    # The deploy workflow's record comes from the ci job, on another runner: same commit.
    actions = {"GITHUB_ACTIONS": "true"}
    in_ci = gates.verify_record(repo.path, sha, environ=actions)
    assert in_ci.ok and in_ci.warnings and "+ruff==0.0.1" in in_ci.warnings[0]


@pytest.mark.integration
def test_step_1_refuses_a_record_whose_content_names_another_sha(repo: GitRepo) -> None:
    record = gates.check(repo.path, gates=OK, echo=lambda line: None)
    new = repo.commit("fix: second", {"app.py": "print('second')\n"})
    copied = repo.path / "reports" / "gates" / f"{new}.json"
    copied.write_text(json.dumps(record))
    result = CiGreenStep(environ={}).run(step_context(repo, new))
    assert not result.ok and f"records commit {record['sha'][:12]}" in result.summary


@pytest.mark.integration
def test_in_github_actions_the_ci_job_result_stands_in_for_a_record(repo: GitRepo) -> None:
    sha = repo.git("rev-parse", "HEAD")
    actions = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": sha, "GITHUB_RUN_ID": "42"}
    passed = CiGreenStep(environ={**actions, gates.CI_RESULT_ENV: "success"}).run(
        step_context(repo)
    )
    assert passed.ok and "run 42" in passed.summary
    other_sha = {**actions, "GITHUB_SHA": "0" * 40, gates.CI_RESULT_ENV: "success"}
    assert not CiGreenStep(environ=other_sha).run(step_context(repo)).ok
    failed = {**actions, gates.CI_RESULT_ENV: "failure"}
    assert not CiGreenStep(environ=failed).run(step_context(repo)).ok


@pytest.mark.integration
def test_step_1_can_run_the_gates_when_asked_and_the_tree_is_clean(repo: GitRepo) -> None:
    step = CiGreenStep(environ={}, run_if_missing=True, gates=OK)
    assert step.plan(step_context(repo)).actions == RUNS_LOCALLY
    result = step.run(step_context(repo))
    assert result.ok, result.summary
    assert gates.verify_record(repo.path, repo.git("rev-parse", "HEAD")).ok
    second = repo.commit("fix: second", {"app.py": "print('second')\n"})
    repo.commit("fix: third", {"lib.py": "x = 1\n"})
    (repo.path / "lib.py").write_text("x = 2\n")
    dirty = step.run(step_context(repo))
    assert not dirty.ok and "lib.py" in dirty.summary
    older = step.run(step_context(repo, second))
    assert not older.ok and f"check out {second}" in older.summary


@pytest.mark.integration
def test_the_gate_logs_are_kept_per_gate(repo: GitRepo) -> None:
    gates.check(
        repo.path,
        gates=[py_gate("talks", "print('hello from the gate')")],
        echo=lambda line: None,
    )
    assert "hello from the gate" in (repo.path / LOGS / "talks.log").read_text()


def test_a_record_without_e2e_is_enough_locally_and_not_for_aws(repo: GitRepo) -> None:
    record = gates.check(repo.path, gates=OK, echo=lambda line: None, e2e=False)
    assert record["e2e"] is False and record["green"] is True
    local = step_context(repo)
    passed = CiGreenStep(environ={}).run(local)
    assert passed.ok and "without the end-to-end tests" in passed.summary
    assert local.facts["gates"]["e2e"] is False
    aws = step_context(repo, target=AwsTarget({}))
    refused = CiGreenStep(environ={}).run(aws)
    assert not refused.ok and "ran without the end-to-end tests" in refused.summary
    assert "invoke check" in refused.summary
    # Asked for locally (`invoke deploy --e2e`), the same record is not enough either.
    asked = step_context(repo)
    asked.options["e2e_gates"] = True
    assert not CiGreenStep(environ={}).run(asked).ok
    # A docs-only commit reuses it on the same terms.
    docs = repo.commit("docs: explain", {"CHANGES.md": "# app\n\nMore.\n"})
    assert CiGreenStep(environ={}).run(step_context(repo, docs)).ok
    reused = gates.verify_record(repo.path, docs, environ={}, need_e2e=True)
    assert not reused.ok and reused.reused_from == record["sha"]


@pytest.mark.integration
def test_a_record_with_e2e_is_enough_everywhere(repo: GitRepo) -> None:
    record = gates.check(repo.path, gates=OK, echo=lambda line: None)
    assert record["e2e"] is True
    assert CiGreenStep(environ={}).run(step_context(repo)).ok
    assert CiGreenStep(environ={}).run(step_context(repo, target=AwsTarget({}))).ok
    # A record from before the field ran the whole suite.
    path = gates.record_path(repo.path, record["sha"])
    older = {k: v for k, v in json.loads(path.read_text()).items() if k != "e2e"}
    path.write_text(json.dumps(older))
    assert gates.verify_record(repo.path, record["sha"], environ={}, need_e2e=True).ok


@pytest.mark.integration
def test_step_1_runs_the_gates_without_e2e_locally_and_with_them_when_asked(
    repo: GitRepo,
) -> None:
    step = CiGreenStep(environ={}, run_if_missing=True, gates=OK)
    local = step_context(repo)
    assert step.plan(local).actions == RUNS_LOCALLY
    assert step.run(local).ok
    sha = repo.git("rev-parse", "HEAD")
    assert json.loads(gates.record_path(repo.path, sha).read_text())["e2e"] is False
    asked = step_context(repo)
    asked.options["e2e_gates"] = True
    assert step.plan(asked).actions == ("run the gates (invoke check) on this checkout",)
    assert step.run(asked).ok  # the record without them does not do: they run again
    assert json.loads(gates.record_path(repo.path, sha).read_text())["e2e"] is True
