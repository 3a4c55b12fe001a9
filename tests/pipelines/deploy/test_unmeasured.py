"""Tests in the unmeasured places run without coverage's tracer, fixtures included, and the
rest are measured as before (tests/unmeasured.py). A real pytest-cov run of a small suite."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests import nested_pytest
from tests.unmeasured import unmeasured

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]

MEASURED = """
def from_fixture():
    return "fixture"


def from_unmeasured_test():
    return "infra"


def from_measured_test():
    return "service"


def from_e2e_process():
    return "e2e"


def from_process():
    return "server"


def from_shared_environment():
    return "shared"
"""

UNMEASURED_TEST = """
import pytest

import measured


@pytest.fixture(scope="module")
def built():
    return measured.from_fixture()


def test_infra(built):
    assert built == "fixture" and measured.from_unmeasured_test() == "infra"
"""

MEASURED_TEST = """
import measured


def test_service():
    assert measured.from_measured_test() == "service"
"""


E2E_TEST = """
import subprocess
import sys


def test_whole_environment():
    code = "import measured; measured.from_e2e_process()"
    subprocess.run([sys.executable, "-c", code], check=True)
"""

PROCESS_TEST = """
import subprocess
import sys


def test_server():
    code = "import measured; measured.from_process()"
    subprocess.run([sys.executable, "-c", code], check=True)
"""


SHARED_ENVIRONMENT_TEST = """
import subprocess
import sys


def test_on_the_shared_environments(local_scratch):
    code = "import measured; measured.from_shared_environment()"
    subprocess.run([sys.executable, "-c", code], check=True)
"""

CONFTEST = """
import pytest

pytest_plugins = ["tests.unmeasured"]


@pytest.fixture(scope="session")
def local_scratch():
    return "shared"
"""


def _executed(tmp_path: Path, tests: dict[str, str], coveragerc: str = "") -> dict[str, bool]:
    """Which of `measured`'s functions a pytest-cov run of `tests` (path: text) executed."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "measured.py").write_text(MEASURED)
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / ".coveragerc").write_text(coveragerc or "[run]\n")
    for path, text in tests.items():
        (suite / path).parent.mkdir(parents=True, exist_ok=True)
        (suite / path).write_text(text)
    run = subprocess.run(
        nested_pytest.argv(
            "--cov=measured",
            "--cov-report=json:coverage.json",
            "--import-mode=importlib",
            plugins=("pytest_cov",),
        ),
        cwd=suite,
        env=nested_pytest.environ(PYTHONPATH=f"{ROOT}:{suite}"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((suite / "coverage.json").read_text())
    functions = report["files"]["measured.py"]["functions"]
    return {name: bool(data["executed_lines"]) for name, data in functions.items() if name}


def test_an_unmeasured_test_and_its_fixtures_are_not_traced_and_the_rest_are(
    tmp_path: Path,
) -> None:
    tests = {
        "tests/infra/test_stack.py": UNMEASURED_TEST,
        "tests/service/test_api.py": MEASURED_TEST,
    }
    executed = _executed(tmp_path, tests)
    assert executed["from_fixture"] is False
    assert executed["from_unmeasured_test"] is False
    assert executed["from_measured_test"] is True


def test_the_end_to_end_tests_start_their_own_processes_unmeasured_and_the_rest_do_not(
    tmp_path: Path,
) -> None:
    tests = {
        "tests/e2e/test_whole.py": E2E_TEST,
        "tests/e2e/test_shared.py": SHARED_ENVIRONMENT_TEST,
        "tests/service/test_server.py": PROCESS_TEST,
    }
    executed = _executed(tmp_path, tests, coveragerc="[run]\npatch = subprocess\n")
    assert executed["from_e2e_process"] is False
    # An end-to-end test on the session's shared environments starts its processes measured:
    # what it starts there outlives it, into the tests after it.
    assert executed["from_shared_environment"] is True
    # Put back after the e2e test: a process started later is measured.
    assert executed["from_process"] is True


def test_the_unmeasured_places_are_directories_and_files_that_exist() -> None:
    from tests.unmeasured import UNMEASURED

    for place in UNMEASURED:
        assert (ROOT / place).exists(), place
    assert unmeasured("tests/infra/test_alarms.py")
    assert not unmeasured("tests/service/test_auth.py")
    assert not unmeasured("tests/pipelines/targets/local/test_environment.py")
