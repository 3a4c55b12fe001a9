"""Every test marked `serial` must sit in a file that the serial pass collects.

The gates' serial pass collects only the files whose text writes the marker
(`serial_test_files` in pipelines/deploy/gates/commands.py), because collecting the whole
suite a second time costs about ten seconds. A test marked some other way, through a
variable or a hook, would then run in neither pass. The collection that every run makes
anyway refuses it here, at no extra cost.
"""

from __future__ import annotations

import pytest

from pipelines.deploy.gates.commands import serial_test_files


@pytest.hookimpl(tryfirst=True)  # before `-m "not serial"` deselects them
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath
    marked = {
        item.path.relative_to(root).as_posix()
        for item in items
        if item.get_closest_marker("serial") is not None
    }
    stray = sorted(marked - set(serial_test_files(root)))
    if stray:
        raise pytest.UsageError(
            f"tests marked serial in {', '.join(stray)} would run in neither pass: the serial "
            "pass collects only files whose text writes `mark.serial`. Write the marker "
            "literally (`@pytest.mark.serial` or `pytestmark = pytest.mark.serial`)."
        )
