"""A pytest plugin (`-p pipelines.deploy.gates.progress`) that keeps a small JSON file with
how many tests of the run are done, so the gate runner can show a count while it waits.

Only the process that reports (the controller under pytest-xdist) writes; the file is
replaced atomically once a test has ended (a few hundred small writes for the whole suite).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.deploy.gates.commands import PROGRESS_ENV


class Progress:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.total: int | None = None
        self.done = self.passed = self.skipped = 0
        self.failed: list[str] = []
        self.finished = False

    def snapshot(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "passed": self.passed,
            "skipped": self.skipped,
            "failed": self.failed,
            "finished": self.finished,
            "updated": time.time(),
        }

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, self.path)

    # pytest hooks, called on the registered instance.

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items or self.total is None:  # an xdist controller collects nothing
            self.total = len(session.items)
            self.write()

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if not self.total:
            self.total = len(ids)  # every worker collects the same selection
            self.write()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and report.nodeid not in self.failed:
            self.failed.append(report.nodeid)
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.skipped and report.when in ("setup", "call"):
            self.skipped += 1
        if report.when == "teardown":
            self.done += 1
            self.write()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.finished = True
        self.write()


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if path and not hasattr(config, "workerinput"):  # a pytest-xdist worker has workerinput
        progress = Progress(Path(path))
        progress.write()
        config.pluginmanager.register(progress, "drydock-progress")


def read(path: Path) -> dict[str, Any] | None:
    """The progress file, or None while it does not exist or is being replaced."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
