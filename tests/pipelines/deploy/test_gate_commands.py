"""The serial pass collects only the files that write the `serial` marker: a test marked
`serial` any other way would run in neither pass, so every collection refuses it
(tests/serial_marks.py). Real pytest runs of a small throwaway suite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import nested_pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
# Spelt in two parts, or the file scan would take this file for one that marks tests serial.
SERIAL = "pytest.mark." + "serial"


def _collect(tmp_path: Path, tests: str) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "suite"
    (suite / "tests").mkdir(parents=True)
    (suite / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: alone\n")
    (suite / "conftest.py").write_text('pytest_plugins = ["tests.serial_marks"]\n')
    (suite / "tests" / "test_small.py").write_text(tests)
    return subprocess.run(
        nested_pytest.argv("--collect-only", "-q", "-m", "not serial"),
        cwd=suite,
        env=nested_pytest.environ(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "marking",
    [f"@{SERIAL}\n", f"pytestmark = {SERIAL}\n"],
    ids=["decorator", "module"],
)
def test_the_literal_marker_is_accepted(tmp_path: Path, marking: str) -> None:
    run = _collect(tmp_path, f"import pytest\n{marking}def test_alone(): pass\n")
    # Deselected by `-m "not serial"`, yet seen by the check first.
    assert run.returncode == 5, run.stdout + run.stderr
    assert "1 deselected" in run.stdout


def test_a_marker_the_file_scan_cannot_see_is_refused(tmp_path: Path) -> None:
    run = _collect(
        tmp_path,
        "import pytest\n"
        "alone = getattr(pytest.mark, 'ser' + 'ial')\n"
        "@alone\n"
        "def test_alone(): pass\n",
    )
    assert run.returncode == 4, run.stdout + run.stderr
    assert "tests/test_small.py would run in neither pass" in run.stdout + run.stderr
