"""A run with the end-to-end tests spreads them by group (tests/worker_groups.py): a real
pytest-xdist run of a small suite on two workers, recording which worker ran each test."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from pipelines.deploy.gates import commands
from tests import nested_pytest
from tests.worker_groups import OWN, SHARED, Groups

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

CONFTEST = """
import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.worker_groups"]


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: drives a whole environment")


@pytest.fixture(scope="session")
def local_scratch():
    return "shared"


@pytest.fixture(autouse=True)
def _record(request):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with (Path(os.environ["RAN"]) / worker).open("a") as ran:
        ran.write(request.node.nodeid + "\\n")
"""

ON_SHARED = """
def test_one(local_scratch):
    pass


def test_two(local_scratch):
    pass
"""

OWN_E2E = """
import pytest

pytestmark = pytest.mark.e2e


def test_one():
    pass


def test_two():
    pass
"""

PLAIN = """
import pytest


@pytest.fixture(scope="module")
def built():
    return "once"


@pytest.mark.parametrize("n", range(4))
def test_each(built, n):
    pass
"""

SUITE = {
    "tests/e2e/test_deploy.py": ON_SHARED,
    "tests/e2e/test_gameday.py": OWN_E2E,
    "tests/e2e/test_schema_changes.py": OWN_E2E,
    "tests/pipelines/test_faults.py": ON_SHARED,
    "tests/service/test_orders.py": PLAIN,
    "tests/service/test_tokens.py": PLAIN,
}
# The group each file's tests belong to.
GROUPS = {
    "tests/e2e/test_deploy.py": SHARED,
    "tests/e2e/test_gameday.py": OWN,
    "tests/e2e/test_schema_changes.py": OWN,
    "tests/pipelines/test_faults.py": SHARED,
}


def _workers_by_place(tmp_path: Path, *args: str) -> dict[str, set[str]]:
    """Which workers ran the tests of each group, or of each file for the tests outside
    GROUPS, in an xdist run of SUITE with `args`."""
    suite, ran, temporary = tmp_path / "suite", tmp_path / "ran", tmp_path / "tmp"
    ran.mkdir()
    temporary.mkdir()
    (suite / "tests").mkdir(parents=True)
    (suite / "conftest.py").write_text(CONFTEST)
    for path, text in SUITE.items():
        (suite / path).parent.mkdir(parents=True, exist_ok=True)
        (suite / path).write_text(text)
    run = subprocess.run(
        nested_pytest.argv("-n", "2", *args, "--import-mode=importlib"),
        cwd=suite,
        env=nested_pytest.environ(
            PYTHONPATH=f"{ROOT}:{suite}", RAN=str(ran), TMPDIR=str(temporary)
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not list(temporary.glob("drydock-test-groups-*")), "the groups' file outlived the run"
    places: dict[str, set[str]] = defaultdict(set)
    for record in ran.iterdir():
        for nodeid in record.read_text().split():
            path = nodeid.split("::")[0]
            places[GROUPS.get(path, path)].add(record.name)
    return places


def test_by_group_each_group_and_each_file_runs_on_one_worker(tmp_path: Path) -> None:
    gate = commands.suite_passes(python="py", workers_n="2", serial_files=[], by_group=True)
    argv = gate[0].argv
    spread = argv[argv.index("--dist") : argv.index("--dist") + 3]
    places = _workers_by_place(tmp_path, *spread)
    assert set(places) == {
        SHARED,
        OWN,
        "tests/service/test_orders.py",
        "tests/service/test_tokens.py",
    }
    assert all(len(workers) == 1 for workers in places.values()), places
    # The two groups of environments start first, one on each worker.
    assert places[SHARED] != places[OWN]


def test_the_scheduler_reads_each_tests_group_and_falls_back_to_the_test_itself(
    tmp_path: Path,
) -> None:
    written = tmp_path / "groups.json"
    written.write_text(json.dumps({"tests/e2e/test_deploy.py::test_one": SHARED}))
    groups = Groups(written)
    assert groups.of("tests/e2e/test_deploy.py::test_one") == SHARED
    assert groups.of("tests/service/test_orders.py::test_a") == (
        "tests/service/test_orders.py::test_a"
    )
    # No file (a worker died collecting): every test is a group of its own, and all still run.
    missing = Groups(tmp_path / "absent.json")
    assert missing.of("tests/e2e/test_deploy.py::test_one") == (
        "tests/e2e/test_deploy.py::test_one"
    )


def test_only_a_run_with_the_end_to_end_tests_is_spread_by_group() -> None:
    with_e2e = commands.quality_gates(python="py", workers_n="2", serial_files=[])
    without = commands.quality_gates(python="py", workers_n="2", serial_files=[], e2e=False)
    assert "loadgroup" in {g.name: g for g in with_e2e}["pytest"].argv
    assert "--dist" not in {g.name: g for g in without}["pytest"].argv
