"""Progress while the gates run, and a hung test under pytest-xdist: real pytest runs of a
small throwaway suite, in parallel as the gates run it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.deploy import gates
from pipelines.deploy.gates import progress
from pipelines.deploy.gates.commands import PROGRESS_ENV, PROGRESS_PLUGIN, Gate
from pipelines.deploy.gates.summary import summary
from tests import nested_pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
INI = "[pytest]\ntimeout_method = thread\n"


def _suite(tmp_path: Path, tests: str, conftest: str = "") -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text(INI)
    (suite / "test_small.py").write_text(tests)
    (suite / "conftest.py").write_text(conftest)
    return suite


def _pytest(*args: str) -> tuple[str, ...]:
    return nested_pytest.argv(*args, plugins=(PROGRESS_PLUGIN,))


@pytest.mark.parametrize("workers", [["-n", "2"], []], ids=["xdist", "one-process"])
def test_the_plugin_counts_every_outcome(tmp_path: Path, workers: list[str]) -> None:
    suite = _suite(
        tmp_path,
        "import pytest\n"
        "def test_a(): pass\n"
        "def test_b(): pass\n"
        "def test_c(): assert False\n"
        "@pytest.mark.skip(reason='not here')\n"
        "def test_d(): pass\n",
    )
    out = tmp_path / "progress.json"
    subprocess.run(
        _pytest(*workers, "-q"),
        cwd=suite,
        env=nested_pytest.environ(**{PROGRESS_ENV: str(out)}),
        capture_output=True,
        check=False,
    )
    seen = progress.read(out)
    assert seen is not None
    assert (seen["total"], seen["done"], seen["passed"], seen["skipped"]) == (4, 4, 2, 1)
    assert seen["failed"] == ["test_small.py::test_c"] and seen["finished"] is True


def test_the_runner_shows_tests_done_over_total_while_it_waits(tmp_path: Path) -> None:
    # test_b waits for a file that appears only once the runner has shown "1/2": without
    # the progress line it would fail.
    seen_one = tmp_path / "seen-one"
    suite = _suite(
        tmp_path,
        "import pathlib, time\n"
        "def test_a(): pass\n"
        "def test_b():\n"
        "    deadline = time.time() + 60\n"
        f"    while not pathlib.Path({str(seen_one)!r}).exists():\n"
        "        assert time.time() < deadline, 'the progress line never said 1/2'\n"
        "        time.sleep(0.05)\n",
    )
    progress_file = tmp_path / "progress.json"
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if "pytest 1/2" in line:
            seen_one.touch()

    gate = Gate(
        "pytest",
        _pytest("-q", "-p", "no:randomly"),
        env=nested_pytest.environ(**{PROGRESS_ENV: str(progress_file)}),
        progress=progress_file,
    )
    [result] = gates.run_gates([gate], suite, echo=echo, progress_every_s=0.2)
    assert result.ok, (suite / result.log).read_text()
    shown = [line for line in lines if "pytest 1/2" in line]
    assert shown and shown[0].lstrip().startswith("gates ")  # with the elapsed time


def test_a_hung_test_under_xdist_ends_with_its_worker_stacks(tmp_path: Path) -> None:
    suite = _suite(
        tmp_path,
        "import time, pytest\n"
        "def stuck_here():\n"
        "    time.sleep(120)\n"
        "@pytest.mark.timeout(2)\n"
        "def test_hangs(): stuck_here()\n"
        "def test_fine(): pass\n",
        conftest='pytest_plugins = ["tests.hang_watchdog"]\n',
    )
    env = nested_pytest.environ(PYTHONPATH=str(ROOT))
    run = subprocess.run(
        nested_pytest.argv("-n", "2", "-q"),
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1
    assert "went down; the stacks it wrote" in run.stdout, run.stdout + run.stderr
    assert "in stuck_here" in run.stdout
    assert "1 failed, 1 passed" in run.stdout


def test_a_worker_internal_error_is_named_in_the_summary(tmp_path: Path) -> None:
    """A worker's own fault ends the run with xdist's complaint about the tests it left
    pending; the summary, which CI shows the end of, names the worker's exception."""
    broke = tmp_path / "broke"
    suite = _suite(
        tmp_path,
        "def test_a(): pass\ndef test_b(): pass\ndef test_c(): pass\ndef test_d(): pass\n",
        conftest="import os, pathlib\n"
        "def pytest_runtest_logfinish(nodeid, location):\n"
        "    if os.environ.get('PYTEST_XDIST_WORKER') and nodeid.endswith('test_b'):\n"
        "        pathlib.Path(os.environ['BROKE']).touch()\n"
        "        raise RuntimeError('the worker broke between two tests')\n",
    )
    # Spread by file, as a run with the end-to-end tests spreads by group. The other worker
    # stays busy until well after the fault, so the controller sees a worker finish with
    # test_c and test_d pending (xdist's `assert not crashitem`), as it did in CI, and not
    # "no active workers".
    (suite / "test_other.py").write_text(
        "import os, pathlib, time\n"
        "def test_busy():\n"
        "    deadline = time.time() + 60\n"
        "    while not pathlib.Path(os.environ['BROKE']).exists() and time.time() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    time.sleep(3)\n"
    )
    env = nested_pytest.environ(BROKE=str(broke))
    gate = Gate("pytest", _pytest("-n", "2", "--dist", "loadfile"), env=env)
    [result] = gates.run_gates([gate], suite, echo=lambda line: None)
    assert result.exit_status == 3
    assert "assert not crashitem" in (suite / result.log).read_text()
    table = summary([result], [gate], suite, 1.0)
    shown = table[table.index("first internal error") :]
    assert "RuntimeError: the worker broke between two tests" in shown, table
    assert "crashitem" not in shown, "the controller's error, which came after"
