"""The serial pass collects only the files that write the `serial` marker: pytest must agree no
other file has a test marked `serial`, or that test would run in neither pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.deploy.gates.commands import serial_test_files

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def test_pytest_and_the_file_scan_agree_on_the_serial_tests() -> None:
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "serial",
            "-p",
            "no:cacheprovider",
            "tests",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert collected.returncode in (0, 5), collected.stdout + collected.stderr
    files = {line.split("::")[0] for line in collected.stdout.splitlines() if "::" in line}
    assert files == set(serial_test_files())
