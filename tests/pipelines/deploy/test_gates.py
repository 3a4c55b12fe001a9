"""Deploy step 1: the gate runner, the record it writes and what step 1 accepts.

The gates run here are small Python commands injected in place of ruff, mypy and pytest, so
the runner, the record and the dirty-tree rule are tested without running the suite inside
itself. Concurrency is proven by gates that can only pass together, never by a clock.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pipelines.deploy import gates
from pipelines.deploy.gates import CiGreenStep, DirtyTreeError, Gate
from pipelines.deploy.gates.commands import LOGS, STACKS, STACKS_ENV
from pipelines.deploy.gates.run import summary
from pipelines.deploy.steps import StepContext
from pipelines.targets.aws.target import AwsTarget
from pipelines.targets.base import Target
from pipelines.targets.local.target import LocalTarget
from tests.pipelines.deploy.git_helpers import GitRepo


def _gate(name: str, code: str, **fields: object) -> Gate:
    return Gate(name, (sys.executable, "-c", code), **fields)  # type: ignore[arg-type]


def _wait_for(path: str, then: str = "") -> str:
    """A gate that passes once `path` exists, and fails if it never appears within 30 s."""
    return (
        "import pathlib, time\n"
        f"deadline = time.time() + 30\n"
        f"while not pathlib.Path({path!r}).exists():\n"
        "    if time.time() > deadline: raise SystemExit(9)\n"
        "    time.sleep(0.05)\n" + then
    )


OK = [_gate("lint", "pass"), _gate("tests", "print('2 passed')")]
# What step 1 plans on the local target when no record fits: its own gates run, without the
# end-to-end tests.
RUNS_LOCALLY = ("run the gates (invoke check) on this checkout, without the end-to-end tests",)


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "feat: first",
        {"app.py": "print('hello')\n", "CHANGES.md": "# app\n", ".gitignore": "reports/\n"},
    )
    return repo


def _ctx(repo: GitRepo, sha: str | None = None, target: Target | None = None) -> StepContext:
    return StepContext(
        target=target or LocalTarget(state_dir=repo.path / ".state"),
        sha=sha or repo.git("rev-parse", "HEAD"),
        root=repo.path,
        reports=repo.path / "reports" / "deploy",
    )


@pytest.mark.unit
def test_the_gates_lint_beside_two_test_passes_then_check_coverage() -> None:
    serial_files = ["tests/test_alone.py"]
    whole = {
        g.name: g
        for g in gates.quality_gates(85, python="py", workers_n="3", serial_files=serial_files)
    }
    assert list(whole) == [
        "ruff-check",
        "ruff-format",
        "mypy",
        "pytest",
        "pytest-serial",
        "coverage",
    ]
    assert whole["ruff-check"].argv == ("py", "-m", "ruff", "check", ".")
    assert whole["mypy"].argv == ("py", "-m", "mypy")
    assert [g.name for g in whole.values() if g.after is None] == [
        "ruff-check",
        "ruff-format",
        "mypy",
        "pytest",
    ]
    parallel, serial = whole["pytest"], whole["pytest-serial"]
    assert parallel.argv[parallel.argv.index("-n") + 1] == "3"
    assert "not serial" in parallel.argv
    assert "--cov-append" not in parallel.argv  # the first pass starts the data afresh
    assert serial.after == "pytest" and "-n" not in serial.argv
    assert "serial" in serial.argv and "not serial" not in serial.argv
    assert serial.argv[-1] == "tests/test_alone.py"  # it collects only the files that mark
    assert "--cov-append" in serial.argv
    assert 5 in parallel.ok_statuses and 5 in serial.ok_statuses  # a pass may select nothing
    assert whole["coverage"].after == "pytest-serial"
    assert whole["coverage"].argv[-2:] == ("--fail-under", "85")
    selected = {
        g.name: g
        for g in gates.quality_gates(85, k="flags", markers="unit", serial_files=serial_files)
    }
    assert "--fail-under" not in selected["coverage"].argv
    assert selected["pytest"].argv[-2:] == ("-k", "flags")
    assert "(unit) and not serial" in selected["pytest"].argv
    assert "(unit) and serial" in selected["pytest-serial"].argv


@pytest.mark.unit
def test_without_serial_tests_there_is_no_serial_pass() -> None:
    names = [g.name for g in gates.quality_gates(python="py", serial_files=[])]
    assert names == ["ruff-check", "ruff-format", "mypy", "pytest", "coverage"]
    assert gates.quality_gates(serial_files=[])[-1].after == "pytest"


@pytest.mark.unit
def test_the_worker_count_comes_from_the_environment() -> None:
    assert gates.commands.workers({}) == "auto"
    assert gates.commands.workers({gates.commands.WORKERS_ENV: "4"}) == "4"
    with pytest.raises(ValueError, match="DRYDOCK_TEST_WORKERS"):
        gates.commands.workers({gates.commands.WORKERS_ENV: "many"})


@pytest.mark.integration
def test_gates_without_after_run_at_the_same_time(tmp_path: Path) -> None:
    # Each waits for the file the other writes: run one after the other, both would fail.
    a, b = tmp_path / "a", tmp_path / "b"
    pair = [
        _gate("first", f"import pathlib; pathlib.Path({str(a)!r}).touch()\n" + _wait_for(str(b))),
        _gate("second", f"import pathlib; pathlib.Path({str(b)!r}).touch()\n" + _wait_for(str(a))),
    ]
    results = gates.run_gates(pair, tmp_path, echo=lambda line: None)
    assert [(r.name, r.exit_status, r.ok) for r in results] == [
        ("first", 0, True),
        ("second", 0, True),
    ]
    assert all((tmp_path / r.log).exists() for r in results)


@pytest.mark.integration
def test_a_gate_with_after_waits_for_it_and_is_skipped_when_it_fails(tmp_path: Path) -> None:
    marker = tmp_path / "first-done"
    chain = [
        _gate("first", f"import pathlib; pathlib.Path({str(marker)!r}).touch()"),
        # Fails at once unless "first" has already finished.
        _gate(
            "second",
            f"import pathlib; assert pathlib.Path({str(marker)!r}).exists()",
            after="first",
        ),
        _gate("broken", "raise SystemExit(4)"),
        _gate("after-broken", "pass", after="broken"),
    ]
    results = {
        r.name: r for r in gates.run_gates(chain, tmp_path, keep_going=True, echo=lambda line: None)
    }
    assert results["second"].ok
    assert results["broken"].exit_status == 4 and not results["broken"].ok
    assert results["after-broken"].exit_status is None
    assert results["after-broken"].note == "broken did not pass"


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ([_gate("coverage", "pass", after="pytest")], "'pytest', which is not a gate before it"),
        ([_gate("lint", "pass"), _gate("lint", "pass")], "two gates are named 'lint'"),
    ],
    ids=["unknown", "twice"],
)
def test_a_gate_that_could_never_start_is_refused_before_anything_runs(
    tmp_path: Path, chain: list[Gate], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        gates.run_gates(chain, tmp_path, echo=lambda line: None)
    assert not (tmp_path / LOGS).exists()


@pytest.mark.integration
def test_the_summary_shows_the_coverage_this_run_measured(tmp_path: Path) -> None:
    write = (
        "import json, pathlib; p = pathlib.Path('reports/coverage.json'); "
        "p.parent.mkdir(parents=True, exist_ok=True); "
        "p.write_text(json.dumps({'totals': {'percent_covered': 93.456}}))"
    )
    ran = gates.run_gates([_gate("coverage", write)], tmp_path, echo=lambda line: None)
    assert "coverage: 93.46 %" in summary(ran, [], tmp_path, 1.0)
    # A report left by an earlier run is not this run's.
    skipped = gates.run_gates(
        [_gate("lint", "raise SystemExit(1)"), _gate("coverage", write, after="lint")],
        tmp_path,
        echo=lambda line: None,
    )
    assert "coverage:" not in summary(skipped, [], tmp_path, 1.0)


@pytest.mark.integration
def test_a_test_pass_that_selects_nothing_passes(tmp_path: Path) -> None:
    [result] = gates.run_gates(
        [_gate("pytest-serial", "raise SystemExit(5)", ok_statuses=(0, 5))], tmp_path
    )
    assert result.ok and result.exit_status == 5


@pytest.mark.integration
def test_the_first_failure_stops_the_gates_still_running(tmp_path: Path) -> None:
    lines: list[str] = []
    never = tmp_path / "never"
    results = gates.run_gates(
        [
            _gate("lint", "print('E501 line too long'); raise SystemExit(3)"),
            _gate("tests", _wait_for(str(never))),
            _gate("coverage", "pass", after="tests"),
        ],
        tmp_path,
        echo=lines.append,
    )
    by_name = {r.name: r for r in results}
    assert by_name["lint"].exit_status == 3 and not by_name["lint"].note
    assert not by_name["tests"].ok and by_name["tests"].note == "stopped: lint failed"
    assert by_name["tests"].exit_status != 9, "it ran until its own timeout: never stopped"
    assert by_name["coverage"].exit_status is None
    shown = "\n".join(lines)
    assert "E501 line too long" in shown  # a failed gate's output is shown, not only logged
    table = summary(results, [], tmp_path, 1.0)
    assert "lint" in table and "FAILED, exit 3" in table and "stopped: lint failed" in table
    assert gates.run.first_failure(results) == by_name["lint"]


@pytest.mark.integration
def test_a_run_past_its_deadline_shows_the_stacks_and_ends(tmp_path: Path) -> None:
    stacks = tmp_path / STACKS / "pytest"
    hang = (
        "import faulthandler, os, pathlib, signal, time\n"
        f"d = pathlib.Path(os.environ[{STACKS_ENV!r}]); d.mkdir(parents=True, exist_ok=True)\n"
        "f = open(d / 'gw0-1.txt', 'w')\n"
        "faulthandler.register(signal.SIGUSR1, file=f, all_threads=True)\n"
        "def stuck_in_here():\n"
        "    time.sleep(120)\n"
        "stuck_in_here()\n"
    )
    lines: list[str] = []
    [result] = gates.run_gates(
        [_gate("pytest", hang, env={STACKS_ENV: str(stacks)})],
        tmp_path,
        echo=lines.append,
        deadline_s=1.5,
    )
    assert not result.ok and "deadline of 2 s" in result.note
    shown = "\n".join(lines)
    assert "stuck_in_here" in shown, shown


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
    record = gates.check(repo.path, gates=[_gate("pytest", write)], echo=lambda line: None)
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
        gates=[_gate("lint", "raise SystemExit(3)"), _gate("mypy", "raise SystemExit(1)")],
        keep_going=True,
        echo=lambda line: None,
    )
    assert record["green"] is False
    assert record["failed_gates"] == ["lint", "mypy"]
    verdict = gates.verify_record(repo.path, record["sha"])
    assert not verdict.ok and "lint, mypy" in verdict.reason
    result = CiGreenStep(environ={}).run(_ctx(repo))
    assert not result.ok and "not green" in result.summary


@pytest.mark.integration
def test_a_gate_that_changes_the_tree_makes_the_record_not_green(repo: GitRepo) -> None:
    touch = "import pathlib; pathlib.Path('app.py').write_text('changed')"
    record = gates.check(repo.path, gates=[_gate("format", touch)], echo=lambda line: None)
    assert record["green"] is False and record["changed_during_gates"] == ["app.py"]
    assert not gates.verify_record(repo.path, record["sha"]).ok


@pytest.mark.integration
def test_step_1_accepts_a_green_record_for_the_exact_sha(repo: GitRepo) -> None:
    gates.check(repo.path, gates=OK, echo=lambda line: None)
    step = CiGreenStep(environ={})
    plan = step.plan(_ctx(repo))
    assert "green gate record" in plan.summary and not plan.blockers
    ctx = _ctx(repo)
    result = step.run(ctx)
    assert result.ok, result.summary
    assert ctx.facts["gates"]["green"] is True and "reused_from" not in ctx.facts["gates"]


@pytest.mark.integration
def test_a_docs_only_commit_reuses_the_green_record(repo: GitRepo) -> None:
    first = repo.git("rev-parse", "HEAD")
    gates.check(repo.path, gates=OK, echo=lambda line: None)
    docs = repo.commit("docs: explain", {"CHANGES.md": "# app\n\nMore.\n", "docs/HOW.md": "x\n"})
    ctx = _ctx(repo, docs)
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
    assert runs.plan(_ctx(repo, sha)).actions == RUNS_LOCALLY


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
    assert step.plan(_ctx(repo)).actions == RUNS_LOCALLY
    result = step.run(_ctx(repo))
    assert result.ok, result.summary
    assert gates.verify_record(repo.path, repo.git("rev-parse", "HEAD")).ok
    second = repo.commit("fix: second", {"app.py": "print('second')\n"})
    repo.commit("fix: third", {"lib.py": "x = 1\n"})
    (repo.path / "lib.py").write_text("x = 2\n")
    dirty = step.run(_ctx(repo))
    assert not dirty.ok and "lib.py" in dirty.summary
    older = step.run(_ctx(repo, second))
    assert not older.ok and f"check out {second}" in older.summary


@pytest.mark.integration
def test_the_gate_logs_are_kept_per_gate(repo: GitRepo) -> None:
    gates.check(
        repo.path, gates=[_gate("talks", "print('hello from the gate')")], echo=lambda line: None
    )
    assert "hello from the gate" in (repo.path / LOGS / "talks.log").read_text()


@pytest.mark.unit
def test_the_tests_draw_ports_apart_from_the_steps_beside_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.host import ports

    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)
    pipeline, tests = ports.pipeline_and_tests_ranges()
    assert pipeline[1] < tests[0] and tests[1] - tests[0] > 5 * (pipeline[1] - pipeline[0])
    # As in a deploy: step 1 builds its gates while steps 2-4 draw from the pipeline's part.
    with ports.drawing_from(pipeline):
        assert ports.scratch_range() == pipeline
        [parallel] = gates.commands.suite_passes(serial_files=[])
    assert parallel.env[ports.PORT_RANGE_ENV] == f"{tests[0]}-{tests[1]}"
    assert ports.PORT_RANGE_ENV not in os.environ  # put back
    # A range the user (or a test worker) set is theirs: both inherit it untouched.
    monkeypatch.setenv(ports.PORT_RANGE_ENV, "21000-23000")
    with ports.drawing_from(pipeline):
        assert ports.scratch_range() == (21000, 23000)
        [parallel] = gates.commands.suite_passes(serial_files=[])
    assert ports.PORT_RANGE_ENV not in parallel.env


def _selection(gate: Gate) -> str:
    """The marker expression of a pytest pass (the -m after `-m pytest`)."""
    argv = gate.argv
    return argv[argv.index("-m", argv.index("pytest")) + 1]


@pytest.mark.unit
def test_without_e2e_the_tests_leave_out_the_end_to_end_ones_and_keep_the_threshold() -> None:
    alone = ["tests/test_alone.py"]
    passes = {
        g.name: g for g in gates.quality_gates(90, python="py", serial_files=alone, e2e=False)
    }
    assert _selection(passes["pytest"]) == "(not e2e) and not serial"
    assert _selection(passes["pytest-serial"]) == "(not e2e) and serial"
    assert passes["coverage"].argv[-2:] == ("--fail-under", "90")
    asked = gates.quality_gates(90, python="py", markers="unit", serial_files=[], e2e=False)
    assert _selection(asked[3]) == "((unit) and not e2e) and not serial"
    whole = gates.quality_gates(90, python="py", serial_files=[])
    assert _selection(whole[3]) == "not serial"


@pytest.mark.unit
def test_the_bench_chains_the_gates_a_local_deploy_runs_for_its_serial_timing() -> None:
    from pipelines.bench.gates_bench import serial_gates

    chained = serial_gates(90, e2e=False)
    assert [g.after for g in chained[1:]] == [g.name for g in chained[:-1]]
    tests = next(g for g in chained if g.name == "pytest")
    assert tests.argv[tests.argv.index("-n") + 1] == "0"
    assert _selection(tests) == "(not e2e) and not serial"
    assert _selection(next(g for g in serial_gates(90) if g.name == "pytest")) == "not serial"


@pytest.mark.integration
def test_a_record_without_e2e_is_enough_locally_and_not_for_aws(repo: GitRepo) -> None:
    record = gates.check(repo.path, gates=OK, echo=lambda line: None, e2e=False)
    assert record["e2e"] is False and record["green"] is True
    local = _ctx(repo)
    passed = CiGreenStep(environ={}).run(local)
    assert passed.ok and "without the end-to-end tests" in passed.summary
    assert local.facts["gates"]["e2e"] is False
    aws = _ctx(repo, target=AwsTarget({}))
    refused = CiGreenStep(environ={}).run(aws)
    assert not refused.ok and "ran without the end-to-end tests" in refused.summary
    assert "invoke check" in refused.summary
    # Asked for locally (`invoke deploy --e2e`), the same record is not enough either.
    asked = _ctx(repo)
    asked.options["e2e_gates"] = True
    assert not CiGreenStep(environ={}).run(asked).ok
    # A docs-only commit reuses it on the same terms.
    docs = repo.commit("docs: explain", {"CHANGES.md": "# app\n\nMore.\n"})
    assert CiGreenStep(environ={}).run(_ctx(repo, docs)).ok
    reused = gates.verify_record(repo.path, docs, environ={}, need_e2e=True)
    assert not reused.ok and reused.reused_from == record["sha"]


@pytest.mark.integration
def test_a_record_with_e2e_is_enough_everywhere(repo: GitRepo) -> None:
    record = gates.check(repo.path, gates=OK, echo=lambda line: None)
    assert record["e2e"] is True
    assert CiGreenStep(environ={}).run(_ctx(repo)).ok
    assert CiGreenStep(environ={}).run(_ctx(repo, target=AwsTarget({}))).ok
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
    local = _ctx(repo)
    assert step.plan(local).actions == RUNS_LOCALLY
    assert step.run(local).ok
    sha = repo.git("rev-parse", "HEAD")
    assert json.loads(gates.record_path(repo.path, sha).read_text())["e2e"] is False
    asked = _ctx(repo)
    asked.options["e2e_gates"] = True
    assert step.plan(asked).actions == ("run the gates (invoke check) on this checkout",)
    assert step.run(asked).ok  # the record without them does not do: they run again
    assert json.loads(gates.record_path(repo.path, sha).read_text())["e2e"] is True
