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


def _executed(tmp_path: Path) -> dict[str, bool]:
    suite = tmp_path / "suite"
    (suite / "tests" / "infra").mkdir(parents=True)
    (suite / "tests" / "service").mkdir(parents=True)
    (suite / "measured.py").write_text(MEASURED)
    (suite / "conftest.py").write_text('pytest_plugins = ["tests.unmeasured"]\n')
    (suite / "tests" / "infra" / "test_stack.py").write_text(UNMEASURED_TEST)
    (suite / "tests" / "service" / "test_api.py").write_text(MEASURED_TEST)
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
    return {
        name: bool(functions[name]["executed_lines"])
        for name in ("from_fixture", "from_unmeasured_test", "from_measured_test")
    }


def test_an_unmeasured_test_and_its_fixtures_are_not_traced_and_the_rest_are(
    tmp_path: Path,
) -> None:
    assert _executed(tmp_path) == {
        "from_fixture": False,
        "from_unmeasured_test": False,
        "from_measured_test": True,
    }


def test_the_unmeasured_places_are_directories_and_files_that_exist() -> None:
    from tests.unmeasured import UNMEASURED

    for place in UNMEASURED:
        assert (ROOT / place).exists(), place
    assert unmeasured("tests/infra/test_alarms.py")
    assert not unmeasured("tests/service/test_auth.py")
    assert not unmeasured("tests/pipelines/targets/local/test_environment.py")
