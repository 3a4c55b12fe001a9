"""Deploy step 1's gate runner and the gates it runs: which commands, in which passes, at
the same time or one after the other, and what a failure or a hang does.

The gates run here are small Python commands injected in place of ruff, mypy and pytest, so
the runner is tested without running the suite inside itself. Concurrency is proven by
gates that can only pass together, never by a clock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.deploy import gates
from pipelines.deploy.gates import Gate
from pipelines.deploy.gates.commands import LOGS, STACKS, STACKS_ENV
from pipelines.deploy.gates.summary import first_failure, summary
from tests.pipelines.deploy.gate_helpers import py_gate, waits_for


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
    cores = gates.commands.usable_cores()
    assert gates.commands.workers({}) == str(cores + 1)
    assert gates.commands.workers({gates.commands.WORKERS_ENV: "auto"}) == str(cores + 1)
    assert gates.commands.workers({gates.commands.WORKERS_ENV: "4"}) == "4"
    with pytest.raises(ValueError, match="DRYDOCK_TEST_WORKERS"):
        gates.commands.workers({gates.commands.WORKERS_ENV: "many"})


@pytest.mark.unit
def test_every_parallel_run_gets_a_worker_more_than_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(gates.commands.WORKERS_ENV, raising=False)
    assert gates.commands.workers_for_cores(1) == 2
    assert gates.commands.workers_for_cores(2) == 3
    cores = gates.commands.usable_cores()
    for e2e in (True, False):
        gate_list = gates.quality_gates(python="py", serial_files=[], e2e=e2e)
        argv = {g.name: g for g in gate_list}["pytest"].argv
        assert argv[argv.index("-n") + 1] == str(cores + 1)


@pytest.mark.integration
def test_gates_without_after_run_at_the_same_time(tmp_path: Path) -> None:
    # Each waits for the file the other writes: run one after the other, both would fail.
    a, b = tmp_path / "a", tmp_path / "b"
    pair = [
        py_gate("first", f"import pathlib; pathlib.Path({str(a)!r}).touch()\n" + waits_for(str(b))),
        py_gate(
            "second", f"import pathlib; pathlib.Path({str(b)!r}).touch()\n" + waits_for(str(a))
        ),
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
        py_gate("first", f"import pathlib; pathlib.Path({str(marker)!r}).touch()"),
        # Fails at once unless "first" has already finished.
        py_gate(
            "second",
            f"import pathlib; assert pathlib.Path({str(marker)!r}).exists()",
            after="first",
        ),
        py_gate("broken", "raise SystemExit(4)"),
        py_gate("after-broken", "pass", after="broken"),
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
        (
            [py_gate("coverage", "pass", after="pytest")],
            "'pytest', which is not a gate before it",
        ),
        (
            [py_gate("lint", "pass"), py_gate("lint", "pass")],
            "two gates are named 'lint'",
        ),
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
    ran = gates.run_gates([py_gate("coverage", write)], tmp_path, echo=lambda line: None)
    assert "coverage: 93.46 %" in summary(ran, [], tmp_path, 1.0)
    # A report left by an earlier run is not this run's.
    skipped = gates.run_gates(
        [
            py_gate("lint", "raise SystemExit(1)"),
            py_gate("coverage", write, after="lint"),
        ],
        tmp_path,
        echo=lambda line: None,
    )
    assert "coverage:" not in summary(skipped, [], tmp_path, 1.0)


@pytest.mark.integration
def test_a_test_pass_that_selects_nothing_passes(tmp_path: Path) -> None:
    [result] = gates.run_gates(
        [py_gate("pytest-serial", "raise SystemExit(5)", ok_statuses=(0, 5))], tmp_path
    )
    assert result.ok and result.exit_status == 5


@pytest.mark.integration
def test_the_first_failure_stops_the_gates_still_running(tmp_path: Path) -> None:
    lines: list[str] = []
    never = tmp_path / "never"
    results = gates.run_gates(
        [
            py_gate("lint", "print('E501 line too long'); raise SystemExit(3)"),
            py_gate("tests", waits_for(str(never))),
            py_gate("coverage", "pass", after="tests"),
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
    assert first_failure(results) == by_name["lint"]


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
        [py_gate("pytest", hang, env={STACKS_ENV: str(stacks)})],
        tmp_path,
        echo=lines.append,
        deadline_s=1.5,
    )
    assert not result.ok and "deadline of 2 s" in result.note
    shown = "\n".join(lines)
    assert "stuck_in_here" in shown, shown


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


RUNNER_IN_THE_BACKGROUND = """
import signal, sys
from pathlib import Path

signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts `cmd &` or nohup

from pipelines.deploy import gates
from tests.pipelines.deploy.gate_helpers import py_gate, waits_for

root = Path(sys.argv[1])
ready, torn_down = str(root / "ready"), str(root / "torn-down")
tests = py_gate(
    "tests",
    "import pathlib, time\\n"
    "try:\\n"
    f"    pathlib.Path({ready!r}).touch()\\n"
    "    time.sleep(120)\\n"
    "except KeyboardInterrupt:\\n"
    f"    pathlib.Path({torn_down!r}).touch()\\n"
    "    raise SystemExit(2)\\n",  # as pytest ends when interrupted
)
lint = py_gate("lint", waits_for(ready, "raise SystemExit(1)"))
results = gates.run_gates([tests, lint], root, echo=lambda line: None)
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, "the runner still ignores it"
print({r.name: r.note for r in results})
"""


@pytest.mark.integration
def test_a_runner_started_in_the_background_still_lets_its_gates_tear_down(
    tmp_path: Path,
) -> None:
    """A gate stopped because another failed gets SIGINT and tears down, even when the
    runner itself was started with SIGINT ignored; otherwise it would be killed 20 s later
    with its environments left running."""
    root = Path(__file__).resolve().parents[3]
    run = subprocess.run(
        [sys.executable, "-c", RUNNER_IN_THE_BACKGROUND, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "'tests': 'stopped: lint failed'" in run.stdout
    assert (tmp_path / "torn-down").exists(), "the gate never saw SIGINT"
